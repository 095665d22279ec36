"""PEFT interop fixtures for the architecture families (Tests/DTModelTests/Fixtures/families/<name>/):
  - peft_lora/: a LoRA adapter made by PEFT on transformers' model of the family fixture (r 4, alpha 8, all seven
    projections, init_lora_weights=False so B != 0, seeded)
  - dtrain_lora/: the same adapter written by dtrain (`dtrain export` to a llama.cpp GGUF adapter against the
    fixture's GGUF, then `dtrain export --format peft` back), so the files PEFT reads here are dtrain's
  - interop_expected.json: the mean next-token NLL of the first ids.json sequence (24 tokens, longer than the
    window) under transformers' fp32 model: base, with peft_lora, and with dtrain_lora loaded by PEFT; plus what
    PEFT reported as missing or unexpected when loading dtrain_lora (must be nothing)
Run (in the throwaway venv of make_family_fixtures.py, with a release build of dtrain):
    HF_HUB_OFFLINE=1 /tmp/ref/bin/python scripts/make_family_interop_fixtures.py [family]
Made with torch 2.15.0, transformers 5.24.0, peft 0.21.2.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FAMILIES = os.path.join(ROOT, "Tests", "DTModelTests", "Fixtures", "families")
DTRAIN = os.environ.get("DTRAIN", os.path.join(ROOT, ".build", "release", "dtrain"))
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FUSED_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]   # Phi-3's modules: the same seven projections


def base_model(d):
    return AutoModelForCausalLM.from_pretrained(os.path.join(d, "model"), dtype=torch.float32,
                                                attn_implementation="eager").eval()


def mean_nll(model, ids):
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    return float(torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:]))


def family(name):
    d = os.path.join(FAMILIES, name)
    ids = torch.tensor([json.load(open(os.path.join(d, "ids.json")))["ids"][0]])
    torch.manual_seed(21)
    targets = FUSED_TARGETS if name == "phi3" else TARGETS
    peft = get_peft_model(base_model(d), LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0,
                                                    init_lora_weights=False, task_type="CAUSAL_LM"))
    with torch.no_grad():   # PEFT's non-default init is small; larger B makes the adapter matter at 1e-4
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.mul_(20)
    peft.eval()
    out = os.path.join(d, "peft_lora")
    shutil.rmtree(out, ignore_errors=True)
    peft.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))   # PEFT's model card: boilerplate with this machine's paths
    config_path = os.path.join(out, "adapter_config.json")
    config = json.load(open(config_path))
    config["base_model_name_or_path"] = "model"   # the fixture's checkpoint, relative to the family folder
    json.dump(config, open(config_path, "w"), indent=2, sort_keys=True)
    with_peft = mean_nll(peft, ids)

    mine = os.path.join(d, "dtrain_lora")
    shutil.rmtree(mine, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        gguf = os.path.join(tmp, "adapter.gguf")   # run in the family folder, so the files name the base relatively
        subprocess.run([DTRAIN, "export", "--adapter", "peft_lora", "--model", "model.gguf.bin", "--format", "gguf", "-o", gguf],
                       check=True, cwd=d)
        subprocess.run([DTRAIN, "export", "--adapter", gguf, "--model", "model.gguf.bin", "--format", "peft", "-o", "dtrain_lora"],
                       check=True, cwd=d)
    reloaded = PeftModel.from_pretrained(base_model(d), mine).eval()
    report = reloaded.load_adapter(mine, adapter_name="check")   # missing / unexpected keys of dtrain's file
    with_dtrain = mean_nll(reloaded, ids)
    base = mean_nll(base_model(d), ids)
    assert abs(with_peft - base) > 1e-2, (name, with_peft, base)   # the adapter must matter
    expected = {"ids": ids[0].tolist(), "base_mean_nll": base, "peft_lora_mean_nll": with_peft,
                "dtrain_lora_mean_nll_in_peft": with_dtrain,
                "dtrain_lora_load_report": {"missing_keys": [k for k in report.missing_keys if "lora_" in k],
                                            "unexpected_keys": list(report.unexpected_keys)}}
    json.dump(expected, open(os.path.join(d, "interop_expected.json"), "w"), indent=1)
    print(f"{name}: base {base:.6f}, PEFT adapter {with_peft:.6f}, dtrain's file in PEFT {with_dtrain:.6f}")


if __name__ == "__main__":
    for name in ([sys.argv[1]] if len(sys.argv) > 1 else ["mistral_sliding", "qwen3", "gemma2", "gemma3", "phi3"]):
        family(name)
