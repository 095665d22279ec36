#!/usr/bin/env python3
"""Seeds the fuzz corpora Tests/Fuzz/corpus/<target>/ from the committed fixtures (the hostile-input cases, the
tiny models, launch configs), one file per distinct content, named by its source. Run from anywhere:
    python3 scripts/make_fuzz_corpus.py
Inputs that a fuzzing campaign found (crashes fixed since) live in Tests/Fuzz/corpus/<target>/regression-* and
are kept."""
import glob, hashlib, json, os, shutil, struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H = os.path.join(ROOT, "Tests/DTCommandsTests/Fixtures/hostile")
CASES, BASE = os.path.join(H, "cases"), os.path.join(H, "base")
OUT = os.path.join(ROOT, "Tests/Fuzz/corpus")


def cases(pattern, inner=None):
    paths = sorted(glob.glob(os.path.join(CASES, pattern)))
    return [os.path.join(p, inner) if inner else p for p in paths]


def index_json():
    """A valid model.safetensors.index.json for base/tiny-hf."""
    with open(os.path.join(BASE, "tiny-hf/model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    names = sorted(k for k in header if k != "__metadata__")
    return json.dumps({"metadata": {"total_size": 0}, "weight_map": {k: "model.safetensors" for k in names}}, indent=1).encode()


SEEDS = {
    "gguf": [f"{BASE}/tiny.gguf.bin", f"{ROOT}/Tests/DTFormatsTests/Fixtures/writer_reference.gguf.bin"]
            + cases("gguf-[a-d]*.gguf.bin")[:8] + cases("gguf-[o-z]*.gguf.bin")[:6],
    "gguf-tokenizer": [f"{BASE}/tiny.gguf.bin"] + cases("gguf-merge-*") + cases("gguf-token-*") + cases("gguf-bos-*")
                      + cases("gguf-sentencepiece*") + cases("gguf-unknown-pre*") + cases("gguf-vocab-*"),
    "safetensors": [f"{ROOT}/Tests/DTFormatsTests/Fixtures/mixed.safetensors", f"{BASE}/tiny-hf/model.safetensors",
                    f"{BASE}/lora/adapter_model.safetensors", f"{BASE}/probe/probe_head.safetensors"]
                   + cases("hf-safetensors-*", "model.safetensors"),
    "hf-config": [f"{BASE}/tiny-hf/config.json"] + cases("hf-*", "config.json"),
    "hf-index": [index_json()] + cases("hf-index-*", "model.safetensors.index.json"),
    "tokenizer-json": [f"{BASE}/tiny-hf/tokenizer.json"] + cases("hf-tokenizer-*", "tokenizer.json"),
    "encode": [f"{BASE}/text.txt", f"{BASE}/chat.jsonl", "Hello <|im_start|>user\nünïcödé 日本語 \u200d👩‍👩‍👧 12345 \t\r\n<|im_end|>".encode()],
    "jsonl": [f"{BASE}/train.jsonl", f"{BASE}/chat.jsonl", f"{BASE}/labels.jsonl"] + cases("data-*.jsonl") + cases("*-examples.jsonl") + cases("one-example.jsonl"),
    "yaml": sorted(glob.glob(f"{ROOT}/launch/configs/*.yaml")) + cases("yaml-*.yaml"),
    "adapter-config": [f"{BASE}/lora/adapter_config.json", f"{BASE}/prompt/adapter_config.json"] + cases("adapter-*", "adapter_config.json"),
    "probe-config": [f"{BASE}/probe/probe_config.json"] + cases("probe-*", "probe_config.json"),
    "checkpoint-state": [f"{BASE}/checkpoint/trainer_state.json"] + cases("checkpoint-*", "trainer_state.json"),
}


def main():
    for target, seeds in SEEDS.items():
        d = os.path.join(OUT, target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if not f.startswith("regression-"):
                os.remove(os.path.join(d, f))
        seen = set()
        for s in seeds:
            if isinstance(s, bytes):
                data, name = s, "generated"
            elif os.path.isfile(s):
                with open(s, "rb") as f:
                    data = f.read()
                rel = os.path.relpath(s, H if s.startswith(H) else ROOT)
                name = rel.replace("cases/", "").replace("base/", "base-").replace("/", "-")
            else:
                continue
            digest = hashlib.sha1(data).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            with open(os.path.join(d, f"{name}-{digest[:8]}"), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seen)} seeds")


if __name__ == "__main__":
    main()
