#!/usr/bin/env bash
# Run one cargo-fuzz campaign for a set time: scripts/fuzz.sh TARGET SECONDS [libFuzzer args]
#   TARGET: parse_message | parse_qcd_reply | responder_classify_build | table_ops | all
#   (all: every target, SECONDS each)
# Needs a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz). The corpus grows in fuzz/corpus/TARGET (only the seed-* files
# are kept by git); a crash is written to fuzz/artifacts/TARGET and the campaign stops non-zero.
# The last lines printed are libFuzzer's final stats (executions, coverage, corpus size).
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")/../fuzz"
if [ $# -lt 2 ]; then
    sed -n '2,8p' "$self" | sed 's/^# \{0,1\}//'
    exit 2
fi
target=$1
seconds=$2
shift 2
if [ "$target" = all ]; then
    for t in parse_message parse_qcd_reply responder_classify_build table_ops; do
        "$self" "$t" "$seconds" "$@"
    done
    exit 0
fi
mkdir -p "corpus/$target"
echo "== fuzz $target for ${seconds}s"
# -O: optimised build (with debug assertions and AddressSanitizer, cargo-fuzz's defaults).
log="/tmp/fuzz-$target.log"
set +e
cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "$@" >"$log" 2>&1
status=$?
set -e
if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
fi
grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$log" || true
echo "corpus: $(find "corpus/$target" -type f | wc -l) files; full log: $log; exit $status"
exit "$status"
