#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/tests/fuzz for SECONDS each, one after the other, starting
# from the seeds in tests/fuzz/corpus/<target>/ (which are replayed first) and keeping new inputs
# in BUILD/corpus/<target>/, with JSON's tokens as a dictionary (tests/fuzz/json.dict). Prints
# the executions of each target; exits 1 when one found a crash, leak, hang (-timeout) or OOM
# (-rss_limit_mb), whose input is left in BUILD/artifacts/.
#
#   tests/fuzz/run.sh BUILD SECONDS [TARGET...]
set -u
cd "$(dirname "$0")/../.."
build=${1:?usage: run.sh BUILD SECONDS [TARGET...]}
seconds=${2:?usage: run.sh BUILD SECONDS [TARGET...]}
shift 2
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in tests/fuzz/fuzz_*.c; do
        t=${f#tests/fuzz/fuzz_}
        targets+=("${t%.c}")
    done
fi
mkdir -p "$build/artifacts" "$build/logs"
rc=0
summary=""
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz/fuzz_$t
    seeds=tests/fuzz/corpus/$t
    work=$build/corpus/$t
    log=$build/logs/$t.log
    mkdir -p "$work"
    dict=(-dict=tests/fuzz/json.dict)
    [ "$t" = jose ] && dict=()
    echo "== fuzz_$t (${seconds}s)"
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "${dict[@]}" \
        "$work" "$seeds" >"$log" 2>&1
    status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    if [ $status -ne 0 ]; then
        rc=1
        tail -n 40 "$log"
        summary+=$(printf '%-12s FAILED (exit %d), see %s' "$t" "$status" "$log")$'\n'
    else
        summary+=$(printf '%-12s %10s executions  %s' "$t" "${execs:-?}" "${cov:-}")$'\n'
    fi
done
echo "== fuzz summary (${seconds}s each)"
printf '%s' "$summary"
exit $rc
