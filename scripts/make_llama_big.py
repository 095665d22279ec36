"""Writes a random-weight Hugging Face Llama directory with the layer shapes of a big model, for the memory and
sharding measurements of docs/benchmarks.md and docs/cluster.md (issue 16), with SmolLM2's tokenizer:
    /tmp/ref/bin/python scripts/make_llama_big.py --layout 8b /tmp/llama8b            # ~15 GB, never in the repo
    /tmp/ref/bin/python scripts/make_llama_big.py --layout 70b --layers 4 /tmp/llama70b-4l   # ~8.5 GB
Layouts (hidden, intermediate, layers, attention / KV heads, head dim 128, untied LM head, vocabulary 49152 —
SmolLM2's, so the shipped data tokenizes as for the default model):
    8b    4096, 14336, 32, 32 / 8   (Llama-3-8B's layer shapes; bf16 safetensors in 8 shards, as Meta ships it)
    70b   8192, 28672, --layers (default 4) of Llama-3-70B's 80, 64 / 8
Weights: numpy's PCG64(seed) normal(0, 0.02) (transformers' initializer_range) rounded to bf16 (nearest even),
norms 1; written tensor by tensor (memory: one tensor), shards balanced by bytes, model.safetensors.index.json.
Tokenizer files and the chat template come from make_llama1b.py (checked there against transformers and a pure
Python BPE). Needs numpy plus make_llama1b.py's packages (gguf, tokenizers, regex, transformers).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_llama1b import DEFAULT_GGUF, output_directory, write_tokenizer  # noqa: E402

LAYOUTS = {
    "8b": dict(hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, shards=8, rope_theta=500000.0),
    "70b": dict(hidden=8192, intermediate=28672, layers=4, heads=64, kv_heads=8, shards=None, rope_theta=500000.0),
}
VOCAB, HEAD_DIM = 49152, 128


def tensors(shape):
    """(name, shape, kind) in HF order: embedding, per layer norms and projections, final norm, LM head."""
    C, I, L = shape["hidden"], shape["intermediate"], shape["layers"]
    q, kv = shape["heads"] * HEAD_DIM, shape["kv_heads"] * HEAD_DIM
    out = [("model.embed_tokens.weight", (VOCAB, C), "normal")]
    for l in range(L):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (C,), "ones"),
                (p + "self_attn.q_proj.weight", (q, C), "normal"), (p + "self_attn.k_proj.weight", (kv, C), "normal"),
                (p + "self_attn.v_proj.weight", (kv, C), "normal"), (p + "self_attn.o_proj.weight", (C, q), "normal"),
                (p + "post_attention_layernorm.weight", (C,), "ones"),
                (p + "mlp.gate_proj.weight", (I, C), "normal"), (p + "mlp.up_proj.weight", (I, C), "normal"),
                (p + "mlp.down_proj.weight", (C, I), "normal")]
    out += [("model.norm.weight", (C,), "ones"), ("lm_head.weight", (VOCAB, C), "normal")]
    return out


def bf16_bytes(rng, shape, kind):
    """The tensor's bf16 bytes: normal(0, 0.02) rounded to nearest even, or ones."""
    n = int(np.prod(shape))
    if kind == "ones":
        return np.full(n, 0x3F80, dtype=np.uint16).tobytes()
    f = rng.standard_normal(n, dtype=np.float32)
    f *= np.float32(0.02)
    u = f.view(np.uint32)
    u += np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (u >> np.uint32(16)).astype(np.uint16).tobytes()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--layout", choices=sorted(LAYOUTS), required=True)
    p.add_argument("--layers", type=int, help="number of layers (default: the layout's)")
    p.add_argument("--shards", type=int, help="safetensors files (default: 8 for 8b, one per ~5 GB otherwise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gguf", default=DEFAULT_GGUF, help="the default model's GGUF, source of the tokenizer")
    a = p.parse_args()
    out = output_directory(a.out_dir, a.gguf)
    shape = dict(LAYOUTS[a.layout])
    if a.layers is not None:
        if a.layers < 1:
            sys.exit("--layers: expected at least 1")
        shape["layers"] = a.layers
    started = time.time()
    g, _ = write_tokenizer(out, a.gguf)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB,
        "hidden_size": shape["hidden"], "intermediate_size": shape["intermediate"], "num_hidden_layers": shape["layers"],
        "num_attention_heads": shape["heads"], "num_key_value_heads": shape["kv_heads"], "head_dim": HEAD_DIM,
        "rms_norm_eps": 1e-5, "rope_theta": shape["rope_theta"], "max_position_embeddings": 8192,
        "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "initializer_range": 0.02, "torch_dtype": "bfloat16",
        "bos_token_id": g["bos"], "eos_token_id": g["eos"], "pad_token_id": g["pad"],
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    plan = tensors(shape)
    sizes = [int(np.prod(s)) * 2 for _, s, _ in plan]
    total = sum(sizes)
    shards = a.shards or shape["shards"] or max(1, round(total / 5e9))
    # Balanced by bytes: a tensor goes to the shard its first byte falls in.
    assignment, offset = [], 0
    for size in sizes:
        assignment.append(min(shards - 1, offset * shards // total))
        offset += size
    rng = np.random.Generator(np.random.PCG64(a.seed))
    weight_map = {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        members = [i for i in range(len(plan)) if assignment[i] == s]
        header, at = {"__metadata__": {"format": "pt"}}, 0
        for i in members:
            header[plan[i][0]] = {"dtype": "BF16", "shape": list(plan[i][1]), "data_offsets": [at, at + sizes[i]]}
            at += sizes[i]
            weight_map[plan[i][0]] = name
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        t = time.time()
        with open(os.path.join(out, name + ".tmp"), "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for i in members:
                f.write(bf16_bytes(rng, plan[i][1], plan[i][2]))
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
        print(f"{name}: {len(members)} tensors, {at / 1e9:.2f} GB in {time.time() - t:.1f} s", flush=True)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    params = total // 2
    print(f"wrote {out}: {a.layout} layout, {shape['layers']} layers, {params / 1e9:.2f}B parameters, "
          f"{total / 1e9:.2f} GB in {shards} shards, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
