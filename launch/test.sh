#!/usr/bin/env bash
# Sets up (launch/setup.sh) and runs the whole test suite in release mode, including the end-to-end tests
# on the real default model and the mpirun tests.
#   bash launch/test.sh [extra swift test arguments, e.g. --filter GGUFTests]
# Expect about 15–25 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
# Test-only tools: shellcheck for the launch scripts, iproute2 for the multi-host (network namespace) test.
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export DTRAIN_REQUIRE_MODEL=1
# The test process loads OpenBLAS itself (the dtrain binary re-execs with the right core, XCTest cannot):
# Debian's OpenBLAS 0.3.21 takes recent CPUs for "Prescott" and runs 4-5x slower without this.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  if grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell
  fi
fi
# oneDNN's OpenMP threads must not spin between products (the binary sets this itself when it re-execs).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# OpenMPI refuses to start as root unless told it is fine (CI runs as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift test -c release "$@"
