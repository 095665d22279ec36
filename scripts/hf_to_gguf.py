"""Writes a llama-architecture GGUF of a Llama-shaped HF directory made by make_llama1b.py or make_llama_big.py (bf16
safetensors, SmolLM2's tokenizer), for the loading measurements with GGUF inputs (docs/benchmarks.md):
    /tmp/ref/bin/python scripts/hf_to_gguf.py /tmp/llama8b /tmp/llama8b-q4_1.gguf [--type q4_1|q8_0|f16]
Tensors are named, and the Q/K rows permuted, as llama.cpp's convert_hf_to_gguf.py does for LlamaForCausalLM;
matrices are quantized by the gguf package's numpy quantizers (norms stay F32); the tokenizer metadata
(tokenizer.ggml.*) is copied from the default model's GGUF, whose tokenizer the HF directory carries. Streams:
every tensor's info is written first, then each tensor is read, converted and written in turn (memory: one
tensor). Needs numpy and gguf (the venv of scripts/bench_pytorch.py).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

DEFAULT_GGUF = os.path.expanduser("~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf")
TYPES = {"q4_1": Q.Q4_1, "q8_0": Q.Q8_0, "f16": Q.F16}


def hf_tensors(directory):
    """name -> (shard path, dtype, shape, byte offset, byte count) of every tensor of the HF directory."""
    index = os.path.join(directory, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for name in files:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for key, t in header.items():
            if key != "__metadata__":
                a, b = t["data_offsets"]
                out[key] = (path, t["dtype"], t["shape"], 8 + n + a, b - a)
    return out


def read_f32(entry):
    path, dtype, shape, offset, count = entry
    raw = np.fromfile(path, dtype=np.uint8, count=count, offset=offset)
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if dtype == "F16":
        return raw.view(np.float16).astype(np.float32).reshape(shape)
    if dtype == "F32":
        return raw.view(np.float32).reshape(shape).copy()
    sys.exit(f"{path}: dtype {dtype} not supported")


def permute(w, heads):
    """llama.cpp's LlamaModel.permute: each head's rows from rotate-half to interleaved RoPE order."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("hf_dir")
    p.add_argument("out")
    p.add_argument("--type", choices=sorted(TYPES), default="q4_1", help="type of the matrices (default q4_1)")
    p.add_argument("--tokenizer-gguf", default=DEFAULT_GGUF)
    a = p.parse_args()
    started = time.time()
    cfg = json.load(open(os.path.join(a.hf_dir, "config.json")))
    C, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or C // heads
    tensors = hf_tensors(a.hf_dir)
    qtype = TYPES[a.type]

    names = [("token_embd.weight", "model.embed_tokens.weight")]
    for l in range(L):
        hf, g = f"model.layers.{l}.", f"blk.{l}."
        names += [(g + "attn_norm.weight", hf + "input_layernorm.weight"), (g + "attn_q.weight", hf + "self_attn.q_proj.weight"),
                  (g + "attn_k.weight", hf + "self_attn.k_proj.weight"), (g + "attn_v.weight", hf + "self_attn.v_proj.weight"),
                  (g + "attn_output.weight", hf + "self_attn.o_proj.weight"), (g + "ffn_norm.weight", hf + "post_attention_layernorm.weight"),
                  (g + "ffn_gate.weight", hf + "mlp.gate_proj.weight"), (g + "ffn_up.weight", hf + "mlp.up_proj.weight"),
                  (g + "ffn_down.weight", hf + "mlp.down_proj.weight")]
    names.append(("output_norm.weight", "model.norm.weight"))
    if "lm_head.weight" in tensors and not cfg.get("tie_word_embeddings", False):
        names.append(("output.weight", "lm_head.weight"))

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(C)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type({Q.Q4_1: 3, Q.Q8_0: 7, Q.F16: 1}[qtype])
    reader = gguf.GGUFReader(a.tokenizer_gguf)
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(key, field.contents(), vtype, sub_type=sub)

    def kind(name):
        return Q.F32 if name.endswith("norm.weight") else qtype

    for g, hf in names:
        shape = tensors[hf][2]
        t = kind(g)
        byte_shape = gguf.quant_shape_to_byte_shape(shape, t)
        nbytes = int(np.prod(byte_shape))
        if t == Q.F32:
            w.add_tensor_info(g, shape, np.float32, nbytes)
        elif t == Q.F16:
            w.add_tensor_info(g, shape, np.float16, nbytes)
        else:
            w.add_tensor_info(g, byte_shape, np.uint8, nbytes, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for i, (g, hf) in enumerate(names):
        x = read_f32(tensors[hf])
        if g.endswith("attn_q.weight"):
            x = permute(x, heads)
        elif g.endswith("attn_k.weight"):
            x = permute(x, kv)
        t = kind(g)
        data = x if t == Q.F32 else x.astype(np.float16) if t == Q.F16 else gguf.quants.quantize(x, t)
        w.write_tensor_data(data)
        if i % 20 == 0:
            print(f"{i + 1}/{len(names)} tensors, {time.time() - started:.0f} s", flush=True)
    w.close()
    print(f"wrote {a.out}: {len(names)} tensors, {a.type}, {os.path.getsize(a.out) / 1e9:.2f} GB in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
