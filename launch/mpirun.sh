#!/usr/bin/env bash
# Runs dtrain under mpirun on the hosts of a hostfile, with one BLAS thread count for every rank so that
# ranks per node × threads = cores per node, and the dtrain environment forwarded to remote ranks.
#   launch/mpirun.sh HOSTFILE RANKS dtrain-arguments…
#   e.g. launch/mpirun.sh hostfiles/localhost 2 train --config launch/configs/instruct-lora.yaml
# Environment: THREADS (BLAS threads per rank; default cores / ranks-per-node), DTRAIN (binary path),
# MPIRUN_ARGS (extra mpirun flags, e.g. "--mca btl_tcp_if_include eth0"), SIGKILL_AFTER (seconds, default 60).
# Expect: rank 0's progress on stderr; a failing rank stops the whole job with its message.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 HOSTFILE RANKS dtrain-arguments..." >&2
  exit 2
fi
HOSTFILE="$1"; RANKS="$2"; shift 2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DTRAIN="${DTRAIN:-$ROOT/.build/release/dtrain}"
# Ranks per node: the largest "slots=" in the hostfile (or RANKS for a single host).
PER_NODE="$(grep -Eo 'slots=[0-9]+' "$HOSTFILE" | cut -d= -f2 | sort -n | tail -1 || true)"
PER_NODE="${PER_NODE:-$RANKS}"
if [ "$PER_NODE" -gt "$RANKS" ]; then PER_NODE="$RANKS"; fi
CORES="$(nproc)"
THREADS="${THREADS:-$(( CORES / PER_NODE > 0 ? CORES / PER_NODE : 1 ))}"
export DTRAIN_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" OMP_NUM_THREADS=1
# shellcheck disable=SC2086
# Graceful stop: SIGUSR1 to mpirun reaches every rank at once (each finishes its step, rank 0 checkpoints, status
# 75). On SIGTERM/SIGINT mpirun sends the ranks SIGCONT, waits SIGKILL_AFTER seconds, sends SIGTERM (the same stop)
# and SIGKILL after as long again.
exec mpirun --hostfile "$HOSTFILE" -np "$RANKS" --map-by slot --bind-to none --mca odls_base_sigkill_timeout "${SIGKILL_AFTER:-60}" \
  -x DTRAIN_THREADS -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x DTRAIN_MODEL -x DTRAIN_CACHE -x OPENBLAS_CORETYPE \
  ${MPIRUN_ARGS:-} "$DTRAIN" "$@"
