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
# OpenMPI refuses to start as root unless told it is fine (CI runs as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift test -c release "$@"
