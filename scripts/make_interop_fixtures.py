#!/usr/bin/env python3
"""Generate interop fixtures: a tiny HF Llama + tokenizer, PEFT adapters made by PEFT,
dtrain adapters checked by PEFT, and a bitsandbytes NF4 reference.

Everything is written under Tests/DTTrainingTests/Fixtures/interop/ (resolved relative to
this file, so it can be run from anywhere):

  tiny_model/                    random tiny Llama (float32 safetensors, config.json) plus
                                 a byte-level BPE tokenizer.json (~400 tokens) trained here
                                 and a tokenizer_config.json with a ChatML chat template
  peft_lora/                     PEFT LoRA adapter (r=4, alpha=8, all 7 projections,
                                 init_lora_weights=False so B != 0)
  peft_lora_expected.json        {"ids": [[16 ids]], "logits": (16,V), "base_logits": (16,V)}
  peft_lora_rslora/              PEFT LoRA, use_rslora=True, r=8, alpha=16, q_proj,v_proj
  peft_lora_rslora_expected.json same form
  peft_prompt/                   PEFT prompt tuning, 5 virtual tokens, embeddings ~ N(0, 0.5^2)
  peft_prompt_expected.json      {"ids", "logits" (real positions only), "num_virtual_tokens"}
  dtrain_data.jsonl              24 chat examples used for the dtrain runs
  dtrain_lora/, dtrain_prompt/   final adapters written by `dtrain train` on tiny_model
  dtrain_roundtrip_expected.json mean next-token NLL of 4 sequences under PEFT with the
                                 dtrain adapters loaded (and under the base model)
  dtrain_roundtrip_load_report.json  what PEFT said when loading the dtrain adapters
  nf4_input.safetensors          "weight": float32 (96, 512)
  nf4_expected.safetensors       bitsandbytes quantize_4bit(nf4, double quant, blocksize 64)
                                 outputs: codes, absmax_codes, nested_absmax, nested_code,
                                 offset, dequantized, absmax_fp32
  nf4_expected.json              offset, quant_map, nested blocksize, packing order and the
                                 rounding observations checked by this script

All logits/NLLs are float32 model outputs written as the shortest decimal that round-trips
to the same float32 (NLL means are float64).

How to run (CPU only, no GPU needed; the dtrain part needs a release build of dtrain at
.build/release/dtrain, which is copied to /tmp/dtrain-fixture-bin first; pass
--skip-dtrain to leave the dtrain_* fixtures untouched):

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers peft safetensors tokenizers bitsandbytes && /tmp/ref/bin/python scripts/make_interop_fixtures.py

Versions used to generate the committed fixtures:
    torch 2.15.0, transformers 5.24.0, peft 0.21.2, safetensors 0.8.0, tokenizers 0.23.3,
    numpy 2.4.6, bitsandbytes 0.50.2 (CPU backend)
(the exact versions are also recorded in interop/versions.json).
"""

import argparse
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from safetensors.numpy import save_file as np_save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests", "DTTrainingTests", "Fixtures", "interop")
MODEL_DIR = os.path.join(OUT, "tiny_model")

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# ----------------------------------------------------------------------------- helpers

def f32(x):
    """A float32 value as the Python float whose repr is the shortest round-tripping decimal."""
    return float(str(np.float32(x)))


def f32_list(a):
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return f32(a)
    return [f32_list(x) for x in a] if a.ndim > 1 else [float(str(v)) for v in a]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def drop_readme(d):
    """Make a PEFT-saved adapter directory reproducible: drop the boilerplate model card (README.md,
    not part of the adapter format) and sort target_modules (PEFT stores a Python set, whose order
    depends on PYTHONHASHSEED)."""
    p = os.path.join(d, "README.md")
    if os.path.exists(p):
        os.remove(p)
    cp = os.path.join(d, "adapter_config.json")
    with open(cp) as f:
        cfg = json.load(f)
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cp, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- corpus

