#!/usr/bin/env bash
# Builds the libFuzzer targets (product dtrain-fuzz, Sources/DTFuzz) with AddressSanitizer and runs each for a
# time budget, starting from the committed seeds in Tests/Fuzz/corpus/<target>/.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET (default 30)] [TARGET…]      # .ci/run: bash scripts/fuzz.sh 20
#   bash scripts/fuzz.sh 600 gguf                                           # a long run of one target
# Inputs that found new coverage accumulate in .build-fuzz/corpus/<target>/ (not committed; kept between runs).
# A crash, sanitizer report, leak, timeout (> 10 s on one input) or OOM (> 2 GB) stops that target: the input is
# saved as .build-fuzz/artifacts/<target>/crash-… (or leak-/timeout-/oom-), its report is printed, and the script
# ends with status 1 after running the remaining targets. Reproduce without libFuzzer with the ordinary build:
#   .build/release/dtrain-fuzz TARGET .build-fuzz/artifacts/TARGET/crash-…
# FUZZ_RUNS=N stops each target after N executions instead (BUDGET then caps its time): the long campaign is
#   FUZZ_RUNS=10000000 nice -n 19 bash scripts/fuzz.sh 36000
# and can be repeated: each run starts from the corpus the previous runs grew in .build-fuzz/corpus/<target>.
# Expect the first build to take ~1.5 minutes on 2 cores (the whole package with coverage and ASan), then
# SECONDS_PER_TARGET × 12 targets.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET="${1:-30}"
shift || true
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else mapfile -t TARGETS < <(ls Tests/Fuzz/corpus); fi
swift build -c release --sanitize=fuzzer --sanitize=address -Xswiftc -DDTRAIN_FUZZ \
  -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table --build-path .build-fuzz --product dtrain-fuzz
BIN=.build-fuzz/release/dtrain-fuzz
failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p ".build-fuzz/corpus/$t" ".build-fuzz/artifacts/$t"
  log=".build-fuzz/artifacts/$t/last.log"
  echo "fuzz: $t for ${BUDGET}s"
  status=0
  LSAN_OPTIONS="suppressions=$PWD/scripts/fuzz-lsan.supp:print_suppressions=0" DTRAIN_FUZZ_TARGET="$t" "$BIN" -max_total_time="$BUDGET" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix=".build-fuzz/artifacts/$t/" ".build-fuzz/corpus/$t" "Tests/Fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$log" | tr '\n' ' ' | sed "s/^/fuzz: $t: /"; echo
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t FAILED (status $status); report:" >&2
    grep -A40 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|Fatal error|SUMMARY" "$log" | head -80 >&2 || tail -40 "$log" >&2
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then echo "fuzz: failures in ${failed[*]} (inputs in .build-fuzz/artifacts/)" >&2; exit 1; fi
echo "fuzz: ${#TARGETS[@]} targets, ${BUDGET}s each, no crash"
