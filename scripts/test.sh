#!/bin/sh
# What `make test` runs once the packages are in and the release tree is
# built: the release tests, the sanitizer tests and the fuzz smoke run of
# test-release, test-asan and test-fuzz, in that order, with the two other
# builds overlapped with the tests. The sanitizer tree and then the fuzz
# targets build in the background at nice 19 from the start, so they take
# only the CPU the tests leave idle (a test waiting on a server or a clock,
# the last test of a run alone on one core) and the tests' own timings are
# not disturbed; each run starts when its build is done. A failure stops it,
# as in make test-release test-asan test-fuzz; the background build goes with it.
#   scripts/test.sh   (JOBS, FUZZ_SECONDS and CMAKE_FLAGS as for make)
set -eu

cd "$(dirname "$0")/.."
make=make
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
CMAKE_FLAGS=${CMAKE_FLAGS:-}
export JOBS CMAKE_FLAGS
unset MAKEFLAGS MFLAGS  # the sub-makes below are not part of the caller's job server

mkdir -p build-asan build-fuzz
rm -f build-asan/.make-status build-fuzz/.make-status
# Its own process group (setsid), so that a failure or Ctrl-C can end the
# whole build, not only its shell.
# shellcheck disable=SC2016  # expanded by the inner shell
setsid sh -c '
    nice -n 19 "$0" --no-print-directory asan >build-asan/make.log 2>&1; echo $? >build-asan/.make-status
    nice -n 19 "$0" --no-print-directory fuzz >build-fuzz/make.log 2>&1; echo $? >build-fuzz/.make-status
' "$make" &
bg=$!
trap 'kill -TERM "-$bg" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM HUP PIPE
echo "building build-asan/ and then build-fuzz/ in the background (logs: build-asan/make.log, build-fuzz/make.log)"

# Waits for a background build; prints its log and fails if it failed.
wait_build() {
    while [ ! -f "$1/.make-status" ]; do
        if ! kill -0 "$bg" 2>/dev/null && [ ! -f "$1/.make-status" ]; then
            echo "error: the background build of $1/ ended without a status" >&2
            exit 1
        fi
        sleep 1
    done
    if [ "$(cat "$1/.make-status")" != 0 ]; then
        cat "$1/make.log" >&2
        echo "error: building $1/ failed (log above: $1/make.log)" >&2
        exit 1
    fi
    echo "$1/ is built"
}

(cd build && ctest --output-on-failure -j "$JOBS")

wait_build build-asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j "$JOBS")

wait_build build-fuzz
scripts/fuzz.sh "$FUZZ_SECONDS"