def make_corpus(n_lines=400, seed=0):
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the model", "my friend", "the teacher", "a small bird",
                "the river", "our team", "the old man", "a young girl", "the computer",
                "the train", "this story", "the sun", "a quiet town"]
    verbs = ["sees", "likes", "finds", "makes", "reads", "writes", "follows", "helps",
             "carries", "opens", "builds", "learns", "remembers", "watches", "answers"]
    objects = ["the door", "a book", "the answer", "some water", "the garden", "a letter",
               "the window", "an apple", "the road", "a question", "the music", "the map",
               "a new word", "the light", "the number"]
    tails = ["today", "in the morning", "at night", "with care", "again and again",
             "before dinner", "after the rain", "near the house", "very slowly", "for a while",
             "because it is fun", "when it is cold", "on the table", "in the park", ""]
    extra = ["Hello, how are you?", "I am fine, thank you.", "What is your name?",
             "Please tell me a story.", "The quick brown fox jumps over the lazy dog.",
             "One, two, three, four, five.", "Can you help me with this question?",
             "Yes, of course. Here is the answer.", "It was a bright cold day in April.",
             "Numbers like 12, 345 and 6789 are common."]
    lines = []
    for i in range(n_lines):
        if i % 8 == 0:
            lines.append(rng.choice(extra))
            continue
        s = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}".strip()
        s = s[0].upper() + s[1:] + rng.choice([".", ".", "!", "?"])
        lines.append(s)
    return lines


# ----------------------------------------------------------------------------- A: model + tokenizer

def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(make_corpus(), trainer=trainer)
    return tok


def make_model_and_tokenizer():
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(MODEL_DIR, exist_ok=True)
    tok = make_tokenizer()
    vocab = tok.get_vocab_size()
    tok.save(os.path.join(MODEL_DIR, "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    write_json_pretty(os.path.join(MODEL_DIR, "tokenizer_config.json"), {
        "chat_template": CHAT_TEMPLATE,
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
    })

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000,
        max_position_embeddings=256, tie_word_embeddings=False, initializer_range=0.2,
        bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(MODEL_DIR, safe_serialization=True)
    # generation_config.json is not needed by anyone here
    gc = os.path.join(MODEL_DIR, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    log(f"A: tiny_model vocab={vocab} specials={ids} params={sum(p.numel() for p in model.parameters())}")
    return vocab


def write_json_pretty(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def load_base():
    from transformers import LlamaForCausalLM
    m = LlamaForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32)
    return m.eval()


def load_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))


def random_ids(vocab, n=16, seed=1234):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, n), generator=g)


@torch.no_grad()
def logits_of(model, ids):
    return model(input_ids=ids).logits[0].float().numpy()


# ----------------------------------------------------------------------------- B: PEFT LoRA

def make_peft_lora(vocab, name, seed, **lora_kwargs):
    from peft import LoraConfig, get_peft_model

    base = load_base()
    ids = random_ids(vocab, seed=seed)
    base_logits = logits_of(base, ids)
    torch.manual_seed(seed)
    cfg = LoraConfig(lora_dropout=0.0, task_type="CAUSAL_LM", init_lora_weights=False, **lora_kwargs)
    model = get_peft_model(base, cfg).eval()
    logits = logits_of(model, ids)
    out_dir = os.path.join(OUT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    drop_readme(out_dir)
    write_json(os.path.join(OUT, f"{name}_expected.json"), {
        "ids": ids.tolist(),
        "logits": f32_list(logits),
        "base_logits": f32_list(base_logits),
    })
    log(f"B: {name}: max|logits-base|={np.abs(logits - base_logits).max():.4f}")


# ----------------------------------------------------------------------------- C: PEFT prompt tuning

def make_peft_prompt(vocab, seed=4321, nvt=5):
    from peft import PromptTuningConfig, get_peft_model

    base = load_base()
    ids = random_ids(vocab, seed=seed)
    torch.manual_seed(seed)
    cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=nvt, prompt_tuning_init="RANDOM")
    model = get_peft_model(base, cfg).eval()
    emb = model.prompt_encoder["default"].embedding
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(emb.weight.shape, generator=g) * 0.5)
    with torch.no_grad():
        full = model(input_ids=ids).logits[0].float().numpy()
    assert full.shape[0] == nvt + ids.shape[1], full.shape
    out_dir = os.path.join(OUT, "peft_prompt")
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    drop_readme(out_dir)
    write_json(os.path.join(OUT, "peft_prompt_expected.json"), {
        "ids": ids.tolist(),
        "logits": f32_list(full[nvt:]),
        "num_virtual_tokens": nvt,
    })
    log(f"C: peft_prompt: logits rows returned by PEFT={full.shape[0]} (kept last {ids.shape[1]})")


# ----------------------------------------------------------------------------- D: dtrain round trip

