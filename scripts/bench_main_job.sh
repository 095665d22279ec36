#!/usr/bin/env bash
# The whole main-job fine-tune (launch/configs/instruct-lora.yaml: LoRA on SmolLM2-135M-Instruct, 400 examples,
# 2 epochs = 50 steps of 16) run by dtrain and by its PyTorch + PEFT reference back to back, with wall times:
#   dtrain bf16              mpirun -np 2 --bind-to none dtrain train --config … --output OUT --compute bf16
#   dtrain fp32              the same with --compute fp32                    (skip with --no-dtrain-fp32)
#   pytorch bf16-autocast    scripts/pytorch_main_job.py --autocast bf16      (2 threads, both ranks' shares)
#   pytorch bf16-autocast+bf16-base
#                            … --autocast bf16 --base-dtype bf16 (frozen base stored in bf16, LoRA + AdamW in fp32:
#                            PyTorch's fastest CPU configuration; skip with --no-pytorch-bf16-base)
#   pytorch fp32             scripts/pytorch_main_job.py --autocast none      (only with --pytorch-fp32)
#
#   PYTHON=/tmp/ref/bin/python bash scripts/bench_main_job.sh [--max-steps N] [--pytorch-fp32] [--no-dtrain-fp32]
#       [--no-pytorch-bf16-base] [--model PATH]
#   flock /tmp/cpu.lock env PYTHON=/tmp/ref/bin/python bash scripts/bench_main_job.sh --max-steps 2    # smoke test, ~2 min
#
# --max-steps N is passed to both (a short run; like dtrain's max_steps it also sets the cosine schedule's
# length); --model PATH (GGUF file or HF directory) to both, default each tool's default model (the same GGUF).
# The full run takes roughly 3–5 minutes per dtrain run and several times that for PyTorch on 2 cores; wrap it
# in `flock /tmp/cpu.lock` on a shared machine (the script itself takes no lock). PYTHON = a venv with torch,
# transformers, peft, gguf, tokenizers, pyyaml (see scripts/pytorch_main_job.py); DTRAIN=path overrides
# .build/release/dtrain; OUT (dtrain's run directory, emptied before each run) defaults to /tmp/dtrain-mainjob.
# Prints each run's progress lines (prefixed), keeps the full logs in a /tmp/bench_main_job.* directory, then a
# table per run: steps, total wall seconds (date around the whole command: model load, evaluations and, for
# dtrain, MPI start-up included), training-only seconds (the optimizer steps alone: the sum of dtrain's per-step
# `seconds` in OUT/metrics.jsonl; PyTorch's `… s wall (training only)`), mean training tokens/s, validation loss
# before → after; and the speedups PyTorch time / dtrain time (total and training-only), including dtrain bf16
# against the faster of the PyTorch bf16 configurations (chosen per column).
# Short runs: under bf16 autocast PyTorch's validation loss moves much less in the first few steps than dtrain's
# or PyTorch fp32's (the young adapter's term is rounded away in the bf16 sum base(x) + B·A·x; see
# scripts/pytorch_main_job.py); compare losses on the full run.
set -uo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PYTHON=${PYTHON:-python3}
DTRAIN=${DTRAIN:-.build/release/dtrain}
OUT=${OUT:-/tmp/dtrain-mainjob}
CONFIG=launch/configs/instruct-lora.yaml
MAX_STEPS=() MODEL=() PYTORCH_FP32=0 DTRAIN_FP32=1 PYTORCH_BF16_BASE=1
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --max-steps) [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "--max-steps needs a number" >&2; exit 2; }
                     MAX_STEPS=(--max-steps "$2"); shift 2 ;;
        --model) MODEL=(--model "${2:?--model needs a path}"); shift 2 ;;
        --pytorch-fp32) PYTORCH_FP32=1; shift ;;
        --no-dtrain-fp32) DTRAIN_FP32=0; shift ;;
        --no-pytorch-bf16-base) PYTORCH_BF16_BASE=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench_main_job.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done
