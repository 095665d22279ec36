"""Writes a random-weight, Llama-shaped (~1.07B parameters) Hugging Face model directory for benchmarks, with
SmolLM2's tokenizer taken from the default model's GGUF:
    /tmp/ref/bin/python scripts/make_llama1b.py /tmp/llama1b        # never inside the repo: ~2.2 GB
    flock /tmp/cpu.lock /tmp/ref/bin/python scripts/make_llama1b.py /tmp/llama1b   # on a shared 2-core machine
Options: --gguf FILE (default ~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf), --tokenizer-only (write
the tokenizer files and config.json, no weights), --dtrain BINARY (also check the ids against `dtrain tokenize`).
Needs torch, transformers, gguf, tokenizers, safetensors (the venv of scripts/bench_pytorch.py).

Model: llama, hidden 2048, intermediate 8192, 16 layers, 32 attention heads / 8 KV heads (head dim 64), vocab
49152, rope_theta 100000, rms_norm_eps 1e-5, tied embeddings, 2048 positions; torch.manual_seed(0), normal init
with std 0.02 (transformers' initializer_range), norms 1; stored as bf16 in safetensors shards of ≤ 500 MB with
model.safetensors.index.json. Takes about a minute on 2 cores and ~7 GB of memory.

Tokenizer: tokenizer.ggml.tokens / merges / token_type / bos / eos / padding ids / chat_template of the GGUF,
rebuilt as a byte-level BPE tokenizer.json (pre-tokenizer: individual digits then ByteLevel(add_prefix_space
False, use_regex True) for tokenizer.ggml.pre "smollm", as SmolLM2's own tokenizer.json; ByteLevel alone for
"gpt2"), CONTROL tokens (type 3) as special AddedTokens, plus tokenizer_config.json (chat_template, bos/eos/pad/
unk). Checked on sample strings against (a) a small pure-Python BPE over the GGUF's vocab and merges in this
file, (b) the written directory loaded by transformers' AutoTokenizer, (c) `dtrain tokenize` when --dtrain is
given; and for decode round trips. transformers' own GGUF tokenizer conversion is compared for information only:
it ignores tokenizer.ggml.pre (no digit split), so it differs where a non-ASCII number follows a space. Prints a summary ending in `tokenizer check: N strings, all ids equal` (or exits 1).
"""
import argparse
import json
import os
import sys
import time

import regex
from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

DEFAULT_GGUF = os.path.expanduser("~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf")

SAMPLES = [
    "Hello world",
    "Hello world 123, it's 3.14159 — isn't it?",
    "What is 12 × 7?\nANSWER: 84\nWHY: 12 × 7 = 84.",
    "  leading spaces,\ttabs\t and trailing   ",
    "<|im_start|>user\nWhat is the capital of Peru?<|im_end|>\n<|im_start|>assistant\nANSWER: Lima<|im_end|>\n",
    "Ünïcödé: naïve café, 日本語のテキスト, emoji 🙂👍, Ⅻ ½ ٣",
    "don't we'll they've I'm you'd SHE'S",
    "def f(x):\n    return x**2  # square\n\n\n",
]


def gguf_tokenizer_fields(path):
    r = GGUFReader(path)

    def get(key, default=None):
        f = r.fields.get(key)
        return f.contents() if f is not None else default

    model = get("tokenizer.ggml.model")
    if model != "gpt2":
        sys.exit(f"{path}: tokenizer.ggml.model is {model!r}; only byte-level BPE ('gpt2') is supported")
    return dict(tokens=get("tokenizer.ggml.tokens"), types=get("tokenizer.ggml.token_type"),
                merges=get("tokenizer.ggml.merges"), pre=get("tokenizer.ggml.pre", "default"),
                bos=get("tokenizer.ggml.bos_token_id"), eos=get("tokenizer.ggml.eos_token_id"),
                pad=get("tokenizer.ggml.padding_token_id"), unk=get("tokenizer.ggml.unknown_token_id"),
                add_bos=bool(get("tokenizer.ggml.add_bos_token", False)), template=get("tokenizer.chat_template"))


