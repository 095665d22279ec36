"""Golden NLL of the default model with its projections quantized by bitsandbytes to NF4 + double quantization.

Shows that the validation-loss rise of `quant: nf4` on SmolLM2-135M (Q4_1 GGUF) is the format's, not dtrain's:
transformers loads the GGUF (dequantized to fp32), every q/k/v/o/gate/up/down weight goes through
bitsandbytes.functional.quantize_4bit(quant_type="nf4", compress_statistics=True, blocksize=64) and back
(dequantize_4bit), embeddings and norms stay as loaded (bitsandbytes' QLoRA does not quantize them), and the
mean NLL of the three texts in smollm2_golden.json is recorded with and without the quantization.
Tests/DTModelTests/NF4ModelTests.swift checks dtrain's `precision: nf4` forward against these values.
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers gguf bitsandbytes
    /tmp/ref/bin/python scripts/make_nf4_fixtures.py ~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import os
import sys

import bitsandbytes.functional as bnbf
import torch
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "DTModelTests", "Fixtures")
model_path = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(model_path), gguf_file=os.path.basename(model_path),
                                             torch_dtype=torch.float32).eval()
texts = json.load(open(os.path.join(FIXTURES, "smollm2_golden.json")))["texts"]


def mean_nll(ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    return float(-lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean())


fp32 = [mean_nll(t["ids"]) for t in texts]
projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
with torch.no_grad():
    for layer in model.model.layers:
        for name in projections:
            module = getattr(layer.self_attn, name, None) or getattr(layer.mlp, name)
            q, state = bnbf.quantize_4bit(module.weight.data.contiguous(), blocksize=64, compress_statistics=True, quant_type="nf4")
            module.weight.data = bnbf.dequantize_4bit(q, state).reshape(module.weight.shape).float()
nf4 = [mean_nll(t["ids"]) for t in texts]
json.dump({"bitsandbytes": __import__("bitsandbytes").__version__, "texts": [t["name"] for t in texts],
           "mean_nll_fp32": fp32, "mean_nll_nf4": nf4},
          open(os.path.join(FIXTURES, "smollm2_nf4_golden.json"), "w"), indent=1)
print("fp32", fp32, "\nnf4 ", nf4)
