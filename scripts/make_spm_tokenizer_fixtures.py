#!/usr/bin/env python3
"""Generate SentencePiece-style BPE tokenizer fixtures (the Llama-2 / Mistral / Gemma / Phi-3 kind):
byte_fallback BPE over "▁"-marked text, <0xNN> byte tokens, golden ids from Hugging Face `tokenizers`.

A BPE model is trained here with byte_fallback=True (Metaspace split pre-tokenizer while training, so merges
stay inside ▁-words) on a small varied corpus, with two whitespace-run merges ("▁ ▁", "▁▁ ▁▁") put first.
The vocabulary is renumbered as SentencePiece orders it: <unk> <s> </s>, the chat control tokens, the 256 byte
tokens, the alphabet, then one token per merge in merge order. Written under
Tests/DTTokenizerTests/Fixtures/spm/ (resolved relative to this file):

  llama2/tokenizer.json         normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer
                                (Llama-2's own tokenizer.json layout), decoder Replace/ByteFallback/Fuse/Strip,
                                TemplateProcessing "<s> $A"
  llama2/tokenizer_config.json  bos <s>, eos </s>, unk <unk>, add_bos_token true
  metaspace/tokenizer.json      the same vocabulary with a Metaspace pre-tokenizer (prepend_scheme "first",
                                split true) instead of the normalizer, and merges as [left, right] arrays
  llama2.gguf.bin               the llama2 tokenizer as llama.cpp's convert_hf_to_gguf.py writes a Llama-2
                                vocabulary (tokenizer.ggml.model "llama", pre "default", tokens, scores,
                                token_type, bos/eos/unk ids, add_bos_token), no tensors. Token types follow
                                gguf-py's LlamaHfVocab (<0xNN> → BYTE 6, special → CONTROL 3, the rest
                                NORMAL 1) except <unk> → UNKNOWN 2 as SentencePiece models have it. Scores are
                                −id, SentencePiece's convention: with ids in merge order that is −(merge rank)
                                (LlamaHfVocab itself writes a −1000 placeholder for every token, under which
                                llama.cpp's highest-score-first merge degenerates to leftmost-first).
  cases.json                    for each text: HF ids of both tokenizers without and with special tokens,
                                HF decode of the llama2 ids (with and without special tokens); plus
                                "metaspace_variants": the metaspace tokenizer's ids under every prepend_scheme
                                × split (and ignore_merges), each with the pre_tokenizer / model edits applied.

Run (no network; fixture generation is light):

    /tmp/ref/bin/python scripts/make_spm_tokenizer_fixtures.py \
        [--llama-cpp SRC LIB]   # also tokenize with llama.cpp (SRC: its source tree, LIB: the directory of libllama.so)

With --llama-cpp, scripts/llamacpp_tokenize.c is compiled against llama.cpp and run on llama2.gguf.bin over the fixture
texts and 3000 seeded random texts; its ids must equal HF's ids of the llama2 tokenizer.json (with and without
special tokens), and cases.json records the check under "llama_cpp", with llama.cpp's ids for the fixture texts
under flat −1000 scores (what LlamaHfVocab writes; only the leftmost-first tie-break then orders merges: 8 of
the 30 texts come out differently from HF). The committed fixtures were checked so (llama.cpp from
llama-cpp-python 0.3.36's vendor tree): 3030 texts, no difference.

Versions used for the committed fixtures: tokenizers 0.23.3, gguf-py 0.19.0; recorded in cases.json.
"""

import argparse
import json
import os
import random
import re
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gguf
import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from importlib.metadata import version