def build_tokenizer(g):
    vocab = {t: i for i, t in enumerate(g["tokens"])}
    if len(vocab) != len(g["tokens"]):
        sys.exit("GGUF vocabulary has duplicate token strings")
    merges = [tuple(m.split(" ", 1)) for m in g["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if g["pre"] in ("smollm", "starcoder", "refact"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif g["pre"] in ("default", "gpt2", "gpt-2"):
        tok.pre_tokenizer = byte_level
    else:
        sys.exit(f"tokenizer.ggml.pre {g['pre']!r}: only gpt2 and smollm pre-tokenizers are handled here")
    tok.decoder = decoders.ByteLevel()
    # CONTROL (3) → special added tokens; USER_DEFINED (4) → added (matched before pre-tokenization), not special.
    added = [AddedToken(g["tokens"][i], special=(t == 3), normalized=False, single_word=False, lstrip=False, rstrip=False)
             for i, t in enumerate(g["types"]) if t in (3, 4)]
    tok.add_special_tokens([a for a in added if a.special])
    tok.add_tokens([a for a in added if not a.special])
    for a in added:
        if tok.token_to_id(a.content) != vocab[a.content]:
            sys.exit(f"added token {a.content!r} got id {tok.token_to_id(a.content)}, GGUF id {vocab[a.content]}")
    return tok


# --- an independent, minimal reference: what the GGUF vocab and merges imply (llama.cpp's BPE) -------------
GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceBPE:
    def __init__(self, g):
        self.vocab = {t: i for i, t in enumerate(g["tokens"])}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(g["merges"])}
        self.byte_map = bytes_to_unicode()
        self.digits = g["pre"] in ("smollm", "starcoder", "refact")
        self.special = sorted((g["tokens"][i] for i, t in enumerate(g["types"]) if t in (3, 4)), key=len, reverse=True)

    def pieces(self, text):
        if not self.digits:
            return GPT2_PATTERN.findall(text)
        out = []
        for part in regex.split(r"(\p{N})", text):
            if part:
                out += [part] if regex.fullmatch(r"\p{N}", part) else GPT2_PATTERN.findall(part)
        return out

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = min(((self.ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))))
            if best[0] == 1 << 60:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        ids = []
        pattern = "(" + "|".join(regex.escape(s) for s in self.special) + ")"
        for chunk in regex.split(pattern, text) if self.special else [text]:
            if not chunk:
                continue
            if chunk in self.vocab and chunk in self.special:
                ids.append(self.vocab[chunk])
                continue
            for piece in self.pieces(chunk):
                ids += self.bpe("".join(self.byte_map[b] for b in piece.encode("utf-8")))
        return ids


def check_tokenizer(out_dir, g, tok, gguf_path, dtrain):
    """Ids of tokenizer.json on SAMPLES against the checks that must agree (exit 1 otherwise), plus transformers'
    GGUF conversion for information: it ignores tokenizer.ggml.pre (plain ByteLevel, no digit split), so it
    differs from SmolLM2's real tokenizer where a non-ASCII number follows a space (e.g. " ½")."""
    must = {"reference BPE": ReferenceBPE(g).encode}
    info = {}
    try:
        from transformers import AutoTokenizer
        written = AutoTokenizer.from_pretrained(out_dir)
        must["transformers (written dir)"] = lambda s: written(s, add_special_tokens=False)["input_ids"]
        converted = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
        info["transformers' own GGUF conversion"] = lambda s: converted(s, add_special_tokens=False)["input_ids"]
    except Exception as e:
        written = None
        print(f"  (transformers tokenizers unavailable: {type(e).__name__}: {e})")
    if dtrain:
        import subprocess

        def run_dtrain(s):
            res = subprocess.run([dtrain, "tokenize", "--model", gguf_path, "--ids-only", s], capture_output=True, text=True)
            return [int(x) for x in res.stdout.split()] if res.returncode == 0 else f"error: {res.stderr.strip()}"
        must["dtrain tokenize"] = run_dtrain
    failures, info_diffs = 0, {name: 0 for name in info}
    for s in SAMPLES:
        ids = tok.encode(s, add_special_tokens=False).ids
        bad = {name: v for name, f in must.items() if (v := f(s)) != ids}
        decoded = tok.decode(ids, skip_special_tokens=False)
        if bad or decoded != s:
            failures += 1
            print(f"  MISMATCH {s!r}: tokenizer.json {ids}; " + "; ".join(f"{n} {v}" for n, v in bad.items())
                  + ("" if decoded == s else f"; decode gives {decoded!r}"))
        for name, f in info.items():
            info_diffs[name] += f(s) != ids
    hello = tok.encode("Hello world", add_special_tokens=False)
    print(f"  'Hello world' -> {hello.ids} {hello.tokens} (GGUF ids of those strings: "
          f"{[g['tokens'].index(t) for t in hello.tokens]})")
    if written is not None:
        chat = written.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
        print(f"  chat template (transformers, written dir): {chat!r}")
    for name, n in info_diffs.items():
        print(f"  (for information: {name} differs on {n} of {len(SAMPLES)} strings"
              + (": it ignores tokenizer.ggml.pre, no digit split)" if n else ")"))
    if failures:
        print(f"tokenizer check: {failures} of {len(SAMPLES)} strings differ (against {', '.join(must)})")
        sys.exit(1)
    print(f"tokenizer check: {len(SAMPLES)} strings, all ids equal ({', '.join(must)}; decode round trips exact)")