LOGDIR=$(mktemp -d /tmp/bench_main_job.XXXXXX)
RESULTS=$LOGDIR/results.tsv   # name, rc, wall seconds, log file — read by the summary (dtrain: NAME.metrics.jsonl too)
: >"$RESULTS"
now() { date +%s.%N; }

# timed NAME KEEP-REGEX COMMAND... : runs COMMAND, full output in $LOGDIR/NAME.log, KEEP lines on the console.
timed() {
    local name=$1 keep=$2; shift 2
    local log="$LOGDIR/${name// /-}.log"
    echo "== $name: $*"
    local start end rc
    start=$(now)
    "$@" </dev/null >"$log" 2>&1 &
    local pid=$!
    tail -n +1 -F --pid=$pid "$log" 2>/dev/null | grep --line-buffered -E "$keep" | sed -u "s/^/$name | /"
    wait $pid; rc=$?
    end=$(now)
    [ $rc -eq 0 ] || { echo "$name FAILED (exit $rc); last lines of $log:"; tail -5 "$log" | sed 's/^/    /'; }
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')" "$log" >>"$RESULTS"
}

DT_KEEP='^(data:|compute:|validation loss|step [0-9]+/|peak RSS|.*[Ee]rror)'
PT_KEEP='^(model:|data:|validation loss|step [0-9]+/|timing:|pytorch main job:|.*Error)'
run_dtrain() {  # COMPUTE
    [ -x "$DTRAIN" ] || { echo "(waiting up to 5 min for $DTRAIN)"; for _ in $(seq 60); do [ -x "$DTRAIN" ] && break; sleep 5; done; }
    rm -rf "$OUT"
    timed "dtrain $1" "$DT_KEEP" \
        mpirun -np 2 --bind-to none "$DTRAIN" train --config "$CONFIG" --output "$OUT" --compute "$1" "${MODEL[@]}" "${MAX_STEPS[@]}"
    if [ -f "$OUT/metrics.jsonl" ]; then cp "$OUT/metrics.jsonl" "$LOGDIR/dtrain-$1.metrics.jsonl"; fi
}
run_pytorch() {  # NAME OPTIONS...
    local name=$1; shift
    timed "$name" "$PT_KEEP" "$PYTHON" scripts/pytorch_main_job.py "$@" "${MODEL[@]}" "${MAX_STEPS[@]}"
}

echo "bench_main_job: config $CONFIG${MAX_STEPS:+, ${MAX_STEPS[*]}}; logs in $LOGDIR"
echo "cpu flags: $(grep -o -w 'avx512f\|avx512_bf16\|amx_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
run_dtrain bf16
[ $DTRAIN_FP32 -eq 1 ] && run_dtrain fp32
run_pytorch "pytorch bf16-autocast" --autocast bf16
[ $PYTORCH_BF16_BASE -eq 1 ] && run_pytorch "pytorch bf16-autocast+bf16-base" --autocast bf16 --base-dtype bf16
[ $PYTORCH_FP32 -eq 1 ] && run_pytorch "pytorch fp32" --autocast none

echo "== summary (logs in $LOGDIR)"
"$PYTHON" - "$RESULTS" <<'EOF'
import json
import os
import re
import sys