GGUF_VERSION = version("gguf")
OUT = Path(__file__).resolve().parent.parent / "Tests" / "DTTokenizerTests" / "Fixtures" / "spm"
MARK = "\u2581"
SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<start_of_turn>", "<end_of_turn>"]
VOCAB_SIZE = 800

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, how are you today?",
    "Machine learning models learn patterns from data and make predictions.",
    "A tokenizer splits text into tokens; the model reads the token ids.",
    "In 1969, 3 astronauts flew 384400 km to the Moon and back again.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 40))",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(i)",
    "Le renard brun saute par-dessus le chien paresseux. Ça coûte 12,50 €.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München!",
    "El veloz zorro marrón salta sobre el perro perezoso, ¿verdad?",
    "Xin chào, tôi tên là Minh. Hôm nay trời đẹp quá!",
    "Training a language model on a CPU is slow but it works with small models.",
    "Low-rank adapters train two small matrices instead of the whole weight.",
    "The cat sat on the mat. The dog sat on the log. The bird sat on the wire.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 3.14159 -42 +7",
    "Email me at someone@example.com or visit https://example.org/path?q=1&x=2.",
    "She said, \"It's fine,\" and he replied: 'Isn't it?' (Yes.) [Maybe] {No}",
    "Once upon a time there was a little girl who lived in a village near the forest.",
    "Whenever she went out, the little girl wore a red riding cloak.",
    "机器学习 人工智能 学习",
    "Spaces   and\ttabs\nand new lines\n\nmatter here.",
    "Question: what is the capital of France? Answer: Paris is the capital of France.",
    "Please summarize the following paragraph in one sentence.",
    "The weather today is sunny with a high of 25 degrees and a light breeze.",
]

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple   internal    spaces",
    "line one\nline two\n\nline four",
    "\n starts with a newline",
    "tabs\there\t\tand there",
    "digits 0123456789 and 3.14159 and 1,000,000",
    "Grüße aus München, Straße 7. Ça coûte 12,50 € — déjà payé?",
    "Xin chào, tôi tên là Minh. Hôm nay trời đẹp quá!",
    "机器学习是人工智能的一个分支。",
    "日本語のテキストも少し",
    "emoji 🌍🚀 and 👩‍💻 too",
    "bytes outside the vocabulary: \u0000\u0007\u001b ÿ ǅ Ω ∑ ∞ ☃",
    "mixed ▁ literal marks ▁▁ here",
    "code: def f(x):\n    return x ** 2  # square",
    "<s>[INST] What is 2+2? [/INST] 4</s>",
    "<s>[INST]Hello[/INST]Hi there</s><s>[INST] again [/INST]",
    "<start_of_turn>user\nWrite a haiku<end_of_turn>\n<start_of_turn>model\nLeaves fall softly<end_of_turn>",
    "almost special: <s >, [INST, </s, <start_of_turn",
    "a",
    " ",
    "   ",
    "\n",
    "x\r\ny",
    "The cat sat on the mat. The dog sat on the log.",
    "URLs like https://example.org/path?q=1&x=2 and someone@example.com",
]


def train() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Trains a byte_fallback BPE; returns the renumbered vocabulary and the merges (with the whitespace-run
    merges first)."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARK, prepend_scheme="always", split=True)
    # The trainer breaks ties between equally frequent characters at random when it limits the alphabet; naming
    # the alphabet (the 90 most frequent characters, ties by code point) and limiting it to exactly that keeps
    # every run identical. The rarer characters are left to byte fallback.
    counts: dict[str, int] = {}
    for line in CORPUS:
        for c in line.replace(" ", MARK):
            counts[c] = counts.get(c, 0) + 1
    alphabet = sorted(counts, key=lambda c: (-counts[c], c))[:90]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - 256 - 2, special_tokens=SPECIALS, initial_alphabet=alphabet,
                                  limit_alphabet=len(alphabet), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    merges = [(MARK, MARK), (MARK * 2, MARK * 2)] + merges
    alphabet = sorted(t for t in model["vocab"] if t not in SPECIALS and len(t) == 1)
    vocab: dict[str, int] = {}
    for t in SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + alphabet:
        vocab.setdefault(t, len(vocab))
    kept = []
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append((a, b))
    return vocab, kept


