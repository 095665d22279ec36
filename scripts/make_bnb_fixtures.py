"""A pre-quantized bitsandbytes NF4 checkpoint of the tiny llama fixture, as transformers saves one.

Every q/k/v/o/gate/up/down weight becomes bitsandbytes' packed 4-bit codes (uint8 [n/2, 1]) under the weight's
name, plus `.absmax`, `.quant_map`, `.nested_absmax`, `.nested_quant_map` and `.quant_state.bitsandbytes__nf4`
(the JSON quant state as uint8), from quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True);
config.json gains a `quantization_config`. expected.json holds transformers' logits with those weights
dequantized by bitsandbytes. A second copy without double quantization checks dtrain's refusal message.
    /tmp/ref/bin/pip install torch transformers bitsandbytes safetensors
    /tmp/ref/bin/python scripts/make_bnb_fixtures.py
"""
import json
import os
import shutil

import bitsandbytes.functional as bnbf
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "DTModelTests", "Fixtures", "tiny")
source = os.path.join(TINY, "llama")
expected = json.load(open(os.path.join(source, "expected.json")))
ids, mask = torch.tensor(expected["ids"]), torch.tensor(expected["attention_mask"])
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

for name, double in (("llama_bnb_nf4", True), ("llama_bnb_nf4_nodq", False)):
    out = os.path.join(TINY, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    weights = load_file(os.path.join(source, "model.safetensors"))
    stored, dequantized = {}, {}
    for key, w in weights.items():
        if key.endswith(".weight") and key.split(".")[-2] in PROJECTIONS:
            codes, state = bnbf.quantize_4bit(w.contiguous(), blocksize=64, compress_statistics=double, quant_type="nf4")
            stored[key] = codes
            for k, v in state.as_dict(packed=True).items():
                stored[f"{key}.{k}"] = v
            dequantized[key] = bnbf.dequantize_4bit(codes, state).reshape(w.shape).float()
        else:
            stored[key] = w
            dequantized[key] = w
    save_file({k: v.contiguous() for k, v in stored.items()}, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = json.load(open(os.path.join(source, "config.json")))
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                     "bnb_4bit_use_double_quant": double, "bnb_4bit_compute_dtype": "float32"}
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
    if double:
        model = LlamaForCausalLM.from_pretrained(source, torch_dtype=torch.float32).eval()
        model.load_state_dict(dequantized)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        json.dump({"ids": ids.tolist(), "attention_mask": mask.tolist(), "logits": logits.tolist()},
                  open(os.path.join(out, "expected.json"), "w"))
    print("wrote", out)