NUM = r"([0-9]+(?:\.[0-9]+)?)"
rows = []
for entry in open(sys.argv[1], encoding="utf-8").read().splitlines():
    name, rc, wall, log = entry.split("\t")
    metrics = log[:-len(".log")] + ".metrics.jsonl"
    text = open(log, encoding="utf-8", errors="replace").read() if os.path.exists(log) else ""
    r = dict(name=name, rc=int(rc), wall=float(wall), steps=None, train=None, tps=None, before=None, after=None, note="")
    steps = re.findall(r"^step ([0-9]+)/([0-9]+) \|.*?\| ([0-9.]+) tokens/s", text, re.M)
    if steps:
        r["steps"] = int(steps[-1][0])
    if name.startswith("dtrain"):
        m = re.search(rf"validation loss {NUM} → {NUM}", text)
        if m:
            r["before"], r["after"] = float(m.group(1)), float(m.group(2))
        else:
            m = re.search(rf"validation loss before training: {NUM}", text)
            r["before"] = float(m.group(1)) if m else None
        logged = []
        if os.path.exists(metrics):
            logged = [json.loads(x) for x in open(metrics) if x.strip()]
            logged = [x for x in logged if "seconds" in x and "step" in x]
        if logged:
            r["train"] = sum(x["seconds"] for x in logged)
            seconds_tokens = [(x["seconds"], x["seconds"] * x.get("tokens_per_second", 0)) for x in logged]
            tokens = sum(t for _, t in seconds_tokens)
            r["tps"] = tokens / r["train"] if r["train"] else None
            if r["steps"] is not None and len(logged) != r["steps"]:
                r["note"] = f"training-only over the {len(logged)} logged steps of {r['steps']}"
    else:
        m = re.search(rf"pytorch main job: ([0-9]+) steps, {NUM} s wall \(training only\), {NUM} s total, valid loss {NUM} -> {NUM}", text)
        if m:
            r["steps"], r["train"] = int(m.group(1)), float(m.group(2))
            r["before"], r["after"] = float(m.group(4)), float(m.group(5))
            r["note"] = f"own total {float(m.group(3)):.1f} s"
        # mean tokens/s = Σ tokens / Σ seconds of the step lines (tokens = tokens/s × the line's seconds)
        lines = re.findall(r"^step [0-9]+/[0-9]+ \|.*?\| ([0-9.]+) tokens/s \|.*?([0-9.]+) s$", text, re.M)
        if lines and r["train"]:
            r["tps"] = sum(float(a) * float(b) for a, b in lines) / sum(float(b) for _, b in lines)
    if r["rc"] != 0:
        r["note"] = (r["note"] + "; " if r["note"] else "") + f"FAILED (exit {r['rc']})"
    rows.append(r)


def f(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"


W = max([24] + [len(r["name"]) for r in rows])
print(f"{'run':{W}} {'steps':>5} {'total s':>9} {'train-only s':>13} {'train tok/s':>12}   valid loss before → after")
for r in rows:
    loss = f"{f(r['before'], 4)} → {f(r['after'], 4)}"
    print(f"{r['name']:{W}} {f(r['steps'], 0):>5} {f(r['wall']):>9} {f(r['train']):>13} {f(r['tps'], 0):>12}   {loss}"
          + (f"   ({r['note']})" if r["note"] else ""))
by = {r["name"]: r for r in rows if r["rc"] == 0}
print()
BF16_BASE = "pytorch bf16-autocast+bf16-base"
print(f"{'speedup (PyTorch s / dtrain s)':54} {'total':>7} {'train-only':>11}")


def ratio(d, p, k):
    a, b = by[d][k], by[p][k]
    return "n/a" if not a or b is None else f"{b / a:.2f}x"


for d, p in (("dtrain bf16", "pytorch bf16-autocast"), ("dtrain bf16", BF16_BASE), ("dtrain fp32", "pytorch bf16-autocast"),
             ("dtrain fp32", BF16_BASE), ("dtrain fp32", "pytorch fp32"), ("dtrain bf16", "pytorch fp32")):
    if d in by and p in by:
        print(f"{d + ' vs ' + p:54} {ratio(d, p, 'wall'):>7} {ratio(d, p, 'train'):>11}")
# dtrain bf16 against the faster PyTorch bf16 configuration, per column (the one with the smaller time)
bf16 = [p for p in ("pytorch bf16-autocast", BF16_BASE) if p in by]
if "dtrain bf16" in by and bf16:
    cells, which = [], []
    for k in ("wall", "train"):
        have = [p for p in bf16 if by[p][k] is not None]
        best = min(have, key=lambda p: by[p][k]) if have else None
        cells.append(ratio("dtrain bf16", best, k) if best else "n/a")
        which.append(f"{'total' if k == 'wall' else 'train-only'}: {best or 'n/a'}")
    print(f"{'dtrain bf16 vs the faster PyTorch bf16':54} {cells[0]:>7} {cells[1]:>11}   ({'; '.join(which)})")
EOF