def build(vocab, merges, variant: str) -> Tokenizer:
    model = models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True)
    tok = Tokenizer(model)
    if variant == "llama2":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend(MARK), normalizers.Replace(" ", MARK)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARK, prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace(MARK, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([tokenizers.AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    return tok


def write_json(path: Path, obj):
    """Indented JSON with every list of numbers or short strings on one line (keeps the fixtures small)."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    flat = re.compile(r'\[\s*((?:-?\d+|"(?:[^"\\\n]|\\.){0,40}")(?:,\s*(?:-?\d+|"(?:[^"\\\n]|\\.){0,40}"))*)\s*\]')
    text = flat.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def write_gguf(path: Path, vocab: dict[str, int], flat_scores: bool = False):
    tokens = sorted(vocab, key=vocab.get)
    byte = re.compile(r"<0x[0-9A-Fa-f]{2}>")
    types = []
    for t in tokens:
        if t == "<unk>": types.append(gguf.TokenType.UNKNOWN)
        elif t in SPECIALS: types.append(gguf.TokenType.CONTROL)
        elif byte.fullmatch(t): types.append(gguf.TokenType.BYTE)
        else: types.append(gguf.TokenType.NORMAL)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([t.encode("utf-8") for t in tokens])
    w.add_token_scores([-1000.0 if flat_scores else -float(i) for i in range(len(tokens))])
    w.add_token_types(types)
    w.add_bos_token_id(vocab["<s>"])
    w.add_eos_token_id(vocab["</s>"])
    w.add_unk_token_id(vocab["<unk>"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_check(src: str, lib: str, hf: Tokenizer, vocab: dict[str, int]) -> dict:
    """llama.cpp's ids on llama2.gguf.bin against HF's on the llama2 tokenizer.json (raises on any difference), and
    llama.cpp's ids for the texts under LlamaHfVocab's flat −1000 scores, where only its tie-break (leftmost
    pair first) orders the merges."""
    rng = random.Random(5)
    pieces = ["the", " ", "  ", "    ", "a", "e", "in", "ing", "s", "t", "th", "he", "re", "on", "\n", "\t", ".", ",", "1",
              "00", "é", "ü", "ß", "中", "学", "🌍", "j", "R", "#", "<", MARK, "<s>", "[INST]", "x", "q", "ck", "Hello"]
    texts = TEXTS + ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 80))) for _ in range(3000)]
    assert not any("\x1e" in t for t in texts)
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "llamacpp_tokenize")
        subprocess.run(["cc", "-O1", "-o", exe, str(Path(__file__).with_name("llamacpp_tokenize.c")),
                        "-I", f"{src}/include", "-I", f"{src}/ggml/include", "-L", lib, "-lllama",
                        f"-Wl,-rpath,{lib}"], check=True)
        for add_special in [False, True]:
            run = subprocess.run([exe, str(OUT / "llama2.gguf.bin"), str(int(add_special))], input="\x1e".join(texts).encode(),
                                 capture_output=True, check=True)
            lines = run.stdout.decode().split("\n")[:len(texts)]
            for t, line in zip(texts, lines):
                ids = [int(x) for x in line.split()]
                expected = hf.encode(t, add_special_tokens=add_special).ids
                if ids != expected:
                    raise SystemExit(f"llama.cpp differs from HF on {t!r} (add_special={add_special}): {ids} vs {expected}")
        flat = Path(tmp) / "flat.gguf"
        write_gguf(flat, vocab, flat_scores=True)
        run = subprocess.run([exe, str(flat), "0"], input="\x1e".join(TEXTS).encode(), capture_output=True, check=True)
        flat_ids = [[int(x) for x in line.split()] for line in run.stdout.decode().split("\n")[:len(TEXTS)]]
    return {"texts": len(texts), "random_seed": 5, "differences": 0, "flat_score_ids": flat_ids}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llama-cpp", nargs=2, metavar=("SRC", "LIB"), help="also check the GGUF with llama.cpp")
    args = parser.parse_args()
    (OUT / "llama2").mkdir(parents=True, exist_ok=True)
    (OUT / "metaspace").mkdir(parents=True, exist_ok=True)
    vocab, merges = train()
    llama2, metaspace = build(vocab, merges, "llama2"), build(vocab, merges, "metaspace")
    llama2.save(str(OUT / "llama2" / "tokenizer.json"))
    # tokenizers writes merges as [left, right] arrays; the llama2 file gets Llama-2's "left right" strings.
    j = json.loads((OUT / "llama2" / "tokenizer.json").read_text(encoding="utf-8"))
    j["model"]["merges"] = [f"{a} {b}" for a, b in j["model"]["merges"]]
    write_json(OUT / "llama2" / "tokenizer.json", j)
    write_json(OUT / "metaspace" / "tokenizer.json", json.loads(metaspace.to_str()))
    write_json(OUT / "llama2" / "tokenizer_config.json", {
        "tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True})
    write_gguf(OUT / "llama2.gguf.bin", vocab)

    unknown = sorted({c for t in TEXTS for c in t if c not in vocab and c != " "})
    assert unknown, "the texts must exercise byte fallback"
    cases = []
    for t in TEXTS:
        ids = llama2.encode(t, add_special_tokens=False).ids
        cases.append({
            "text": t, "ids": ids,
            "ids_with_special": llama2.encode(t, add_special_tokens=True).ids,
            "metaspace_ids": metaspace.encode(t, add_special_tokens=False).ids,
            "decoded": llama2.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": llama2.decode(ids, skip_special_tokens=True),
        })
    variants = []
    base = json.loads(metaspace.to_str())
    for scheme in ["first", "always", "never"]:
        for split in [True, False]:
            for ignore_merges in [False, True] if not split else [False]:
                j = json.loads(json.dumps(base))
                j["pre_tokenizer"] = {"type": "Metaspace", "replacement": MARK, "prepend_scheme": scheme, "split": split}
                j["model"]["ignore_merges"] = ignore_merges
                tok = Tokenizer.from_str(json.dumps(j))
                variants.append({"pre_tokenizer": j["pre_tokenizer"], "ignore_merges": ignore_merges,
                                 "ids": [tok.encode(t, add_special_tokens=False).ids for t in TEXTS]})
    checked = llama_cpp_check(*args.llama_cpp, llama2, vocab) if args.llama_cpp else None
    write_json(OUT / "cases.json", {
        "versions": {"tokenizers": tokenizers.__version__, "gguf-py": GGUF_VERSION},
        "llama_cpp": checked,
        "vocab_size": len(vocab), "bos_token_id": vocab["<s>"], "eos_token_id": vocab["</s>"],
        "chars_outside_vocabulary": "".join(unknown),
        "cases": cases, "metaspace_variants": variants})
    agree = checked and {k: v for k, v in checked.items() if k != "flat_score_ids"}
    print(f"vocab {len(vocab)}, merges {len(merges)}, {len(cases)} cases, {len(variants)} variants, llama.cpp {agree}; "
          f"characters outside the vocabulary: {''.join(unknown)!r}")


if __name__ == "__main__":
    main()
