#!/usr/bin/env python3
"""Fixtures that tie dtrain's GGUF adapters and merged models to the real llama.cpp and transformers.

Run (nothing of llama.cpp is committed; build it outside the repo from the llama-cpp-python sdist):
  pip download --no-binary :all: --no-deps llama-cpp-python      # e.g. 0.3.36 → vendor/llama.cpp
  cmake -S llama_cpp_python-*/vendor/llama.cpp -B /work/peer/llama-build -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=ON -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=OFF
  cmake --build /work/peer/llama-build -j2 --target llama-perplexity llama-completion llama-quantize
  python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers peft gguf safetensors numpy
  swift build -c release --product dtrain
  LLAMA_CPP_BIN=/work/peer/llama-build/bin /tmp/ref/bin/python scripts/make_llamacpp_fixtures.py

Writes Tests/DTCommandsTests/Fixtures/llamacpp/:
  eval.txt          the validation conversations as plain text ("Q: …", "ANSWER: …", "WHY: …"), cut to whole
                    256-token chunks (llama-perplexity drops a partial last chunk; dtrain scores it, so none is left)
  adapters/NAME/    adapters trained by dtrain on the main-job data (tensors stored as F16 to keep the repo small):
                    all7_r4 (r=4, all seven projections), qv_r8 (q/v only), rslora_qkvo_r8 (rsLoRA, q/k/v/o)
  expected.json     llama-perplexity (-c 256; it scores positions 128…254 of each chunk, no BOS: SmolLM2's
                    add_bos_token is false) on the F32 GGUF of the default model, without and with --lora for each
                    adapter exported by `dtrain export --format gguf`; the merged GGUF (f32, q8_0) and the Q8_0 base;
                    transformers on `dtrain merge --format hf` outputs against PEFT on the base; dtrain's own
                    numbers at the time; versions and the commands run.
The tests (Tests/DTCommandsTests/LlamaCppFixtureTests.swift) recompute dtrain's side and compare with these.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/DTCommandsTests/Fixtures/llamacpp")
DTRAIN = os.path.join(ROOT, ".build/release/dtrain")
LLAMA = os.environ.get("LLAMA_CPP_BIN", "/work/peer/llama-build/bin")
MODEL = os.path.expanduser("~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf")
CTX = 256
WORK = tempfile.mkdtemp(prefix="llamacpp-fixtures-")

ADAPTERS = {
    "all7_r4": ["--lora-rank", "4", "--lora-alpha", "8"],
    "qv_r8": ["--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "q_proj,v_proj"],
    "rslora_qkvo_r8": ["--lora-rank", "8", "--lora-alpha", "8", "--use-rslora", "true", "--lora-targets", "q_proj,k_proj,v_proj,o_proj"],
}


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def dtrain_ids(text):
    r = run([DTRAIN, "tokenize", "--ids-only"], input=text)
    return [int(t) for t in r.stdout.split()]


def make_text():
    lines = [json.loads(l) for l in open(os.path.join(ROOT, "data/instruct/valid.jsonl"))]
    blocks = [f"Q: {c['messages'][0]['content']}\n{c['messages'][1]['content']}\n\n" for c in lines]
    # Whole chunks only: drop conversations from the end until the token count is a multiple of CTX.
    for n in range(len(blocks), 0, -1):
        text = "".join(blocks[:n])
        ids = dtrain_ids(text)
        if len(ids) >= 2 * CTX and len(ids) % CTX == 0:
            return text, len(ids)
    # No exact multiple: trim characters off the end of the text instead.
    text = "".join(blocks)
    while len(dtrain_ids(text)) % CTX != 0:
        text = text[:-1]
    return text, len(dtrain_ids(text))


def safetensors_to_f16(src, dst):
    """Rewrites a safetensors file with every F32 tensor as F16 (same names and metadata)."""
    raw = open(src, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset = {}, [], 0
    for name in sorted(header):
        h = header[name]
        a, b = h["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=np.float32).astype(np.float16)
        chunks.append(arr.tobytes())
        out_header[name] = {"dtype": "F16", "shape": h["shape"], "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    if meta:
        out_header["__metadata__"] = meta
    hb = json.dumps(out_header, separators=(",", ":")).encode()
    hb += b" " * ((8 - (len(hb) + 8) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(len(hb).to_bytes(8, "little") + hb + b"".join(chunks))


def llama_nll(model, text_file, lora=None):
    cmd = [os.path.join(LLAMA, "llama-perplexity"), "-m", model, "-f", text_file, "-c", str(CTX), "-b", str(CTX), "-t", "2"]
    if lora:
        cmd += ["--lora", lora]
    r = run(cmd)
    log = r.stdout + r.stderr
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", log)
    chunks = re.search(r"calculating perplexity over (\d+) chunks", log)
    warnings = [l for l in log.splitlines() if re.search(r"warn|fallback|error|failed", l, re.I)]
    return {"mean_nll": math.log(float(m.group(1))), "ppl": float(m.group(1)), "chunks": int(chunks.group(1)), "warnings": warnings}


def dtrain_eval(model, text_file, adapter=None, score_from=CTX // 2, extra=()):
    cmd = [DTRAIN, "eval", "--model", model, "--data", text_file, "--context", str(CTX), "--score-from", str(score_from),
           "--precision", "fp32", "--compute", "fp32", "--json", *extra]
    if adapter:
        cmd += ["--adapter", adapter]
    return json.loads(run(cmd).stdout)


def main():
    os.makedirs(OUT, exist_ok=True)
    f32_base = os.path.join(WORK, "SmolLM2-135M-Instruct.F32.gguf")
    q8_base = os.path.join(WORK, "SmolLM2-135M-Instruct.Q8_0.gguf")
    run([os.path.join(LLAMA, "llama-quantize"), "--allow-requantize", MODEL, f32_base, "F32", "2"])
    run([os.path.join(LLAMA, "llama-quantize"), f32_base, q8_base, "Q8_0", "2"])

    text, n_tokens = make_text()
    text_file = os.path.join(OUT, "eval.txt")
    open(text_file, "w").write(text)
    result = {"ctx": CTX, "score_from": CTX // 2, "tokens": n_tokens,
              "llama_cpp": run([os.path.join(LLAMA, "llama-completion"), "--version"]).stderr.strip().splitlines()[:2],
              "base": {"llama": llama_nll(f32_base, text_file), "dtrain": dtrain_eval(MODEL, text_file)},
              "adapters": {}}

    for name, flags in ADAPTERS.items():
        run_dir = os.path.join(WORK, "run-" + name)
        run([DTRAIN, "train", "--data", os.path.join(ROOT, "data/instruct/train.jsonl"), "--output", run_dir,
             "--max-steps", "24", "--batch-size", "8", "--micro-batch-size", "8", "--learning-rate", "2e-3",
             "--max-length", "128", "--tensorboard", "false", "--seed", "3", *flags])
        dst = os.path.join(OUT, "adapters", name)
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        for f in ["adapter_config.json", "trainer_state.json"]:
            shutil.copy(os.path.join(run_dir, "final", f), dst)
        cfg = json.load(open(os.path.join(dst, "adapter_config.json")))
        cfg["base_model_name_or_path"] = "SmolLM2-135M-Instruct.Q4_1.gguf"
        json.dump(cfg, open(os.path.join(dst, "adapter_config.json"), "w"), indent=2, sort_keys=True)
        safetensors_to_f16(os.path.join(run_dir, "final", "adapter_model.safetensors"), os.path.join(dst, "adapter_model.safetensors"))
        gguf = os.path.join(WORK, name + ".gguf")
        run([DTRAIN, "export", "--adapter", dst, "--model", MODEL, "--format", "gguf", "-o", gguf])
        entry = {"llama": llama_nll(f32_base, text_file, lora=gguf), "dtrain": dtrain_eval(MODEL, text_file, adapter=dst)}
        entry["llama_delta"] = entry["llama"]["mean_nll"] - result["base"]["llama"]["mean_nll"]
        entry["dtrain_delta"] = entry["dtrain"]["mean_nll"] - result["base"]["dtrain"]["mean_nll"]
        print(name, "llama.cpp Δ", entry["llama_delta"], "dtrain Δ", entry["dtrain_delta"], flush=True)
        assert abs(entry["llama_delta"] - entry["dtrain_delta"]) <= 2e-3, entry
        assert not entry["llama"]["warnings"], entry["llama"]["warnings"]
        result["adapters"][name] = entry

    # Merged GGUFs over the F32 base: f32 must equal base + adapter; q8_0 against what Q8_0 costs the base.
    adapter = os.path.join(OUT, "adapters", "all7_r4")
    merged = {}
    for outtype in ["f32", "q8_0"]:
        path = os.path.join(WORK, f"merged-{outtype}.gguf")
        run([DTRAIN, "merge", "--adapter", adapter, "--model", f32_base, "--format", "gguf", "--outtype", outtype, "-o", path])
        merged[outtype] = llama_nll(path, text_file)
    merged["q8_0_base"] = llama_nll(q8_base, text_file)
    # What Q8_0 costs the model with the adapter when the adapter stays separate (Q8_0 base + F32 --lora).
    merged["q8_0_base_with_lora"] = llama_nll(q8_base, text_file, lora=os.path.join(WORK, "all7_r4.gguf"))
    result["merged_gguf"] = merged
    with_lora = result["adapters"]["all7_r4"]["llama"]["mean_nll"]
    assert abs(merged["f32"]["mean_nll"] - with_lora) <= 1e-3, (merged["f32"], with_lora)

    # HF merges, loaded by transformers: the tiny interop model + PEFT's own adapter, and the default model.
    result["hf"] = hf_checks(adapter)
    json.dump(result, open(os.path.join(OUT, "expected.json"), "w"), indent=2, sort_keys=True)
    print(json.dumps(result, indent=2, sort_keys=True))


def hf_checks(adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(0)
    out = {}

    def nll(model, ids):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        return torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:])).item()

    # 1. Tiny HF Llama + PEFT-made LoRA (interop fixtures): merged by dtrain vs PEFT on the base.
    interop = os.path.join(ROOT, "Tests/DTTrainingTests/Fixtures/interop")
    merged = os.path.join(WORK, "tiny-merged")
    run([DTRAIN, "merge", "--adapter", os.path.join(interop, "peft_lora"), "--model", os.path.join(interop, "tiny_model"),
         "--format", "hf", "-o", merged, "--max-shard-size", "40KB"])
    ids = [[int(t) for t in s] for s in json.load(open(os.path.join(interop, "peft_lora_expected.json")))["ids"]]
    base = AutoModelForCausalLM.from_pretrained(os.path.join(interop, "tiny_model"), torch_dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, os.path.join(interop, "peft_lora")).eval()
    tm = AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float32).eval()
    out["tiny"] = {"ids": ids[0], "peft_nll": nll(peft, ids[0]), "transformers_merged_nll": nll(tm, ids[0])}
    assert abs(out["tiny"]["peft_nll"] - out["tiny"]["transformers_merged_nll"]) <= 1e-4, out["tiny"]

    # 2. The default model (GGUF) + a dtrain adapter, merged to HF by dtrain: transformers on it vs PEFT on
    #    transformers' own dequantization of the GGUF; and the exported tokenizer gives dtrain's ids.
    merged = os.path.join(WORK, "smollm2-merged")
    run([DTRAIN, "merge", "--adapter", adapter, "--model", MODEL, "--format", "hf", "-o", merged, "--max-shard-size", "200MB"])
    text = open(os.path.join(OUT, "eval.txt")).read()
    tok = AutoTokenizer.from_pretrained(merged)
    varied = "Hello   world!! 12345 ünïcödé 😀 <|im_start|>user\nhi<|im_end|>\n\tTabs  and\n\nnewlines 3.14159 ﷽ \u00a0x"
    out["tokenizer_ids_equal"] = tok(varied)["input_ids"] == dtrain_ids(varied) and tok(text)["input_ids"] == dtrain_ids(text)
    assert out["tokenizer_ids_equal"]
    ids = dtrain_ids(text)
    windows = [ids[i:i + CTX] for i in range(0, len(ids), CTX)]   # as `dtrain eval --context 256` cuts eval.txt
    gguf_dir = os.path.dirname(MODEL)
    base = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=os.path.basename(MODEL), torch_dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, adapter).eval()
    tm = AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float32).eval()
    mean = lambda m: sum(nll(m, w) * (len(w) - 1) for w in windows) / sum(len(w) - 1 for w in windows)
    out["smollm2"] = {"windows": len(windows), "peft_nll": mean(peft), "transformers_merged_nll": mean(tm),
                      "dtrain_merged_nll": dtrain_eval(merged, os.path.join(OUT, "eval.txt"), score_from=0)["mean_nll"]}
    assert abs(out["smollm2"]["peft_nll"] - out["smollm2"]["transformers_merged_nll"]) <= 1e-4, out["smollm2"]
    return out


if __name__ == "__main__":
    main()