def make_dtrain_data():
    rng = random.Random(7)
    pairs = [
        ("What colour is the sky?", "The sky is blue."),
        ("Say hello.", "Hello!"),
        ("What is two plus two?", "Two plus two is four."),
        ("Name an animal.", "A cat is an animal."),
        ("Where does the river go?", "The river goes to the sea."),
        ("Tell me a short story.", "The dog finds a book and reads it."),
        ("What is your name?", "My name is Tiny."),
        ("Can you help me?", "Yes, of course. Here is the answer."),
        ("Count to three.", "One, two, three."),
        ("What does the cat like?", "The cat likes the garden."),
        ("Is it cold at night?", "Yes, it is cold at night."),
        ("What do you read?", "I read a letter in the morning."),
    ]
    lines = []
    for i in range(24):
        q, a = pairs[i % len(pairs)]
        if i >= len(pairs):
            q, a = q + " Please.", a + " " + rng.choice(["Thank you.", "Have a nice day.", "That is all."])
        lines.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    path = os.path.join(OUT, "dtrain_data.jsonl")
    with open(path, "w") as f:
        for obj in lines:
            f.write(json.dumps(obj) + "\n")
    return path


def run_dtrain(binary, data, run_dir, extra):
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [binary, "train", "--model", MODEL_DIR, "--data", data, "--output", run_dir,
           "--max-steps", "6", "--batch-size", "8", "--micro-batch-size", "4",
           "--threads", "1"] + extra
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    log("D: running " + " ".join(cmd))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    tail = (p.stdout + p.stderr).strip().splitlines()[-12:]
    for line in tail:
        log("   | " + line)
    if p.returncode != 0:
        raise RuntimeError(f"dtrain exited with {p.returncode}")
    return os.path.join(run_dir, "final")


def peft_load_checked(adapter_dir):
    """Load a PEFT adapter, capturing every warning/log line; also compare keys by hand."""
    from peft import PeftConfig, PeftModel
    from safetensors import safe_open

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(n) for n in ("peft", "transformers", "")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base = load_base()
            model = PeftModel.from_pretrained(base, adapter_dir).eval()
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    msgs = [f"{w.category.__name__}: {w.message}" for w in caught] + \
        [l for l in stream.getvalue().splitlines() if l.strip()]

    cfg = PeftConfig.from_pretrained(adapter_dir)
    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        file_keys = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    report = {"files": sorted(os.listdir(adapter_dir)), "peft_type": str(cfg.peft_type),
              "tensors": file_keys, "messages": msgs}
    if cfg.is_prompt_learning:
        loaded = model.prompt_encoder["default"].embedding.weight.detach()
        with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
            stored = f.get_tensor("prompt_embeddings")
        report["values_match_file"] = bool(torch.equal(loaded, stored.to(loaded.dtype)))
    else:
        from peft.utils import get_peft_model_state_dict
        expected = set(get_peft_model_state_dict(model).keys())
        report["missing_in_file"] = sorted(expected - set(file_keys))
        report["unexpected_in_file"] = sorted(set(file_keys) - expected)
        sd = get_peft_model_state_dict(model)
        with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
            report["values_match_file"] = all(
                torch.equal(sd[k], f.get_tensor(k).to(sd[k].dtype)) for k in expected & set(file_keys))
    # transformers' own deprecation noise (also printed for PEFT's own adapters) is not about the adapter
    msgs = [m for m in msgs if "is_gradient_checkpointing" not in m]
    report["messages"] = msgs
    weight_msgs = [m for m in msgs if any(w in m.lower() for w in (
        "missing adapter keys", "unexpected keys", "missing keys", "not initialized",
        "newly initialized", "size mismatch"))]
    config_msgs = [m for m in msgs if "keyword arguments" in m]
    report["weight_key_warnings"] = weight_msgs
    report["config_warnings"] = config_msgs
    report["weights_clean"] = not weight_msgs and not report.get("missing_in_file") \
        and not report.get("unexpected_in_file") and report.get("values_match_file", False)
    report["clean"] = report["weights_clean"] and not msgs
    return model, cfg, report


@torch.no_grad()
def mean_nll(model, sequences, nvt=0):
    total, count = 0.0, 0
    per_seq = []
    for seq in sequences:
        ids = torch.tensor([seq])
        logits = model(input_ids=ids).logits[0].float()
        assert logits.shape[0] == nvt + len(seq), (logits.shape, nvt, len(seq))
        pred = logits[nvt:nvt + len(seq) - 1].double()
        lp = torch.log_softmax(pred, dim=-1)
        nll = -lp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
        per_seq.append(float(nll.mean()))
        total += float(nll.sum())
        count += len(seq) - 1
    return total / count, per_seq


