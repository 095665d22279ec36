#!/usr/bin/env bash
# Same-window comparison with PyTorch: alternates scripts/bench_pytorch.py and `dtrain bench forward|train`
# for ROUNDS rounds, so a shared machine's drifting speed affects both alike. Needs a venv with torch,
# transformers and peft outside the repo (see scripts/bench_pytorch.py); dtrain built in release mode.
#   PYTHON=/tmp/ref/bin/python bash scripts/bench_compare.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROUNDS=${1:-3}
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round"
    "$PYTHON" scripts/bench_pytorch.py 2>/dev/null | sed 's/^/pytorch  /'
    .build/release/dtrain bench forward | grep -E '^forward' | sed 's/^/dtrain   /'
    .build/release/dtrain bench train | grep -E '^train' | sed 's/^/dtrain   /'
done
