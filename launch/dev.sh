#!/usr/bin/env bash
# Single-node development run without any MPI launcher (a world of one), all cores for BLAS.
#   launch/dev.sh train --config launch/configs/instruct-lora.yaml --max-steps 5
#   launch/dev.sh generate -p "What is the capital of France?"
# Expect: the same results as a 1-rank mpirun; progress lines on stderr.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
exec "${DTRAIN:-$ROOT/.build/release/dtrain}" "$@"