def make_dtrain_roundtrip(binary_src):
    binary = "/tmp/dtrain-fixture-bin"
    shutil.copy2(binary_src, binary)
    data = make_dtrain_data()

    results = {}
    for name, extra in (("dtrain_lora", ["--learning-rate", "0.01", "--lora-rank", "4", "--lora-alpha", "8"]),
                        ("dtrain_prompt", ["--method", "prompt", "--num-virtual-tokens", "4",
                                           "--learning-rate", "0.05"])):
        final = run_dtrain(binary, data, "/tmp/dtrain-fixture-run", extra)
        dst = os.path.join(OUT, name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(final, dst)
        log(f"D: {name}: {sorted(os.listdir(dst))}")

    tok = load_tokenizer()
    texts = [
        "The cat likes the garden today.",
        "Hello, how are you?",
        "<|im_start|>user\nSay hello.<|im_end|>\n",
        "A small bird reads a letter.",
    ]
    sequences = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    for s in sequences:
        assert 8 <= len(s) <= 20, (len(s), s)

    base = load_base()
    base_nll, base_per = mean_nll(base, sequences)
    out = {"sequences": sequences, "texts": texts}
    load_report = {}
    for name, key in (("dtrain_lora", "lora"), ("dtrain_prompt", "prompt")):
        try:
            model, cfg, rep = peft_load_checked(os.path.join(OUT, name))
            nvt = cfg.num_virtual_tokens if cfg.is_prompt_learning else 0
            m, per = mean_nll(model, sequences, nvt)
            out[f"{key}_mean_nll"] = m
            out[f"{key}_per_sequence_mean_nll"] = per
            log(f"D: {name}: PEFT load weights_clean={rep['weights_clean']} clean={rep['clean']} "
                f"messages={rep['messages']} mean_nll={m:.6f}")
        except Exception as e:  # report, do not fix dtrain here
            rep = {"error": f"{type(e).__name__}: {e}", "clean": False,
                   "files": sorted(os.listdir(os.path.join(OUT, name)))}
            log(f"D: {name}: PEFT FAILED to load: {rep['error']}")
        load_report[name] = rep
    out["base_mean_nll"] = base_nll
    out["base_per_sequence_mean_nll"] = base_per

    # informational cross-check: dtrain's own `eval` on the same texts (not used as expected values)
    jl = "/tmp/dtrain-fixture-roundtrip.jsonl"
    with open(jl, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    cross = {}
    for key, adapter in (("base", None), ("lora", "dtrain_lora"), ("prompt", "dtrain_prompt")):
        cmd = [binary, "eval", "--model", MODEL_DIR, "--data", jl, "--threads", "1", "--json"]
        if adapter:
            cmd += ["--adapter", os.path.join(OUT, adapter)]
        p = subprocess.run(cmd, env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"),
                           capture_output=True, text=True)
        try:
            r = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
            cross[key] = {"dtrain_eval_mean_nll": r["mean_nll"], "tokens": r["tokens"],
                          "peft_mean_nll": out[f"{key}_mean_nll"],
                          "abs_diff": abs(r["mean_nll"] - out[f"{key}_mean_nll"])}
        except Exception as e:
            cross[key] = {"error": f"{type(e).__name__}: {e}", "stderr": p.stderr[-2000:]}
        log(f"D: dtrain eval cross-check {key}: {cross[key]}")
    load_report["dtrain_eval_cross_check"] = cross
    write_json_pretty(os.path.join(OUT, "dtrain_roundtrip_expected.json"), out)
    write_json_pretty(os.path.join(OUT, "dtrain_roundtrip_load_report.json"), load_report)
    log(f"D: base_mean_nll={base_nll:.6f}")
    shutil.rmtree("/tmp/dtrain-fixture-run", ignore_errors=True)


# ----------------------------------------------------------------------------- E: NF4

def make_nf4():
    import bitsandbytes
    import bitsandbytes.functional as F

    g = torch.Generator().manual_seed(2024)
    W = (torch.randn(96, 512, generator=g) * 0.05).float().contiguous()
    np_save_file({"weight": W.numpy()}, os.path.join(OUT, "nf4_input.safetensors"))

    q, state = F.quantize_4bit(W, quant_type="nf4", compress_statistics=True, blocksize=64)
    deq = F.dequantize_4bit(q, state).float()
    s2 = state.state2
    absmax_fp32 = (F.dequantize_blockwise(state.absmax, s2) + state.offset).float()

    codes = q.contiguous().view(torch.uint8).flatten()
    absmax_codes = state.absmax.flatten()
    assert absmax_codes.dtype == torch.uint8, absmax_codes.dtype
    offset = torch.tensor([float(state.offset)], dtype=torch.float32)
    np_save_file({
        "codes": codes.numpy(),
        "absmax_codes": absmax_codes.numpy(),
        "nested_absmax": s2.absmax.float().flatten().numpy(),
        "nested_code": s2.code.float().flatten().numpy(),
        "offset": offset.numpy(),
        "dequantized": deq.reshape(96, 512).numpy(),
        "absmax_fp32": absmax_fp32.flatten().numpy(),
    }, os.path.join(OUT, "nf4_expected.safetensors"))

    # ---- independent checks
    obs = {}
    code = state.code.float()
    flat = W.flatten()
    blocks = flat.view(-1, 64)
    true_absmax = blocks.abs().max(dim=1).values                  # float32, per 64-block
    hi = (codes >> 4).long()
    lo = (codes & 0xF).long()
    unpack_hi_first = torch.stack([hi, lo], dim=1).flatten()
    unpack_lo_first = torch.stack([lo, hi], dim=1).flatten()

    def nearest(absmax_per_block):
        x = (blocks / absmax_per_block[:, None]).flatten()
        return (x[:, None] - code[None, :]).abs().argmin(dim=1), x

    near_true, x_true = nearest(true_absmax)
    near_deq, _ = nearest(absmax_fp32.flatten())
    mism_hi = int((unpack_hi_first != near_true).sum())
    mism_lo = int((unpack_lo_first != near_true).sum())
    obs["high_nibble_is_even_element"] = mism_hi < mism_lo
    unpacked = unpack_hi_first if mism_hi < mism_lo else unpack_lo_first
    obs["codes_vs_argmin_with_true_fp32_absmax_mismatches"] = min(mism_hi, mism_lo)
    obs["codes_vs_argmin_with_double_quantized_absmax_mismatches"] = int((unpacked != near_deq).sum())
    # where mismatching, how close to a midpoint between neighbouring codes was x?
    mids = ((code[1:] + code[:-1]) / 2)
    dist_mid = (x_true[:, None] - mids[None, :]).abs().min(dim=1).values
    bad = unpacked != near_true
    obs["max_distance_to_midpoint_at_mismatches"] = float(dist_mid[bad].max()) if bad.any() else None
    obs["n_values"] = int(flat.numel())
    # bitsandbytes' NF4 encoder (backends/default quantize_4bit): x = A * (1/absmax) (reciprocal, f32),
    # clamp to [-1, 1], torch.bucketize(x, midpoints of the sorted code, right=False): a value exactly on a
    # midpoint goes to the LOWER code index.
    mid32 = (code[:-1] + code[1:]) / 2
    xr = torch.clamp(blocks * (1.0 / true_absmax[:, None]), -1, 1).flatten()
    buck = torch.bucketize(xr, mid32, right=False)
    obs["codes_equal_bucketize_of_A_times_reciprocal_absmax"] = bool(torch.equal(buck, unpacked))
    obs["exact_midpoint_ties_in_input"] = int((dist_mid == 0).sum())

    # absmax / offset
    obs["offset"] = float(state.offset)
    obs["offset_equals_torch_float32_mean_of_true_absmax"] = bool(
        np.float32(true_absmax.mean().item()) == np.float32(state.offset))
    obs["offset_equals_float64_mean_of_true_absmax_rounded_to_f32"] = bool(
        np.float32(true_absmax.double().mean().item()) == np.float32(state.offset))
    obs["offset_minus_f32_mean"] = float(state.offset) - float(true_absmax.mean())
    obs["max_rel_err_absmax_fp32_vs_true"] = float(((absmax_fp32.flatten() - true_absmax).abs() / true_absmax).max())

    # reconstruct dequantize_blockwise(absmax) ourselves: code2[c] * nested_absmax[i // 256] + offset
    nb = s2.blocksize
    idx = torch.arange(absmax_codes.numel()) // nb
    recon_absmax = s2.code.float()[absmax_codes.long()] * s2.absmax.float()[idx] + offset
    obs["absmax_fp32_equals_code2_times_nested_absmax_plus_offset_in_f32"] = bool(
        torch.equal(recon_absmax, absmax_fp32.flatten()))
    obs["absmax_fp32_recon_max_abs_diff"] = float((recon_absmax - absmax_fp32.flatten()).abs().max())
    # nested absmax = max |absmax - offset| per 256 block?
    centred = (true_absmax - offset).view(-1, nb)
    obs["nested_absmax_equals_max_abs_of_absmax_minus_offset"] = bool(
        torch.equal(centred.abs().max(dim=1).values, s2.absmax.float().flatten()))
    # absmax codes = argmin |(absmax-offset)/nested_absmax - code2| ?
    y = (centred / s2.absmax.float().flatten()[:, None]).flatten()
    near2 = (y[:, None] - s2.code.float()[None, :]).abs().argmin(dim=1)
    obs["absmax_codes_vs_argmin_mismatches"] = int((near2 != absmax_codes.long()).sum())
    # the 8-bit nested quantizer on CPU is the native cquantize_blockwise_cpu_fp32 (approximate BinSearch
    # over the non-uniform dynamic map), so it is not always the exact nearest code
    d2 = (y[:, None] - s2.code.float()[None, :]).abs()
    obs["absmax_code_mismatch_details"] = [
        {"block": int(i), "scaled": float(y[i]), "bnb_code": int(absmax_codes[i]),
         "bnb_dist": float(d2[i, absmax_codes[i].long()]), "argmin_code": int(near2[i]),
         "argmin_dist": float(d2[i, near2[i]])}
        for i in (near2 != absmax_codes.long()).nonzero().flatten().tolist()]

    # dequantized = code[nibble] * absmax_fp32[block] in f32?
    recon = (code[unpacked].view(-1, 64) * absmax_fp32.flatten()[:, None]).flatten()
    obs["dequantized_equals_code_times_absmax_fp32_in_f32"] = bool(torch.equal(recon, deq.flatten()))
    obs["dequantized_recon_max_abs_diff"] = float((recon - deq.flatten()).abs().max())

    meta = {
        "bitsandbytes_version": bitsandbytes.__version__,
        "shape": [96, 512],
        "blocksize": 64,
        "nested_blocksize": int(nb),
        "quant_type": "nf4",
        "quant_map": [float(str(np.float32(v))) for v in state.code.float().tolist()],
        "offset": float(str(np.float32(state.offset))),
        "packed_dtype": str(q.dtype), "packed_shape": list(q.shape),
        "absmax_dtype": str(state.absmax.dtype),
        "nested_code_len": int(s2.code.numel()),
        "high_nibble_is_element_2i": obs["high_nibble_is_even_element"],
        "observations": obs,
    }
    write_json_pretty(os.path.join(OUT, "nf4_expected.json"), meta)
    log("E: nf4 " + json.dumps(obs, indent=1))


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-dtrain", action="store_true", help="leave the dtrain_* fixtures alone")
    ap.add_argument("--dtrain", default=os.path.join(REPO, ".build", "release", "dtrain"))
    args = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    import bitsandbytes, peft, safetensors, tokenizers, transformers
    write_json_pretty(os.path.join(OUT, "versions.json"), {
        "python": sys.version.split()[0], "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__,
        "safetensors": safetensors.__version__, "tokenizers": tokenizers.__version__,
        "numpy": np.__version__, "bitsandbytes": bitsandbytes.__version__,
    })

    vocab = make_model_and_tokenizer()
    make_peft_lora(vocab, "peft_lora", seed=101, r=4, lora_alpha=8,
                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    make_peft_lora(vocab, "peft_lora_rslora", seed=202, r=8, lora_alpha=16, use_rslora=True,
                   target_modules=["q_proj", "v_proj"])
    make_peft_prompt(vocab)
    if not args.skip_dtrain:
        make_dtrain_roundtrip(args.dtrain)
    make_nf4()

    total = 0
    log("\nsizes:")
    for root, _, files in sorted(os.walk(OUT)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            sz = os.path.getsize(p)
            total += sz
            log(f"{sz:>9}  {os.path.relpath(p, OUT)}")
    log(f"{total:>9}  total")


if __name__ == "__main__":
    main()
