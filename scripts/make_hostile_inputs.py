"""Hostile inputs for HostileInputTests: tiny corrupted or unusual files of every kind dtrain reads, and
cases.json, one entry per case: the dtrain arguments, and either "error" with the fragments stderr must name
(the file and the key, line or byte offset; for a flag, the flag) or "ok" (the input must be accepted).

    python3 scripts/make_hostile_inputs.py        # rewrites Tests/DTCommandsTests/Fixtures/hostile/ (< 300 KB)

Standard library only; seeded, so a rerun gives the same bytes. Paths in the cases are relative to the hostile
directory (the test runs dtrain there). Placeholders: {tmp} is a fresh empty directory, {copy:PATH} a fresh copy
of fixture PATH (the test checks that a refused run left the copy unchanged).
Layout: base/ holds valid inputs (a 1-layer model as an HF directory and as GGUF, data, a LoRA, prompt-tuning
and probe adapter, a checkpoint, a finished run); cases/ the hostile variants (unchanged files are symlinks).
"""
import json
import math
import os
import random
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "DTCommandsTests", "Fixtures", "hostile")
rng = random.Random(13)

# ---------------------------------------------------------------- the tiny model: vocab 264, C 8, 1 layer
C, HEADS, KV, D, I, CTX = 8, 2, 1, 4, 16, 64


def byte_symbols():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, nxt = [], 256
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(nxt))
            nxt += 1
    return out


SYMBOLS = byte_symbols()
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("i", "n")]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENS = SYMBOLS + [a + b for a, b in MERGES] + SPECIAL
V = len(TOKENS)
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def weights():
    def t(shape, base=0.0):
        n = 1
        for d in shape:
            n *= d
        return shape, [base + 0.3 * rng.gauss(0, 1) for _ in range(n)]
    w = {"model.embed_tokens.weight": t([V, C]), "model.norm.weight": t([C], 1.0),
         "model.layers.0.input_layernorm.weight": t([C], 1.0), "model.layers.0.post_attention_layernorm.weight": t([C], 1.0),
         "model.layers.0.self_attn.q_proj.weight": t([HEADS * D, C]), "model.layers.0.self_attn.k_proj.weight": t([KV * D, C]),
         "model.layers.0.self_attn.v_proj.weight": t([KV * D, C]), "model.layers.0.self_attn.o_proj.weight": t([C, HEADS * D]),
         "model.layers.0.mlp.gate_proj.weight": t([I, C]), "model.layers.0.mlp.up_proj.weight": t([I, C]),
         "model.layers.0.mlp.down_proj.weight": t([C, I])}
    return w


WEIGHTS = weights()
GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
              "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
              "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight", "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
              "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight", "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
              "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight", "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
              "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight"}