def write_tokenizer(out_dir, gguf_path):
    g = gguf_tokenizer_fields(gguf_path)
    tok = build_tokenizer(g)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    name = lambda i: g["tokens"][i] if i is not None else None  # noqa: E731
    added_decoder = {str(i): {"content": g["tokens"][i], "lstrip": False, "normalized": False, "rstrip": False,
                              "single_word": False, "special": t == 3}
                     for i, t in enumerate(g["types"]) if t in (3, 4)}
    config = {"add_bos_token": g["add_bos"], "add_eos_token": False, "added_tokens_decoder": added_decoder,
              "bos_token": name(g["bos"]), "eos_token": name(g["eos"]), "pad_token": name(g["pad"]),
              "unk_token": name(g["unk"]), "chat_template": g["template"], "clean_up_tokenization_spaces": False,
              "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    n_special = sum(1 for t in g["types"] if t == 3)
    print(f"tokenizer: {len(g['tokens'])} tokens, {len(g['merges'])} merges, pre-tokenizer {g['pre']}, "
          f"{n_special} special; bos {g['bos']} {name(g['bos'])}, eos {g['eos']} {name(g['eos'])}, "
          f"pad {g['pad']} {name(g['pad'])}, add bos {g['add_bos']}, chat template {'yes' if g['template'] else 'none'}")
    return g, tok


def output_directory(out_dir, gguf_path):
    """The absolute output directory, created; exits if it lies inside the repository or the GGUF is missing."""
    out = os.path.abspath(out_dir)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    if out == repo or out.startswith(repo + os.sep):
        sys.exit(f"{out}: refusing to write a multi-GB model inside the repository")
    if not os.path.exists(gguf_path):
        sys.exit(f"{gguf_path}: not found (launch/setup.sh fetches the default model)")
    os.makedirs(out, exist_ok=True)
    return out


def llama_config(g):
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=49152, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                       rope_theta=100000.0, max_position_embeddings=2048, tie_word_embeddings=True,
                       initializer_range=0.02, hidden_act="silu", attention_bias=False, mlp_bias=False,
                       bos_token_id=g["bos"], eos_token_id=g["eos"], pad_token_id=g["pad"])


def main():
    p = argparse.ArgumentParser(description="Random-weight 1B Llama-shaped HF directory with SmolLM2's tokenizer")
    p.add_argument("out_dir")
    p.add_argument("--gguf", default=DEFAULT_GGUF)
    p.add_argument("--tokenizer-only", action="store_true", help="tokenizer files and config.json only, no weights")
    p.add_argument("--dtrain", help="path of a built dtrain binary: also compare ids with `dtrain tokenize`")
    a = p.parse_args()
    out = output_directory(a.out_dir, a.gguf)
    started = time.time()

    g, tok = write_tokenizer(out, a.gguf)
    cfg = llama_config(g)
    if a.tokenizer_only:
        cfg.dtype = "bfloat16"
        cfg.save_pretrained(out)
    else:
        import torch
        from transformers import LlamaForCausalLM
        torch.set_num_threads(2)
        torch.manual_seed(0)
        t = time.time()
        model = LlamaForCausalLM(cfg)  # post_init: normal(0, initializer_range) for linears/embedding, norms 1
        model = model.to(torch.bfloat16)
        n = sum(p.numel() for p in model.parameters())
        w = model.model.layers[0].mlp.up_proj.weight.float()
        print(f"model: {n / 1e9:.3f}B parameters, init {time.time() - t:.1f} s "
              f"(layer 0 up_proj std {w.std().item():.4f}, mean {w.mean().item():+.5f})")
        t = time.time()
        model.save_pretrained(out, max_shard_size="500MB")
        del model
        print(f"saved in {time.time() - t:.1f} s")
    check_tokenizer(out, g, tok, a.gguf, a.dtrain)
    files = sorted(os.listdir(out))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in files)
    print(f"wrote {out}: {len(files)} files, {size / 1e9:.2f} GB ({', '.join(files)}) in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
