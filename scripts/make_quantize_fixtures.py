#!/usr/bin/env python3
"""Checks `dtrain quantize --quant nf4` output in transformers + bitsandbytes and records the logits.

  swift build -c release --product dtrain
  /tmp/ref/bin/pip install torch transformers bitsandbytes     # throwaway venv (bitsandbytes 0.50 runs on CPU)
  /tmp/ref/bin/python scripts/make_quantize_fixtures.py

Writes Tests/DTTrainingTests/Fixtures/interop/quantize_nf4_expected.json: {"ids", "logits" (T, V)}. transformers
loads the directory dtrain wrote for the interop tiny model (every projection becomes a bitsandbytes Linear4bit);
the logits are those of the same model with each Linear4bit replaced by bitsandbytes' own dequantize_4bit of its
codes (float32), as scripts/make_bnb_fixtures.py does. (bitsandbytes 0.50's CPU matmul fallback without the
`kernels` package disagrees with its own dequantize_4bit by several units on a single layer, so its forward
is not used as the reference.) It also checks that bitsandbytes' quantize_4bit of the original weights gives
dtrain's codes and absmax codes exactly.
"""
import json, os, subprocess, tempfile
import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FX = os.path.join(ROOT, "Tests/DTTrainingTests/Fixtures/interop")
out = os.path.join(tempfile.mkdtemp(), "nf4")
subprocess.run([os.path.join(ROOT, ".build/release/dtrain"), "quantize", "--model", os.path.join(FX, "tiny_model"), "-o", out], check=True)
model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
import bitsandbytes as bnb
n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
assert n4 == 7 * model.config.num_hidden_layers, n4
import bitsandbytes.functional as F
ids = [int(t) for t in json.load(open(os.path.join(FX, "peft_lora_expected.json")))["ids"][0]]
plain = AutoModelForCausalLM.from_pretrained(os.path.join(FX, "tiny_model"), torch_dtype=torch.float32).eval()
with torch.no_grad():
    for name, mod in model.named_modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            original = plain.get_submodule(name).weight.data
            codes, state = F.quantize_4bit(original, blocksize=64, quant_type="nf4", compress_statistics=True)
            assert torch.equal(codes.flatten(), mod.weight.data.flatten()) and torch.equal(state.absmax, mod.weight.quant_state.absmax), name
            plain.get_submodule(name).weight.data = F.dequantize_4bit(mod.weight.data, mod.weight.quant_state).float()
    logits = plain(torch.tensor([ids])).logits[0].float()
json.dump({"ids": ids, "logits": [[float(x) for x in row] for row in logits.tolist()], "linear4bit_modules": n4,
           "bitsandbytes": bnb.__version__}, open(os.path.join(FX, "quantize_nf4_expected.json"), "w"))
print("ok", n4, "Linear4bit modules; logits", tuple(logits.shape))
