#!/usr/bin/env bash
# GGUF LoRA adapters made by llama.cpp's own converter (convert_lora_to_gguf.py) from the PEFT adapters of the
# interop fixtures, so the tests can check that dtrain reads llama.cpp's adapters and writes the same tensors.
#   LLAMA_CPP_SRC=/work/peer/llama_cpp_python-0.3.36/vendor/llama.cpp bash scripts/make_llamacpp_adapter_fixtures.sh
# (llama.cpp from the llama-cpp-python sdist: pip download --no-binary :all: --no-deps llama-cpp-python;
#  a venv with torch, transformers, safetensors, numpy at /tmp/ref — nothing of llama.cpp is committed.)
set -euo pipefail
cd "$(dirname "$0")/.."
src="${LLAMA_CPP_SRC:?set LLAMA_CPP_SRC to the llama.cpp source directory}"
py="${PYTHON:-/tmp/ref/bin/python}"
fx=Tests/DTTrainingTests/Fixtures/interop
for name in peft_lora peft_lora_rslora; do
  PYTHONPATH="$src/gguf-py" "$py" "$src/convert_lora_to_gguf.py" --base "$fx/tiny_model" --outtype f32 \
    --outfile "$fx/llamacpp_$name.gguf.bin" "$fx/$name"
done
