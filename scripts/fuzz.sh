#!/bin/sh
# Runs the libFuzzer targets of build-fuzz/ (make fuzz builds them).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Each target runs SECONDS (default 60) of wall time on one core, starting
# from build-fuzz/corpus/<target>, which is seeded from fuzz/seeds/<target>/
# (and the test data the older targets start from) and keeps what the run
# finds. FUZZ_JOBS targets (default: one per core) run side by side, each on
# a core of its own. Prints exec/s, the CPU seconds the run used (user +
# system: on a loaded machine this is less than SECONDS), corpus size and any
# crash file per target, in the order given; exits 1 if any target found
# something (the inputs are in build-fuzz/findings/).
set -eu

cd "$(dirname "$0")/.."
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"fuzz_safetensors fuzz_st_index fuzz_torch_zip fuzz_torch_pickle fuzz_config fuzz_chat fuzz_openai \
fuzz_tenants fuzz_http fuzz_sp_model fuzz_tokenize fuzz_gguf fuzz_gptq fuzz_grammar fuzz_json_schema fuzz_lora"}
build=build-fuzz
[ -x "$build/fuzz_safetensors" ] || { echo "error: no $build/fuzz_* binaries; run 'make fuzz' first" >&2; exit 2; }
mkdir -p "$build/findings"

# Extra seeds and libFuzzer options per target.
extra_seeds() {
    case "$1" in
    fuzz_sp_model) echo tests/data/tiny_bpe.model ;;
    fuzz_gguf) echo tests/data/tiny.gguf ;;
    fuzz_tokenize) echo tests/data/tok_corpus.txt ;;
    esac
}
max_len() {
    case "$1" in
    fuzz_sp_model | fuzz_gguf | fuzz_torch_zip) echo 65536 ;;
    *) echo 8192 ;;
    esac
}

# One target: its table row in findings/<target>.row, and
# findings/<target>.bad if it found something.
fuzz_one() {
    t=$1
    corpus="$build/corpus/$t"
    mkdir -p "$corpus"
    [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
    for s in $(extra_seeds "$t"); do cp -n "$s" "$corpus"/ 2>/dev/null || true; done
    log="$build/findings/$t.log"
    rm -f "$build/findings/$t.row" "$build/findings/$t.bad"
    rc=0
    cpu_file="$build/findings/$t.cpu"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        /usr/bin/time -f '%U %S' -o "$cpu_file" "$build/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" -rss_limit_mb=4096 -timeout=20 \
        -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$build/findings/$t-" "$corpus" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { printf "%.0f", $1 + $2 }' "$cpu_file" 2>/dev/null)
    files=$(find "$corpus" -type f | wc -l)
    kb=$(du -sk "$corpus" | cut -f1)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tr '\n' ' ')
    if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
        [ -n "$crash" ] || crash="exit $rc, see $log"
        : >"$build/findings/$t.bad"
    fi
    printf '%-20s %8s %8s %10s %12s %8s  %s\n' "$t" "$seconds" "${cpu:-?}" "${secs:-?}" "$files" "$kb" \
        "${crash:-none} (${runs:-?} runs)" >"$build/findings/$t.row"
}

# The targets dealt to FUZZ_JOBS lanes in turn; each lane runs its targets
# one after another. Every target takes the same SECONDS, so the lanes end
# together.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
pids=""
lane=0
while [ "$lane" -lt "$jobs" ]; do
    mine="" i=0
    for t in $targets; do
        [ $((i % jobs)) -eq "$lane" ] && mine="$mine $t"
        i=$((i + 1))
    done
    if [ -n "$mine" ]; then
        (for t in $mine; do fuzz_one "$t"; done) &
        pids="$pids $!"
    fi
    lane=$((lane + 1))
done
for p in $pids; do wait "$p"; done

status=0
printf '%-20s %8s %8s %10s %12s %8s  %s\n' target seconds cpu_s exec/s corpus_files corpus_kb finding
for t in $targets; do
    if [ -f "$build/findings/$t.row" ]; then
        cat "$build/findings/$t.row"
    else
        printf '%-20s did not run, see %s\n' "$t" "$build/findings/$t.log"
        status=1
    fi
    [ -f "$build/findings/$t.bad" ] && status=1
done
exit $status
