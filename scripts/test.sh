#!/bin/sh
# make test: the release tests, the sanitizer tests and the fuzz smoke run,
# in that order (what make test-release test-asan test-fuzz do), with the
# work that waits overlapped:
#   - the test and fuzz packages (one apt run, mostly download and unpack)
#     install while the release and sanitizer trees build, when apt upgrades
#     no compiler, header or build tool on the way (scripts/deps.sh --plan;
#     otherwise before the builds);
#   - the fuzz targets build in the background at nice 19 while the tests
#     run, taking only the CPU they leave idle (a test waiting on a server or
#     a clock, the last test of a run alone on one core), so the tests'
#     timings are not disturbed.
# A failure stops the run, as in make test-release test-asan test-fuzz, and
# ends the background build (an apt run is let finish).
#   scripts/test.sh   (JOBS, FUZZ_SECONDS and CMAKE_FLAGS as for make)
set -eu

cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
CMAKE_FLAGS=${CMAKE_FLAGS:-}
export JOBS CMAKE_FLAGS
unset MAKEFLAGS MFLAGS  # the makes below are not part of the caller's job server

apt_pid="" fuzz_pid=""
finish() {
    [ -z "$fuzz_pid" ] || kill -TERM "-$fuzz_pid" 2>/dev/null || true
    [ -z "$apt_pid" ] || wait "$apt_pid" 2>/dev/null || true
}
trap finish EXIT
trap 'exit 130' INT TERM HUP PIPE

# background LOG [setsid] COMMAND...: runs the command in the background,
# writing its output to LOG and its exit status to LOG.status; with setsid
# in a process group of its own, so that it can be ended whole (not for apt,
# whose sudo needs the terminal).
background() {
    log=$1 group=""
    shift
    if [ "$1" = setsid ]; then
        group=setsid
        shift
    fi
    rm -f "$log.status"
    # shellcheck disable=SC2016  # expanded by the inner shell
    $group sh -c '"$@" >"$0" 2>&1; echo $? >"$0.status"' "$log" "$@" &
}

# Waits for a background job; prints its log and fails if it failed.
wait_for() {
    while [ ! -f "$2.status" ]; do
        if ! kill -0 "$3" 2>/dev/null && [ ! -f "$2.status" ]; then
            echo "error: $1 ended without a status (log: $2)" >&2
            exit 1
        fi
        sleep 1
    done
    if [ "$(cat "$2.status")" != 0 ]; then
        cat "$2" >&2
        echo "error: $1 failed (log above: $2)" >&2
        exit 1
    fi
    echo "$1: done"
}

scripts/deps.sh build-tests  # the trees' configure looks for cmocka
mkdir -p build build-asan build-fuzz
plan=$(scripts/deps.sh all --plan)
case $plan in
beside)
    echo "installing the test and fuzz packages while building (log: build/deps.log)"
    background build/deps.log scripts/deps.sh all --no-update
    apt_pid=$!
    ;;
before) scripts/deps.sh all --no-update ;;
esac

make --no-print-directory build
make --no-print-directory asan
if [ -n "$apt_pid" ]; then
    wait_for "installing the test and fuzz packages" build/deps.log "$apt_pid"
    apt_pid=""
fi

echo "building build-fuzz/ in the background (log: build-fuzz/make.log)"
background build-fuzz/make.log setsid nice -n 19 make --no-print-directory fuzz
fuzz_pid=$!

(cd build && ctest --output-on-failure -j "$JOBS")
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j "$JOBS")

wait_for "building build-fuzz/" build-fuzz/make.log "$fuzz_pid"
fuzz_pid=""
scripts/fuzz.sh "$FUZZ_SECONDS"
