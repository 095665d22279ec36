#!/usr/bin/env bash
# Same-window comparison with PyTorch. Each round runs, one after another (so a shared machine's drifting speed
# affects all alike):
#   pytorch fp32                      scripts/bench_pytorch.py                       (plain fp32)
#   pytorch bf16-autocast             scripts/bench_pytorch.py --autocast bf16      (fp32 base, bf16 products)
#   pytorch bf16-autocast bf16-base   scripts/bench_pytorch.py --autocast bf16 --base-dtype bf16
#   dtrain bf16                       dtrain bench forward --compute bf16 ; dtrain bench train --compute bf16
#   dtrain fp32                       dtrain bench forward --compute fp32 ; dtrain bench train --compute fp32
# (each PyTorch run measures both forward and LoRA training), then prints a summary: the median tokens/s over
# the rounds per configuration for forward and train, and the ratios dtrain-bf16 / best PyTorch configuration,
# dtrain-bf16 / PyTorch bf16-autocast and dtrain-fp32 / PyTorch fp32, plus the CPU's bf16-related flags and
# dtrain's compute path.
#
#   PYTHON=/tmp/ref/bin/python bash scripts/bench_compare.sh [ROUNDS] [--model DIR] [--batch B] [--length T] [--iterations N]
#   flock /tmp/cpu.lock env PYTHON=/tmp/ref/bin/python bash scripts/bench_compare.sh 1 --batch 1 --length 32 --iterations 1   # smoke test
#
# ROUNDS defaults to 3, B × T to 4 × 256, N (timed iterations after one warm-up, the median reported; passed
# to both tools) to 5. --model DIR (an HF directory with config.json, e.g. from scripts/make_llama1b.py) is
# given to both tools; without it PyTorch builds SmolLM2-135M's architecture with random weights and dtrain
# loads its default model (SmolLM2-135M-Instruct Q4_1, dequantized to fp32) — the same shapes, so the same
# speed. Needs a venv with torch, transformers and peft outside the repo (see scripts/bench_pytorch.py) and
# dtrain built in release mode (DTRAIN=path overrides .build/release/dtrain; if the binary is missing, e.g.
# while it is being rebuilt, the script waits up to 5 minutes for it). Takes roughly ROUNDS × (3 PyTorch
# model builds + 4 dtrain loads + 8 × (N + 1) measured batches); the defaults take some minutes per round on
# 2 cores, the smoke test well under a minute.
# Output: `== round R` blocks of raw lines, each prefixed by its configuration, then `== summary`.
# A run that fails prints `<config> FAILED (exit N)` and the end of its stderr; its numbers are left out.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DTRAIN=${DTRAIN:-.build/release/dtrain}
ROUNDS=3 BATCH=4 LENGTH=256 ITERATIONS=5 MODEL=""
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL=${2:?--model needs a directory}; shift 2 ;;
        --batch) BATCH=${2:?}; shift 2 ;;
        --length) LENGTH=${2:?}; shift 2 ;;
        --iterations) ITERATIONS=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        [0-9]*) ROUNDS=$1; shift ;;
        *) echo "bench_compare.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done
for v in ROUNDS BATCH LENGTH ITERATIONS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench_compare.sh: $v must be a positive integer (got ${!v})" >&2; exit 2; }
done