def safetensors(tensors, metadata=None, dtype="F32"):
    """tensors: name -> (shape, values) in insertion order; F32 or F16 (model weights, to keep files small)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (shape, values) in tensors.items():
        blob = struct.pack("<%d%s" % (len(values), "e" if dtype == "F16" else "f"), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - (len(text) + 8) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs)


def raw_safetensors(header_text, data=b""):
    return struct.pack("<Q", len(header_text)) + header_text.encode() + data


HF_CONFIG = {"model_type": "llama", "vocab_size": V, "hidden_size": C, "intermediate_size": I, "num_hidden_layers": 1,
             "num_attention_heads": HEADS, "num_key_value_heads": KV, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "max_position_embeddings": CTX, "tie_word_embeddings": True}


def tokenizer_json(vocab=None, merges=None, added=None, pre=None, model_type="BPE"):
    vocab = vocab if vocab is not None else {t: i for i, t in enumerate(TOKENS[:V - len(SPECIAL)])}
    merges = merges if merges is not None else ["%s %s" % m for m in MERGES]
    added = added if added is not None else [{"id": V - len(SPECIAL) + i, "content": s, "special": True} for i, s in enumerate(SPECIAL)]
    pre = pre if pre is not None else {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    return {"model": {"type": model_type, "vocab": vocab, "merges": merges}, "added_tokens": added, "pre_tokenizer": pre}


TOKENIZER_CONFIG = {"chat_template": CHATML, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": "<|im_start|>"}


# ---------------------------------------------------------------- GGUF writer
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gvalue(kind, v):
    if kind == "u32":
        return struct.pack("<I", 4) + struct.pack("<I", v)
    if kind == "i32":
        return struct.pack("<I", 5) + struct.pack("<i", v)
    if kind == "f32":
        return struct.pack("<I", 6) + struct.pack("<f", v)
    if kind == "bool":
        return struct.pack("<I", 7) + struct.pack("<B", v)
    if kind == "str":
        return struct.pack("<I", 8) + gstr(v)
    if kind == "strs":
        return struct.pack("<I", 9) + struct.pack("<IQ", 8, len(v)) + b"".join(gstr(s) for s in v)
    if kind == "i32s":
        return struct.pack("<I", 9) + struct.pack("<IQ", 5, len(v)) + b"".join(struct.pack("<i", x) for x in v)
    raise ValueError(kind)


def gguf_metadata(**over):
    md = [("general.architecture", "str", "llama"), ("llama.embedding_length", "u32", C), ("llama.feed_forward_length", "u32", I),
          ("llama.block_count", "u32", 1), ("llama.attention.head_count", "u32", HEADS), ("llama.attention.head_count_kv", "u32", KV),
          ("llama.context_length", "u32", CTX), ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
          ("llama.rope.freq_base", "f32", 10000.0), ("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.pre", "str", "gpt2"),
          ("tokenizer.ggml.tokens", "strs", TOKENS), ("tokenizer.ggml.token_type", "i32s", [1] * (V - 3) + [3, 3, 3]),
          ("tokenizer.ggml.merges", "strs", ["%s %s" % m for m in MERGES]), ("tokenizer.ggml.bos_token_id", "u32", V - 2),
          ("tokenizer.ggml.eos_token_id", "u32", V - 1), ("tokenizer.chat_template", "str", CHATML)]
    out = []
    for key, kind, value in md:
        if key in over:
            if over[key] is None:
                continue
            kind, value = over[key]
        out.append((key, kind, value))
    for key, kv in over.items():
        if kv is not None and key not in [k for k, _, _ in md]:
            out.append((key, kv[0], kv[1]))
    return out


def gguf_bytes(metadata, tensors=None, version=3, alignment=32, tensor_infos=None, data=None):
    """tensors: list of (gguf name, ggml dims innermost first, values); or explicit tensor_infos + data."""
    tensors = tensors if tensors is not None else gguf_tensors()
    infos, blobs, offset = [], [], 0
    if tensor_infos is None:
        tensor_infos = []
        for name, dims, values in tensors:
            blob = struct.pack("<%de" % len(values), *values)   # F16 (ggml type 1)
            tensor_infos.append((name, dims, 1, offset))
            blobs.append(blob + b"\0" * ((alignment - len(blob) % alignment) % alignment))
            offset += len(blobs[-1])
        data = b"".join(blobs)
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensor_infos), len(metadata))
    for key, kind, value in metadata:
        out += gstr(key) + gvalue(kind, value)
    for name, dims, ggml_type, off in tensor_infos:
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ggml_type, off)
    out += b"\0" * ((alignment - len(out) % alignment) % alignment)
    return out + (data or b"")


def gguf_tensors(skip=(), reshape=None):
    out = []
    for hf, (shape, values) in WEIGHTS.items():
        name = GGUF_NAMES[hf]
        if name in skip:
            continue
        dims = list(reversed(shape))
        if reshape and name in reshape:
            dims = reshape[name]
            n = 1
            for d in dims:
                n *= d
            values = (values * (n // len(values) + 1))[:n]
        out.append((name, dims, values))
    return out


# ---------------------------------------------------------------- writing helpers
CASES = []


def case(name, args, expect="error", mentions=(), note=""):
    CASES.append({"name": name, "args": args, "expect": expect, "mentions": list(mentions), "note": note})


def write(rel, data):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return rel


def write_json(rel, obj, indent=None):
    return write(rel, json.dumps(obj, indent=indent, ensure_ascii=False))


def link(rel, target_rel):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(os.path.relpath(os.path.join(ROOT, target_rel), os.path.dirname(path)), path)
    return rel


HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def hf_variant(name, **files):
    """cases/NAME/: the base HF directory with some files replaced (bytes or str; None drops the file)."""
    rel = "cases/hf-" + name
    for f in HF_FILES:
        if f in files:
            if files[f] is not None:
                write(rel + "/" + f, files[f])
        else:
            link(rel + "/" + f, "base/tiny-hf/" + f)
    for f, data in files.items():
        if f not in HF_FILES and data is not None:
            write(rel + "/" + f, data)
    return rel


def dir_variant(name, base, **files):
    """cases/NAME/: the files of BASE with some replaced (None drops one)."""
    rel = "cases/" + name
    for f in sorted(os.listdir(os.path.join(ROOT, base))):
        if f in files:
            if files[f] is not None:
                write(rel + "/" + f, files[f])
        else:
            link(rel + "/" + f, base + "/" + f)
    for f, data in files.items():
        if not os.path.exists(os.path.join(ROOT, rel, f)) and data is not None:
            write(rel + "/" + f, data)
    return rel


M = "base/tiny-hf"
G = "base/tiny.gguf.bin"
TRAIN = ["train", "--model", M, "--data", "base/train.jsonl", "--output", "{tmp}", "--max-steps", "1", "--batch-size", "2",
         "--micro-batch-size", "2", "--threads", "1", "--compute", "fp32", "--tensorboard", "false"]
RESUME = TRAIN[:7] + ["--max-steps", "2"] + TRAIN[9:] + ["--lora-rank", "2", "--lora-targets", "q_proj,v_proj"]
EVAL = ["eval", "--model", M, "--compute", "fp32", "--threads", "1", "--context", "32"]


def with_flags(args, *extra):
    """args with the flag/value pairs of `extra` replacing those already there (or appended)."""
    args = list(args)
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def train_with(*extra, data="base/train.jsonl"):
    return with_flags(TRAIN, "--data", data, *extra)


# ---------------------------------------------------------------- base (valid) inputs
def make_base():
    write_json("base/tiny-hf/config.json", HF_CONFIG, indent=1)
    write("base/tiny-hf/model.safetensors", safetensors(WEIGHTS, dtype="F16"))
    write_json("base/tiny-hf/tokenizer.json", tokenizer_json())
    write_json("base/tiny-hf/tokenizer_config.json", TOKENIZER_CONFIG)
    write(G, gguf_bytes(gguf_metadata()))
    texts = ["the sun and the rain %d" % i for i in range(8)]
    write("base/train.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts))
    write("base/chat.jsonl", "".join(json.dumps({"messages": [{"role": "user", "content": "in the sun %d" % i},
                                                              {"role": "assistant", "content": "then rain %d" % (i % 3)}]}) + "\n"
                                     for i in range(4)))
    write("base/labels.jsonl", "".join(json.dumps({"text": "the %s %d" % (l, i), "label": l}) + "\n"
                                       for i, l in enumerate(["sun", "rain"] * 3)))
    write("base/text.txt", "the sun and the rain, then the sun again.\n" * 4)
    # LoRA r=2 on q_proj and v_proj.
    lora = {}
    for p, rows in (("q_proj", HEADS * D), ("v_proj", KV * D)):
        lora["base_model.model.model.layers.0.self_attn.%s.lora_A.weight" % p] = ([2, C], [0.1 * rng.gauss(0, 1) for _ in range(2 * C)])
        lora["base_model.model.model.layers.0.self_attn.%s.lora_B.weight" % p] = ([rows, 2], [0.1 * rng.gauss(0, 1) for _ in range(2 * rows)])
    lora_config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4.0, "target_modules": ["q_proj", "v_proj"],
                   "lora_dropout": 0.0, "bias": "none", "use_rslora": False, "use_dora": False}
    write_json("base/lora/adapter_config.json", lora_config, indent=1)
    write("base/lora/adapter_model.safetensors", safetensors(lora, {"format": "pt"}))
    prompt_config = {"peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 2, "token_dim": C,
                     "num_transformer_submodules": 1, "prompt_tuning_init": "RANDOM"}
    write_json("base/prompt/adapter_config.json", prompt_config, indent=1)
    write("base/prompt/adapter_model.safetensors", safetensors({"prompt_embeddings": ([2, C], [rng.gauss(0, 1) for _ in range(2 * C)])}))
    probe_config = {"type": "linear_probe", "task": "classification", "labels": ["rain", "sun"], "pooling": "last", "layer": -1,
                    "hidden_size": C, "max_length": 32, "library": "dtrain"}
    write_json("base/probe/probe_config.json", probe_config, indent=1)
    write("base/probe/probe_head.safetensors", safetensors({"score.weight": ([2, C], [rng.gauss(0, 1) for _ in range(2 * C)]),
                                                            "score.bias": ([2], [0.0, 0.0])}, {"format": "pt"}))
    # A checkpoint after step 1 of RESUME (LoRA r=2 on q/v: 56 trainable values) and a finished run.
    ck = "base/checkpoint"
    os.makedirs(os.path.join(ROOT, ck), exist_ok=True)
    lora_config16 = dict(lora_config, lora_alpha=16.0)
    write_json(ck + "/adapter_config.json", lora_config16, indent=1)
    write(ck + "/adapter_model.safetensors", safetensors(lora, {"format": "pt"}))
    write(ck + "/optimizer.safetensors", safetensors({"exp_avg": ([56], [1e-3] * 56), "exp_avg_sq": ([56], [1e-6] * 56)},
                                                     {"format": "dtrain", "optimizer": "adamw"}))
    write_json(ck + "/trainer_state.json", {"step": 1, "samplesSeen": 2, "optimizerStep": 1, "worldSize": 1, "lastLoss": 5.5}, indent=1)
    write(ck + "/config.yaml", CHECKPOINT_YAML)
    run = "base/finished-run"
    for f in os.listdir(os.path.join(ROOT, ck)):
        os.makedirs(os.path.join(ROOT, run, "checkpoint-000002"), exist_ok=True)
        shutil.copy(os.path.join(ROOT, ck, f), os.path.join(ROOT, run, "checkpoint-000002", f))
    with open(os.path.join(ROOT, run, "checkpoint-000002/trainer_state.json"), "w") as f:
        json.dump({"step": 2, "samplesSeen": 4, "optimizerStep": 2, "worldSize": 1, "lastLoss": 5.4}, f)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        os.makedirs(os.path.join(ROOT, run, "final"), exist_ok=True)
        shutil.copy(os.path.join(ROOT, ck, f), os.path.join(ROOT, run, "final", f))
    write(run + "/config.yaml", CHECKPOINT_YAML)


CHECKPOINT_YAML = """method: "lora"
model: "base/tiny-hf"
precision: "fp32"
quant: "nf4"
data: "base/train.jsonl"
max_length: 512
batch_size: 2
seed: 42
lora_rank: 2
lora_alpha: 16.0
lora_targets: [q_proj, v_proj]
use_rslora: false
lora_dropout: 0.0
learning_rate: 0.0002
schedule: "cosine"
warmup_steps: 0
max_steps: 2
epochs: 1.0
weight_decay: 0.0
train_on_prompt: false
num_virtual_tokens: 20
"""


# ---------------------------------------------------------------- hostile GGUF files
def gguf_cases():
    # Without tokenizer and tensors (llama.vocab_size instead): every case below fails before it needs them.
    no_tokenizer = {k: None for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                                      "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.chat_template")}
    md = gguf_metadata(**no_tokenizer, **{"llama.vocab_size": ("u32", V)})
    good = gguf_bytes(md, tensors=[])
    def g(name, data, mentions, cmd="inspect", note=""):
        rel = write("cases/gguf-" + name + ".gguf.bin", data)
        args = ["inspect", rel] if cmd == "inspect" else ["generate", "--model", rel, "-p", "hi", "--max-tokens", "2", "--compute", "fp32"]
        case("gguf-" + name, args, mentions=[rel] + list(mentions), note=note)
    g("empty", b"", ["byte offset 0"])
    g("bad-magic", b"GGUX" + good[4:], ["byte offset 0", "magic"])
    g("version-1", good[:4] + struct.pack("<I", 1) + good[8:], ["byte offset 4", "version"])
    g("version-huge", good[:4] + struct.pack("<I", 0xFFFFFFFF) + good[8:], ["byte offset 4", "version"])
    g("truncated-header", good[:12], ["byte offset", "truncated"])
    g("tensor-count-huge", good[:8] + struct.pack("<Q", 1 << 60) + good[16:], ["byte offset 8", "tensor count"])
    g("kv-count-huge", good[:16] + struct.pack("<Q", 1 << 60) + good[24:], ["byte offset 16", "metadata count"])
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    pad = b"\0" * 64   # so the counts fit and the reader gets to the value itself
    g("key-length-huge", head + struct.pack("<Q", 1 << 62) + pad, ["byte offset 24", "string length"])
    g("key-not-utf8", head + gstr(b"\xff\xfe") + gvalue("u32", 1) + pad, ["byte offset", "UTF-8"])
    g("unknown-value-type", head + gstr("a.b") + struct.pack("<I", 99) + pad, ["byte offset", "unknown value type"])
    nested = struct.pack("<I", 9)
    for _ in range(6):
        nested += struct.pack("<IQ", 9, 1)
    g("array-nesting", head + gstr("deep") + nested + pad, ["byte offset", "nested"])
    g("array-count-huge", head + gstr("arr") + struct.pack("<I", 9) + struct.pack("<IQ", 4, 1 << 61) + pad, ["byte offset", "cannot fit"])
    g("bool-value-2", head + gstr("flag") + struct.pack("<I", 7) + b"\x02" + pad, ["byte offset", "bool"])
    dup = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + gstr("a") + gvalue("u32", 1) + gstr("a") + gvalue("u32", 2)
    g("duplicate-key", dup, ["byte offset", "duplicate metadata key 'a'"])
    g("alignment-3", gguf_bytes(md + [("general.alignment", "u32", 3)], tensors=[]), ["general.alignment"])
    def one_tensor(name, dims, ggml_type=0, offset=0, data=b"\0" * 64, alignment=32):
        return gguf_bytes([("general.architecture", "str", "llama")], tensor_infos=[(name, dims, ggml_type, offset)], data=data,
                          alignment=alignment)
    g("zero-dims", one_tensor("t", []), ["byte offset", "dimensions"])
    g("five-dims", one_tensor("t", [1, 1, 1, 1, 1]), ["byte offset", "dimensions"])
    g("dimension-zero", one_tensor("t", [4, 0]), ["byte offset", "dimension 0"])
    g("unknown-ggml-type", one_tensor("t", [4], ggml_type=77), ["byte offset", "unknown ggml type 77"])
    g("row-not-block-multiple", one_tensor("t", [31], ggml_type=2), ["byte offset", "block size"])
    g("offset-misaligned", one_tensor("t", [4], offset=3), ["byte offset", "not aligned"])
    g("data-past-end", one_tensor("t", [64, 64]), ["byte offset", "past the end"])
    g("element-overflow", one_tensor("t", [1 << 39, 1 << 39]), ["byte offset", "overflows"])
    two = gguf_bytes([("general.architecture", "str", "llama")], tensor_infos=[("a", [16], 0, 0), ("b", [16], 0, 32)], data=b"\0" * 96)
    g("overlapping-tensors", two, ["byte offset", "overlaps tensor 'a'"])
    same = gguf_bytes([("general.architecture", "str", "llama")], tensor_infos=[("a", [8], 0, 0), ("a", [8], 0, 32)], data=b"\0" * 64)
    g("duplicate-tensor", same, ["byte offset", "duplicate tensor name 'a'"])
    # Valid structure, wrong model: these go through `generate`.
    def model(name, mentions, tensors=(), note="", tokenizer=True, **over):
        if not tokenizer:
            over = dict(no_tokenizer, **{"llama.vocab_size": ("u32", V)}, **over)
        g(name, gguf_bytes(gguf_metadata(**over), list(tensors)), mentions, cmd="generate", note=note)
    model("no-architecture", ["general.architecture"], tokenizer=False, **{"general.architecture": None})
    model("architecture-gpt2", ["general.architecture", "gpt2"], tokenizer=False, **{"general.architecture": ("str", "gpt2")})
    model("eps-nan", ["llama.attention.layer_norm_rms_epsilon", "finite"], tokenizer=False, **{"llama.attention.layer_norm_rms_epsilon": ("f32", math.nan)})
    model("eps-inf", ["llama.attention.layer_norm_rms_epsilon", "finite"], tokenizer=False, **{"llama.attention.layer_norm_rms_epsilon": ("f32", math.inf)})
    model("rope-base-zero", ["llama.rope.freq_base"], tokenizer=False, **{"llama.rope.freq_base": ("f32", 0.0)})
    model("context-zero", ["llama.context_length", "positive"], tokenizer=False, **{"llama.context_length": ("u32", 0)})
    model("heads-zero", ["llama.attention.head_count"], tokenizer=False, **{"llama.attention.head_count": ("u32", 0)})
    model("kv-heads-3", ["llama.attention.head_count_kv", "multiple"], tokenizer=False, **{"llama.attention.head_count_kv": ("u32", 3)})
    model("layers-float", ["llama.block_count", "integer"], tokenizer=False, **{"llama.block_count": ("f32", 1.0)})
    model("sentencepiece", ["tokenizer.ggml.model", "llama"], **{"tokenizer.ggml.model": ("str", "llama")})
    model("unknown-pre", ["tokenizer.ggml.pre", "nonsense"], **{"tokenizer.ggml.pre": ("str", "nonsense")})
    model("token-types-short", ["tokenizer.ggml.token_type", "expected %d entries" % V], **{"tokenizer.ggml.token_type": ("i32s", [1, 1])})
    model("bos-out-of-range", ["tokenizer.ggml.bos_token_id", "below %d" % V], **{"tokenizer.ggml.bos_token_id": ("u32", 10 ** 6)})
    model("merge-without-space", ["tokenizer.ggml.merges[0]"], **{"tokenizer.ggml.merges": ("strs", ["ab"])})
    model("merge-unknown-token", ["merge 0", "missing from the vocabulary"], **{"tokenizer.ggml.merges": ("strs", ["zz qq"])})
    model("missing-tensor", ["blk.0.attn_q.weight", "missing tensor"], tensors=gguf_tensors(skip=("blk.0.attn_q.weight",)))
    model("wrong-shape", ["model.layers.0.mlp.up_proj.weight", "expected shape"], tensors=gguf_tensors(reshape={"blk.0.ffn_up.weight": [8, 8]}))
    model("vocab-smaller-than-tokenizer", ["tokenizer has %d tokens" % V], **{"llama.vocab_size": ("u32", 100)})
    case("gguf-valid-model", ["generate", "--model", G, "-p", "hi", "--max-tokens", "2", "--compute", "fp32"], expect="ok")


# ---------------------------------------------------------------- hostile HF directories
def hf_cases():
    def cfg(**over):
        c = dict(HF_CONFIG)
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return json.dumps(c)
    def hf(name, mentions, note="", **files):
        rel = hf_variant(name, **files)
        case("hf-" + name, with_flags(EVAL, "--model", rel, "--data", "base/text.txt"), mentions=[rel] + list(mentions), note=note)
    hf("config-missing", ["config.json", "missing"], **{"config.json": None})
    hf("config-malformed", ["config.json", "malformed JSON"], **{"config.json": "{\"model_type\": \"llama\","})
    hf("config-array", ["config.json", "expected a JSON object"], **{"config.json": "[1, 2]"})
    hf("hidden-float", ["config.json", "hidden_size", "64.5"], **{"config.json": cfg(hidden_size=64.5)})
    hf("hidden-float-integral", ["config.json", "hidden_size", "integer"], **{"config.json": cfg(hidden_size=8.0)})
    hf("layers-bool", ["config.json", "num_hidden_layers", "true"], **{"config.json": cfg(num_hidden_layers=True)})
    hf("hidden-string", ["config.json", "hidden_size", "a string"], **{"config.json": cfg(hidden_size="8")})
    hf("eps-negative", ["config.json", "rms_norm_eps"], **{"config.json": cfg(rms_norm_eps=-1e-5)})
    hf("eps-overflow", ["config.json"], note="1e999 is not a number JSON can hold", **{"config.json": cfg().replace("1e-05", "1e999")})
    hf("rope-theta-zero", ["config.json", "rope_theta"], **{"config.json": cfg(rope_theta=0)})
    hf("model-type-bert", ["config.json", "model_type", "bert"], **{"config.json": cfg(model_type="bert")})
    hf("kv-heads-not-dividing", ["config.json", "num_key_value_heads"], **{"config.json": cfg(num_key_value_heads=3)})
    hf("context-negative", ["config.json", "max_position_embeddings"], **{"config.json": cfg(max_position_embeddings=-5)})
    hf("rope-scaling-equal-factors", ["config.json", "rope_scaling.high_freq_factor"],
       **{"config.json": cfg(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 1.0,
                                           "original_max_position_embeddings": 32})})
    hf("rope-scaling-yarn", ["config.json", "rope_scaling.rope_type", "yarn"], **{"config.json": cfg(rope_scaling={"rope_type": "yarn"})})
    hf("tied-flag-number", ["config.json", "tie_word_embeddings"], **{"config.json": cfg(tie_word_embeddings=1)})
    hf("safetensors-missing", ["model.safetensors"], **{"model.safetensors": None})
    hf("safetensors-header-huge", ["model.safetensors", "byte offset 0", "header length"],
       **{"model.safetensors": struct.pack("<Q", 1 << 60) + b"{}"})
    hf("safetensors-header-malformed", ["model.safetensors", "byte offset 8", "JSON"], **{"model.safetensors": raw_safetensors("{\"a\": [")})
    hf("safetensors-offsets-outside", ["model.safetensors", "x", "outside"],
       **{"model.safetensors": raw_safetensors('{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', b"\0" * 8)})
    hf("safetensors-overlap", ["model.safetensors", "overlaps"],
       **{"model.safetensors": raw_safetensors('{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
                                               '"y":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}', b"\0" * 24)})
    hf("safetensors-shape-mismatch", ["model.safetensors", "x", "needs 16 bytes"],
       **{"model.safetensors": raw_safetensors('{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}', b"\0" * 8)})
    w = dict(WEIGHTS)
    w["model.layers.0.self_attn.q_proj.weight"] = ([C, C + 1], [0.0] * (C * (C + 1)))
    hf("tensor-wrong-shape", ["model.safetensors", "model.layers.0.self_attn.q_proj.weight", "expected shape"],
       **{"model.safetensors": safetensors(w, dtype="F16")})
    w = dict(WEIGHTS)
    del w["model.norm.weight"]
    hf("tensor-missing", ["model.norm.weight", "missing tensor"], **{"model.safetensors": safetensors(w, dtype="F16")})
    hf("index-not-object", ["model.safetensors.index.json", "weight_map"],
       **{"model.safetensors": None, "model.safetensors.index.json": json.dumps({"weight_map": [1, 2]})})
    hf("index-shard-missing", ["part-1.safetensors"],
       **{"model.safetensors": None, "model.safetensors.index.json": json.dumps({"weight_map": {"model.norm.weight": "part-1.safetensors"}})})
    hf("index-shard-path", ["model.safetensors.index.json", "must be a file name"],
       **{"model.safetensors": None, "model.safetensors.index.json": json.dumps({"weight_map": {"model.norm.weight": "../x.safetensors"}})})
    hf("index-tensor-not-in-shard", ["model.safetensors.index.json", "weight_map.nope", "not in shard"],
       **{"model.safetensors.index.json": json.dumps({"weight_map": {"nope": "model.safetensors"}})})
    hf("tokenizer-missing", ["tokenizer.json", "missing"], **{"tokenizer.json": None})
    hf("tokenizer-malformed", ["tokenizer.json", "malformed"], **{"tokenizer.json": "{\"model\": "})
    hf("tokenizer-unigram", ["tokenizer.json", "model.type"], **{"tokenizer.json": json.dumps(tokenizer_json(model_type="Unigram"))})
    vocab = {t: i for i, t in enumerate(TOKENS[:V - 3])}
    vocab["extra"] = 5
    hf("tokenizer-duplicate-id", ["tokenizer.json", "model.vocab", "id 5 is given to both"],
       **{"tokenizer.json": json.dumps(tokenizer_json(vocab=vocab), ensure_ascii=False)})
    vocab = {t: i for i, t in enumerate(TOKENS[:V - 3])}
    vocab["a"] = 1.5
    hf("tokenizer-float-id", ["tokenizer.json", "model.vocab.a", "integer id"],
       **{"tokenizer.json": json.dumps(tokenizer_json(vocab=vocab), ensure_ascii=False)})
    vocab = {t: i for i, t in enumerate(TOKENS[:V - 3])}
    vocab["a"] = -4
    hf("tokenizer-negative-id", ["tokenizer.json", "model.vocab.a"], **{"tokenizer.json": json.dumps(tokenizer_json(vocab=vocab), ensure_ascii=False)})
    vocab = {t: i for i, t in enumerate(TOKENS[:V - 3])}
    vocab["a"] = 10 ** 12
    hf("tokenizer-huge-id", ["tokenizer.json", "model.vocab", "implausible"], **{"tokenizer.json": json.dumps(tokenizer_json(vocab=vocab), ensure_ascii=False)})
    vocab = {t: i + 1 for i, t in enumerate(TOKENS[:V - 4])}
    hf("tokenizer-hole", ["tokenizer.json", "no token has id 0"], **{"tokenizer.json": json.dumps(tokenizer_json(vocab=vocab), ensure_ascii=False)})
    hf("tokenizer-merge-unknown", ["tokenizer.json", "merge 0", "missing from the vocabulary"],
       **{"tokenizer.json": json.dumps(tokenizer_json(merges=["zz qq"]), ensure_ascii=False)})
    hf("tokenizer-merge-number", ["tokenizer.json", "model.merges[0]"], **{"tokenizer.json": json.dumps(tokenizer_json(merges=[7]), ensure_ascii=False)})
    hf("tokenizer-added-no-content", ["tokenizer.json", "added_tokens[0]"],
       **{"tokenizer.json": json.dumps(tokenizer_json(added=[{"id": 300}]), ensure_ascii=False)})
    hf("tokenizer-added-clashes", ["tokenizer.json", "added_tokens", "id 5"],
       **{"tokenizer.json": json.dumps(tokenizer_json(added=[{"id": 5, "content": "<x>", "special": True}]), ensure_ascii=False)})
    hf("tokenizer-no-byte-level", ["tokenizer.json", "pre_tokenizer"],
       **{"tokenizer.json": json.dumps(tokenizer_json(pre={"type": "Whitespace"}), ensure_ascii=False)})
    hf("tokenizer-config-malformed", ["tokenizer_config.json", "JSON object"], **{"tokenizer_config.json": "not json"})
    # Accepted: an added token that repeats its vocabulary entry (HF writes this for special tokens).
    vocab = {t: i for i, t in enumerate(TOKENS)}
    rel = hf_variant("tokenizer-added-repeats-vocab", **{"tokenizer.json": json.dumps(tokenizer_json(vocab=vocab), ensure_ascii=False)})
    case("hf-tokenizer-added-repeats-vocab", with_flags(EVAL, "--model", rel, "--data", "base/text.txt"), expect="ok")
    case("hf-valid-model", EVAL + ["--data", "base/text.txt"], expect="ok")


# ---------------------------------------------------------------- hostile data (JSONL / TXT)
def data_cases():
    def jl(name, data, mentions, expect="error", cmd="train", note=""):
        rel = write("cases/data-" + name, data)
        args = train_with(data=rel) if cmd == "train" else EVAL + ["--data", rel]
        case("data-" + name.split(".")[0], args, expect=expect, mentions=[rel] + list(mentions), note=note)
    jl("invalid-utf8.jsonl", b'{"text": "ok"}\n{"text": "\xff\xfe"}\n', ["line 2", "byte offset", "UTF-8"])
    jl("malformed-line-3.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": c}\n', ["line 3", "malformed JSON"])
    jl("array-line.jsonl", '{"text": "a"}\n[1, 2]\n', ["line 2", "JSON object"])
    jl("text-number.jsonl", '{"text": 42}\n', ["line 1", "must be a string"])
    jl("role-robot.jsonl", json.dumps({"messages": [{"role": "robot", "content": "beep"}]}) + "\n", ["line 1", "robot"])
    jl("messages-empty.jsonl", '{"messages": []}\n', ["line 1", "messages"])
    jl("prompt-without-completion.jsonl", '{"prompt": "hi"}\n', ["line 1", "completion"])
    jl("unknown-record.jsonl", '{"question": "hi", "answer": "yo"}\n', ["line 1", "unknown record"])
    jl("empty.jsonl", "", ["empty"])
    jl("blank-lines.jsonl", "\n\n  \n", ["empty"])
    jl("no-target.jsonl", json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", ["line 1", "no target tokens"],
       note="no assistant turn")
    depth = 2000
    jl("deep-nesting.jsonl", '{"text": "a"}\n' + "[" * depth + "]" * depth + "\n", ["line 2", "malformed JSON"])
    jl("eval-missing-text.jsonl", '{"body": "x"}\n', ["line 1", "\"text\""], cmd="eval")
    jl("eval-empty.txt", " ", ["fewer than 2 tokens"], cmd="eval")
    jl("eval-invalid-utf8.txt", b"hello\nw\xc3\x28rld\n", ["line 2", "byte offset 7", "UTF-8"], cmd="eval")
    # Accepted: CRLF, no final newline, a UTF-8 byte order mark, NUL bytes in text, a 20 KB single word.
    jl("crlf.jsonl", '{"text": "the sun"}\r\n{"text": "the rain"}\r\n', [], expect="ok")
    jl("no-final-newline.jsonl", '{"text": "the sun"}\n{"text": "the rain"}', [], expect="ok")
    jl("bom.jsonl", '\ufeff{"text": "the sun"}\n{"text": "the rain"}\n', [], expect="ok")
    jl("nul-bytes.txt", "the\0sun\0and\0rain " * 4, [], expect="ok", cmd="eval")
    jl("long-word.txt", "".join(rng.choice("ACGT") for _ in range(8000)), [], expect="ok", cmd="eval",
       note="one 8 KB pre-token (quadratic BPE took seconds, the heap merge takes milliseconds)")


# ---------------------------------------------------------------- hostile YAML configs
def yaml_cases():
    def y(name, text, mentions, expect="error", note=""):
        rel = write("cases/yaml-" + name + ".yaml", text)
        case("yaml-" + name, TRAIN + ["--config", rel], expect=expect, mentions=[rel] + list(mentions), note=note)
    y("malformed", "learning_rate: [1, 2\n", ["malformed YAML"])
    y("not-a-mapping", "- a\n- b\n", ["line 1", "mapping"])
    y("unknown-key", "learnin_rate: 0.1\n", ["line 1", "learnin_rate", "unknown configuration key"])
    y("duplicate-key", "learning_rate: 0.1\nseed: 3\nlearning_rate: 0.2\n", ["line 3", "learning_rate", "duplicate key", "line 1"])
    y("integer-float", "warmup_steps: 8.5\n", ["line 1", "warmup_steps", "integer"])
    y("integer-bool", "warmup_steps: true\n", ["line 1", "warmup_steps", "integer"])
    y("number-quoted", 'lora_alpha: "16"\n', ["line 1", "lora_alpha", "quoted string"])
    y("nan", "learning_rate: .nan\n", ["line 1", "learning_rate", "finite"])
    y("inf", "weight_decay: .inf\n", ["line 1", "weight_decay", "finite"])
    y("epochs-huge", "epochs: 1e300\n", ["line 1", "epochs"])
    y("negative-seed", "seed: -1\n", ["line 1", "seed"])
    y("nested-mapping", "seed:\n  a: 1\n", ["line 1", "seed", "mapping"])
    y("list-of-lists", "lora_targets: [[q_proj]]\n", ["line 1", "lora_targets"])
    y("null-value", "learning_rate:\n", ["line 1", "learning_rate", "no value"])
    y("warmup-negative", "warmup_steps: -3\n", ["line 1", "warmup_steps"])
    y("grad-norm-negative", "max_grad_norm: -1\n", ["line 1", "max_grad_norm"])
    y("unknown-target", "lora_targets: [q_proj, lm_head]\n", ["line 1", "lora_targets"])
    y("nan-policy", "nan_policy: ignore\n", ["line 1", "nan_policy", "stop | skip"])
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        laughs += "%s: &%s [%s]\n" % (name, name, ", ".join(["*" + prev] * 10))
    laughs += "lora_targets: *i\n"
    y("alias-bomb", laughs, ["line 1", "unknown configuration key"], note="aliases are never expanded")
    y("deep-nesting", "lora_targets: " + "[" * 8000 + "]" * 8000 + "\n", ["line 1", "lora_targets", "a list of names"],
      note="Yams recurses per level: 5000 levels overflowed the main thread's stack before")
    y("too-many-openings", "{" * 20000 + "\n", ["20000 characters that open YAML collections"])
    y("tabs", "seed:\t3\n\tbatch_size: 2\n", ["malformed YAML"])
    y("empty", "", [], expect="ok")
    y("crlf", "seed: 3\r\nlearning_rate: 0.001\r\n", [], expect="ok")


# ---------------------------------------------------------------- hostile adapter and probe directories
def adapter_cases():
    lora_cfg = json.load(open(os.path.join(ROOT, "base/lora/adapter_config.json")))
    def a(name, mentions, base="base/lora", cmd="eval", note="", **files):
        rel = dir_variant("adapter-" + name, base, **files)
        args = EVAL + ["--data", "base/text.txt", "--adapter", rel] if cmd == "eval" else \
            ["generate", "--model", M, "--adapter", rel, "-p", "hi", "--max-tokens", "2", "--compute", "fp32"]
        case("adapter-" + name, args, mentions=[rel] + list(mentions), note=note)
    def c(**over):
        d = dict(lora_cfg)
        d.update(over)
        return json.dumps(d)
    a("config-missing", ["adapter_config.json", "missing"], **{"adapter_config.json": None})
    a("config-malformed", ["adapter_config.json"], **{"adapter_config.json": "{"})
    a("peft-type-ia3", ["adapter_config.json", "peft_type", "IA3"], **{"adapter_config.json": c(peft_type="IA3")})
    a("rank-zero", ["adapter_config.json", "'r'"], **{"adapter_config.json": c(r=0)})
    a("rank-float", ["adapter_config.json", "'r'", "2.5"], **{"adapter_config.json": c(r=2.5)})
    a("alpha-string", ["adapter_config.json", "lora_alpha", "a string"], **{"adapter_config.json": c(lora_alpha="16")})
    a("alpha-negative", ["adapter_config.json", "lora_alpha"], **{"adapter_config.json": c(lora_alpha=-4)})
    a("targets-string", ["adapter_config.json", "target_modules"], **{"adapter_config.json": c(target_modules="all-linear")})
    a("targets-lm-head", ["adapter_config.json", "target_modules", "lm_head"], **{"adapter_config.json": c(target_modules=["q_proj", "lm_head"])})
    a("dora", ["adapter_config.json", "use_dora", "lora_magnitude_vector", "missing tensor"], **{"adapter_config.json": c(use_dora=True)})
    a("tensors-missing", ["adapter_model.safetensors"], **{"adapter_model.safetensors": None})
    lora = {}
    for p, rows in (("q_proj", HEADS * D), ("v_proj", KV * D)):
        lora["base_model.model.model.layers.0.self_attn.%s.lora_A.weight" % p] = ([2, C], [0.0] * (2 * C))
        lora["base_model.model.model.layers.0.self_attn.%s.lora_B.weight" % p] = ([rows, 2], [0.0] * (2 * rows))
    bad = dict(lora)
    bad["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = ([3, C], [0.0] * (3 * C))
    a("tensor-wrong-shape", ["adapter_model.safetensors", "q_proj.lora_A", "expected shape"], **{"adapter_model.safetensors": safetensors(bad)})
    bad = dict(lora)
    bad["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"] = ([2, C], [0.0] * (2 * C))
    a("tensor-unknown", ["adapter_model.safetensors", "k_proj.lora_A", "not a LoRA tensor"], **{"adapter_model.safetensors": safetensors(bad)})
    bad = dict(lora)
    del bad["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"]
    a("tensor-missing", ["adapter_model.safetensors", "v_proj.lora_B", "missing tensor"], **{"adapter_model.safetensors": safetensors(bad)})
    bad = dict(lora)
    bad["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"] = ([HEADS * D, 2], [math.nan] + [0.0] * (2 * HEADS * D - 1))
    a("tensor-nan", ["adapter_model.safetensors", "q_proj.lora_B", "nan"], **{"adapter_model.safetensors": safetensors(bad)})
    # DoRA: one magnitude per output feature of each adapted projection, finite.
    dora = dict(lora)
    for p, rows in (("q_proj", HEADS * D), ("v_proj", KV * D)):
        dora["base_model.model.model.layers.0.self_attn.%s.lora_magnitude_vector" % p] = ([rows], [1.0] * rows)
    bad = dict(dora)
    bad["base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector"] = ([KV * D + 1], [1.0] * (KV * D + 1))
    a("dora-magnitude-length", ["adapter_model.safetensors", "v_proj.lora_magnitude_vector", "expected shape [%d]" % (KV * D)],
      **{"adapter_config.json": c(use_dora=True), "adapter_model.safetensors": safetensors(bad)})
    bad = dict(dora)
    bad["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = ([HEADS * D], [math.inf] + [1.0] * (HEADS * D - 1))
    a("dora-magnitude-inf", ["adapter_model.safetensors", "q_proj.lora_magnitude_vector"],
      **{"adapter_config.json": c(use_dora=True), "adapter_model.safetensors": safetensors(bad)})
    a("dora-magnitude-without-use-dora", ["adapter_model.safetensors", "lora_magnitude_vector", "use_dora false"],
      **{"adapter_model.safetensors": safetensors(dora)})
    pcfg = json.load(open(os.path.join(ROOT, "base/prompt/adapter_config.json")))
    def pc(**over):
        d = dict(pcfg)
        d.update(over)
        return json.dumps(d)
    emb = lambda v: safetensors({"prompt_embeddings": ([v, C], [0.1] * (v * C))})
    a("prompt-longer-than-context", ["config.json", "max_position_embeddings", "virtual tokens"], base="base/prompt", cmd="generate",
      **{"adapter_config.json": pc(num_virtual_tokens=CTX + 6), "adapter_model.safetensors": emb(CTX + 6)})
    a("prompt-longer-than-context-eval", ["config.json", "max_position_embeddings", "virtual tokens"], base="base/prompt",
      **{"adapter_config.json": pc(num_virtual_tokens=CTX - 4), "adapter_model.safetensors": emb(CTX - 4)})
    a("prompt-token-dim", ["adapter_config.json", "token_dim", "hidden size %d" % C], base="base/prompt", **{"adapter_config.json": pc(token_dim=16)})
    a("prompt-zero-tokens", ["adapter_config.json", "num_virtual_tokens"], base="base/prompt", **{"adapter_config.json": pc(num_virtual_tokens=0)})
    a("prompt-float-tokens", ["adapter_config.json", "num_virtual_tokens", "2.5"], base="base/prompt", **{"adapter_config.json": pc(num_virtual_tokens=2.5)})
    a("prompt-wrong-shape", ["adapter_model.safetensors", "prompt_embeddings", "expected shape"], base="base/prompt",
      **{"adapter_model.safetensors": emb(3)})
    a("prompt-inf", ["adapter_model.safetensors", "prompt_embeddings"], base="base/prompt",
      **{"adapter_model.safetensors": safetensors({"prompt_embeddings": ([2, C], [math.inf] * (2 * C))})})
    case("adapter-valid-lora", EVAL + ["--data", "base/text.txt", "--adapter", "base/lora"], expect="ok")
    case("adapter-valid-prompt", ["generate", "--model", M, "--adapter", "base/prompt", "-p", "hi", "--max-tokens", "2", "--compute", "fp32"], expect="ok")

    probe_cfg = json.load(open(os.path.join(ROOT, "base/probe/probe_config.json")))
    def p(name, mentions, note="", **files):
        rel = dir_variant("probe-" + name, "base/probe", **files)
        case("probe-" + name, ["predict", "--model", M, "--adapter", rel, "--data", "base/labels.jsonl", "--threads", "1"],
             mentions=[rel] + list(mentions), note=note)
    def q(**over):
        d = dict(probe_cfg)
        for k, v in over.items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
        return json.dumps(d)
    head = lambda rows, cols=C: safetensors({"score.weight": ([rows, cols], [0.1] * (rows * cols)), "score.bias": ([rows], [0.0] * rows)})
    p("config-missing", ["probe_config.json"], **{"probe_config.json": None})
    p("layer-beyond-model", ["probe_config.json", "layer", "found 7"], **{"probe_config.json": q(layer=7)})
    p("layer-float", ["probe_config.json", "layer", "1.5"], **{"probe_config.json": q(layer=1.5)})
    p("no-labels", ["probe_config.json", "labels"], **{"probe_config.json": q(labels=None)})
    p("labels-not-strings", ["probe_config.json", "labels[0]", "a string"], **{"probe_config.json": q(labels=[1, 2])})
    p("labels-duplicate", ["probe_config.json", "labels", "distinct"], **{"probe_config.json": q(labels=["sun", "sun"])})
    p("max-length-negative", ["probe_config.json", "max_length"], **{"probe_config.json": q(max_length=-1)})
    p("pooling-max", ["probe_config.json", "pooling", "max"], **{"probe_config.json": q(pooling="max")})
    p("task-unknown", ["probe_config.json", "task"], **{"probe_config.json": q(task="ranking")})
    p("labels-more-than-rows", ["probe_head.safetensors", "score.weight", "3 labels"], **{"probe_config.json": q(labels=["a", "b", "c"])})
    p("head-wrong-hidden", ["probe_head.safetensors", "score.weight", "expected shape"], **{"probe_head.safetensors": head(2, 16)})
    p("head-missing", ["probe_head.safetensors"], **{"probe_head.safetensors": None})
    p("head-nan", ["probe_head.safetensors", "score.weight"],
      **{"probe_head.safetensors": safetensors({"score.weight": ([2, C], [math.nan] * (2 * C))})})
    case("probe-valid", ["predict", "--model", M, "--adapter", "base/probe", "--data", "base/labels.jsonl", "--threads", "1"], expect="ok")


# ---------------------------------------------------------------- hostile checkpoints and run directories
def checkpoint_cases():
    state = {"step": 1, "samplesSeen": 2, "optimizerStep": 1, "worldSize": 1, "lastLoss": 5.5}
    def ck(name, mentions, note="", **files):
        rel = dir_variant("checkpoint-" + name, "base/checkpoint", **files)
        case("checkpoint-" + name, RESUME + ["--resume", rel], mentions=[rel] + list(mentions), note=note)
    def st(**over):
        d = dict(state)
        d.update(over)
        return json.dumps(d)
    ck("negative-step", ["trainer_state.json", "step", "-3"], **{"trainer_state.json": st(step=-3)})
    ck("step-beyond-run", ["trainer_state.json", "step", "99"], **{"trainer_state.json": st(step=99)})
    ck("optimizer-step-ahead", ["trainer_state.json", "optimizerStep"], **{"trainer_state.json": st(optimizerStep=5)})
    ck("world-size-zero", ["trainer_state.json", "worldSize"], **{"trainer_state.json": st(worldSize=0)})
    ck("step-float", ["trainer_state.json", "malformed"], **{"trainer_state.json": st(step=1.5)})
    ck("state-malformed", ["trainer_state.json", "malformed"], **{"trainer_state.json": "{\"step\": "})
    ck("state-missing", ["trainer_state.json", "missing"], **{"trainer_state.json": None})
    ck("config-missing", ["config.yaml", "missing"], **{"config.yaml": None})
    ck("config-other-rank", ["config.yaml", "lora_rank"], **{"config.yaml": CHECKPOINT_YAML.replace("lora_rank: 2", "lora_rank: 4")})
    ck("moments-nan", ["optimizer.safetensors", "exp_avg"],
       **{"optimizer.safetensors": safetensors({"exp_avg": ([56], [math.nan] * 56), "exp_avg_sq": ([56], [1e-6] * 56)})})
    ck("moments-negative", ["optimizer.safetensors", "exp_avg_sq", "never negative"],
       **{"optimizer.safetensors": safetensors({"exp_avg": ([56], [0.0] * 56), "exp_avg_sq": ([56], [-1.0] * 56)})})
    ck("moments-short", ["optimizer.safetensors", "exp_avg", "expected 56 values"],
       **{"optimizer.safetensors": safetensors({"exp_avg": ([8], [0.0] * 8), "exp_avg_sq": ([8], [0.0] * 8)})})
    case("checkpoint-valid", RESUME + ["--resume", "base/checkpoint"], expect="ok")
    # Run directories: another run's checkpoints and final/ are refused unless resumed or overwritten.
    fin = ["train", "--model", M, "--data", "base/train.jsonl", "--output", "{copy:base/finished-run}"] + RESUME[7:]
    case("run-dir-refused", fin, mentions=["holds another run", "checkpoint-000002", "final/", "--resume auto", "--overwrite"])
    case("run-dir-overwrite", fin + ["--overwrite", "true"], expect="ok")
    case("run-dir-resume-auto", fin + ["--resume", "auto"], expect="ok")
    case("run-dir-is-a-file", train_with("--output", "base/train.jsonl"), mentions=["base/train.jsonl", "not a directory"])


# ---------------------------------------------------------------- hostile flags
def flag_cases():
    case("flag-eval-batch-zero", EVAL + ["--data", "base/text.txt", "--batch-size", "0"], mentions=["--batch-size", "found 0"])
    case("flag-eval-batch-negative", EVAL + ["--data", "base/text.txt", "--batch-size", "-2"], mentions=["--batch-size"])
    case("flag-eval-context-one", with_flags(EVAL, "--data", "base/text.txt", "--context", "1"), mentions=["--context"])
    case("flag-eval-context-beyond-model", with_flags(EVAL, "--data", "base/text.txt", "--context", "200"),
         mentions=["base/tiny-hf/config.json", "max_position_embeddings", "context is %d" % CTX])
    case("flag-eval-threads-zero", with_flags(EVAL, "--threads", "0", "--data", "base/text.txt"), mentions=["--threads"])
    gen = ["generate", "--model", M, "-p", "hi", "--compute", "fp32"]
    case("flag-generate-max-tokens-negative", gen + ["--max-tokens", "-1"], mentions=["--max-tokens"])
    case("flag-generate-top-p-two", gen + ["--top-p", "2"], mentions=["--top-p"])
    case("flag-generate-temperature-nan", gen + ["--temperature", "nan"], mentions=["--temperature"])
    case("flag-generate-top-k-negative", gen + ["--top-k", "-5"], mentions=["--top-k"])
    case("flag-train-learning-rate-nan", train_with("--learning-rate", "nan"), mentions=["--learning-rate", "finite"])
    case("flag-train-epochs-inf", train_with("--epochs", "inf"), mentions=["--epochs", "finite"])
    case("flag-train-weight-decay-negative", train_with("--weight-decay", "-0.1"), mentions=["--weight-decay"])
    case("flag-train-lora-alpha-zero", train_with("--lora-alpha", "0"), mentions=["--lora-alpha"])
    case("flag-train-seed-negative", train_with("--seed", "-5"), mentions=["--seed"])
    case("flag-train-threads-negative", train_with("--threads", "-1"), mentions=["--threads"])
    case("flag-train-batch-zero", train_with("--batch-size", "0"), mentions=["--batch-size"])
    case("flag-train-nan-policy", train_with("--nan-policy", "maybe"), mentions=["--nan-policy", "stop | skip"])
    case("flag-train-valid-split-all", train_with("--valid-split", "0.95"), mentions=["base/train.jsonl", "valid_split", "nothing to train on"])
    one = write("cases/one-example.jsonl", '{"text": "the sun"}\n')
    case("flag-train-valid-split-one-example", train_with("--valid-split", "0.1", data=one), mentions=[one, "valid_split", "nothing to train on"])
    case("flag-train-max-length-one", train_with("--max-length", "1"), mentions=["--max-length"])
    case("flag-train-probe-layer-beyond", ["train", "--method", "probe", "--model", M, "--data", "base/labels.jsonl", "--output", "{tmp}",
                                           "--probe-layer", "5", "--threads", "1"], mentions=["probe_layer", "5"])
    case("flag-train-probe-resume", ["train", "--method", "probe", "--model", M, "--data", "base/labels.jsonl", "--output", "{tmp}",
                                     "--resume", "auto", "--threads", "1"], mentions=["resume", "probe"])
    long = write("cases/long-examples.jsonl", json.dumps({"text": "the sun and the rain " * 10}) + "\n" + json.dumps({"text": "x"}) + "\n")
    case("flag-train-context-shorter-than-examples", train_with("--max-length", "512", data=long),
         mentions=["base/tiny-hf/config.json", "max_position_embeddings", "longest example"])
    case("flag-train-prompt-more-virtual-than-context", train_with("--method", "prompt", "--num-virtual-tokens", str(CTX)),
         mentions=["base/tiny-hf/config.json", "max_position_embeddings", "virtual tokens"])
    case("flag-train-model-missing", train_with("--model", "cases/nope"), mentions=["cases/nope", "not found"])
    case("flag-train-data-missing", train_with(data="cases/nope.jsonl"), mentions=["cases/nope.jsonl"])
    case("flag-bench-batch-zero", ["bench", "forward", "--model", M, "--batch", "0"], mentions=["--batch"])
    case("flag-train-valid", train_with(), expect="ok")
    case("flag-train-chat-valid", train_with(data="base/chat.jsonl"), expect="ok")
    case("flag-train-prompt-valid", train_with("--method", "prompt", "--num-virtual-tokens", "3"), expect="ok")


def main():
    if os.path.exists(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    make_base()
    gguf_cases()
    hf_cases()
    data_cases()
    yaml_cases()
    adapter_cases()
    checkpoint_cases()
    flag_cases()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    write("cases.json", '{"generator": "scripts/make_hostile_inputs.py", "cases": [\n'
          + ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in CASES) + "\n]}\n")
    total = 0
    for d, _, files in os.walk(ROOT):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    print("%d cases, %d bytes in %s" % (len(CASES), total, os.path.normpath(ROOT)))


if __name__ == "__main__":
    main()