SHAPE=(--batch "$BATCH" --length "$LENGTH" --iterations "$ITERATIONS")
MODEL_ARGS=()
[ -n "$MODEL" ] && MODEL_ARGS=(--model "$MODEL")
WORK=$(mktemp -d /tmp/bench_compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
LOG=$WORK/log  # "CONFIG<TAB>round<TAB>raw line" for the summary

wait_for_dtrain() {
    local waited=0
    while [ ! -x "$DTRAIN" ] && [ $waited -lt 300 ]; do
        [ $waited -eq 0 ] && echo "(waiting for $DTRAIN to appear)" >&2
        sleep 5; waited=$((waited + 5))
    done
}

# run CONFIG ROUND FILTER-REGEX COMMAND... : the command's stdout+stderr lines matching FILTER, prefixed.
run() {
    local config=$1 round=$2 filter=$3; shift 3
    [ "$1" = "$DTRAIN" ] && wait_for_dtrain
    "$@" >"$WORK/out" 2>"$WORK/err"
    local rc=$?
    cat "$WORK/err" "$WORK/out" | grep -E "$filter" | while IFS= read -r line; do
        printf '%-32s %s\n' "$config" "$line"
        printf '%s\t%s\t%s\n' "$config" "$round" "$line" >>"$LOG"
    done
    if [ $rc -ne 0 ]; then
        printf '%-32s FAILED (exit %d): %s\n' "$config" "$rc" "$*"
        tail -5 "$WORK/err" | sed 's/^/    /'
    fi
}

echo "bench_compare: $ROUNDS round(s), batch $BATCH × $LENGTH, $ITERATIONS iteration(s), model ${MODEL:-default (PyTorch: SmolLM2-135M architecture, random; dtrain: default model)}"
echo "cpu flags: $(grep -o -w 'avx512f\|avx512_bf16\|amx_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
PT_KEEP='^(cpu capability|model:|sgemm|bf16 gemm|forward|train|check)'
DT_KEEP='^(BLAS|compute|forward|train|sgemm|bf16 gemm)'
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round"
    run "pytorch fp32" "$round" "$PT_KEEP" "$PYTHON" scripts/bench_pytorch.py "${MODEL_ARGS[@]}" "${SHAPE[@]}"
    run "pytorch bf16-autocast" "$round" "$PT_KEEP" "$PYTHON" scripts/bench_pytorch.py "${MODEL_ARGS[@]}" "${SHAPE[@]}" --autocast bf16
    run "pytorch bf16-autocast bf16-base" "$round" "$PT_KEEP" "$PYTHON" scripts/bench_pytorch.py "${MODEL_ARGS[@]}" "${SHAPE[@]}" --autocast bf16 --base-dtype bf16
    for compute in bf16 fp32; do
        for what in forward train; do
            run "dtrain $compute" "$round" "$DT_KEEP" "$DTRAIN" bench "$what" --compute "$compute" "${MODEL_ARGS[@]}" "${SHAPE[@]}"
        done
    done
done

echo "== summary"
"$PYTHON" - "$LOG" <<'EOF'
import re
import statistics
import sys

CONFIGS = ["pytorch fp32", "pytorch bf16-autocast", "pytorch bf16-autocast bf16-base", "dtrain bf16", "dtrain fp32"]
RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?) tokens/s")
rates = {(c, k): [] for c in CONFIGS for k in ("forward", "train")}
info = {}
try:
    lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
except FileNotFoundError:
    lines = []
for entry in lines:
    config, _, line = entry.split("\t", 2)
    kind = line.split(" ", 1)[0]
    m = RATE.search(line)
    if kind in ("forward", "train") and m and (config, kind) in rates:
        rates[(config, kind)].append(float(m.group(1)))
        if config.startswith("dtrain"):  # the compute path: the last comma field of dtrain's bench line
            info.setdefault(f"{config} {kind} compute", line.rsplit(", ", 1)[-1])
    elif line.startswith("BLAS:"):
        info.setdefault("dtrain BLAS", line.split(":", 1)[1].strip())
    elif line.startswith("compute:"):
        info.setdefault(f"{config} compute line", line.split(":", 1)[1].strip())
    elif line.startswith("cpu capability:"):
        info.setdefault("pytorch cpu capability", line.split(":", 1)[1].strip())


def median(config, kind):
    v = rates[(config, kind)]
    return statistics.median(v) if v else None


def fmt(x):
    return "n/a" if x is None else f"{x:.1f}"


print(f"{'configuration':34} {'forward tok/s':>14} {'train tok/s':>12}   rounds (forward/train)")
for c in CONFIGS:
    f, t = median(c, "forward"), median(c, "train")
    print(f"{c:34} {fmt(f):>14} {fmt(t):>12}   {len(rates[(c, 'forward')])}/{len(rates[(c, 'train')])}")


def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


print()
print(f"{'ratio (medians)':34} {'forward':>14} {'train':>12}")
best = {}
for k in ("forward", "train"):
    found = [(median(c, k), c) for c in CONFIGS if c.startswith("pytorch") and median(c, k) is not None]
    best[k] = max(found) if found else (None, "none")
print(f"{'dtrain-bf16 / best PyTorch':34} {ratio(median('dtrain bf16', 'forward'), best['forward'][0]):>14} "
      f"{ratio(median('dtrain bf16', 'train'), best['train'][0]):>12}")
print(f"{'    (best PyTorch)':34} forward: {best['forward'][1]}; train: {best['train'][1]}")
for label, a, b in (("dtrain-bf16 / PyTorch bf16-autocast", "dtrain bf16", "pytorch bf16-autocast"),
                    ("dtrain-fp32 / PyTorch fp32", "dtrain fp32", "pytorch fp32")):
    print(f"{label:34} {ratio(median(a, 'forward'), median(b, 'forward')):>14} {ratio(median(a, 'train'), median(b, 'train')):>12}")
print()
for key in sorted(info):
    print(f"{key}: {info[key]}")
EOF
echo "cpu flags: $(grep -o -w 'avx512f\|avx512_bf16\|amx_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
