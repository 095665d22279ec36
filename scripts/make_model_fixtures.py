"""Golden fixtures for the foundation tests, made with the reference implementations:
  (GGUF fixtures are named *.gguf.bin: they are kilobyte test files, not models, and *.gguf stays out of git.)
  - Tests/DTFormatsTests/Fixtures: quant_blocks.gguf.bin (every supported ggml type, written by gguf-py, plus
    metadata of every GGUF value type), quant_expected.safetensors (gguf.quants.dequantize), mixed.safetensors
    (written by the safetensors package) and mixed_expected.safetensors.
  - Tests/DTTokenizerTests/Fixtures: smollm2_tokenizer_cases.json (HF tokenizers' ids for varied texts, tokenizer
    loaded by transformers from the default GGUF) and smollm2_tokenizer.json (that tokenizer's tokenizer.json).
  - Tests/DTModelTests/Fixtures: smollm2_golden.{json,safetensors} (transformers' logits and NLL of the default
    model, loaded from its GGUF, on three texts of >= 200 tokens) and tiny/ (random llama, llama3-rope, qwen2,
    mistral models with transformers' logits; a sharded copy; GGUF copies with llama.cpp's Q/K permutation in F32
    and Q8_0).
Run (in a throwaway venv outside the repo):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers gguf tokenizers safetensors numpy
    HF_HUB_OFFLINE=1 /tmp/ref/bin/python scripts/make_model_fixtures.py --model ~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf
Made with torch 2.15.0, transformers 5.24.0, gguf 0.19.0, tokenizers 0.23.3, safetensors 0.8.0.
"""
import argparse
import json
import os
import shutil
import tempfile

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as VT
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

ap = argparse.ArgumentParser()
ap.add_argument("--model", default=os.path.expanduser("~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests"))
args = ap.parse_args()
OUT = os.path.abspath(args.out)
rng = np.random.default_rng(0)


def formats():
    d = os.path.join(OUT, "DTFormatsTests", "Fixtures")
    os.makedirs(d, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(d, "quant_blocks.gguf.bin"), "test")
    for key, value, vt in [("test.u8", 200, VT.UINT8), ("test.i8", -100, VT.INT8), ("test.u16", 60000, VT.UINT16),
                           ("test.i16", -30000, VT.INT16), ("test.u32", 4000000000, VT.UINT32),
                           ("test.i32", -2000000000, VT.INT32), ("test.f32", 1.5, VT.FLOAT32), ("test.bool", True, VT.BOOL),
                           ("test.string", "héllo wörld", VT.STRING), ("test.u64", 2**40, VT.UINT64),
                           ("test.i64", -(2**40), VT.INT64), ("test.f64", 0.1, VT.FLOAT64)]:
        w.add_key_value(key, value, vt)
    w.add_key_value("test.array_i32", [1, -2, 3], VT.ARRAY, sub_type=VT.INT32)
    w.add_key_value("test.array_str", ["a", "bc", ""], VT.ARRAY, sub_type=VT.STRING)
    expected = {}
    data = (rng.standard_normal((3, 512)) * 0.5).astype(np.float32)
    for name, qt in [("f32", Q.F32), ("f16", Q.F16), ("bf16", Q.BF16), ("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1)]:
        raw = gguf.quants.quantize(data, qt) if qt != Q.F32 else data
        w.add_tensor(name, raw, raw_dtype=qt)
        expected[name] = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(3, 512)
    for name, qt, layout in [("q4_k", Q.Q4_K, [(0, 2), (2, 4)]), ("q5_k", Q.Q5_K, [(0, 2), (2, 4)]), ("q6_k", Q.Q6_K, [(208, 210)])]:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
        blocks = rng.integers(0, 256, size=(3 * 512 // block_size, type_size), dtype=np.uint8)
        for lo, hi in layout:   # sane f16 scales (d, dmin) so every value is finite
            blocks[:, lo:hi] = np.frombuffer(rng.uniform(0.01, 0.1, blocks.shape[0]).astype(np.float16).tobytes(), dtype=np.uint8).reshape(-1, 2)
        raw = blocks.reshape(3, -1)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
        expected[name] = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(3, 512)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    save_file(expected, os.path.join(d, "quant_expected.safetensors"))
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float16)
    c = torch.randn(3, 7, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    save_torch({"a_f32": torch.from_numpy(a), "b_f16": torch.from_numpy(b), "c_bf16": c}, os.path.join(d, "mixed.safetensors"),
               metadata={"format": "pt"})
    save_file({"a_f32": a, "b_f16": b.astype(np.float32), "c_bf16": c.float().numpy()}, os.path.join(d, "mixed_expected.safetensors"))


TEXTS = [
    "The quick brown fox jumps over the lazy dog.", "Xin chào, tôi tên là Minh. Hôm nay trời đẹp quá!",
    "Ça coûte 12,50 € — déjà payé? Grüße aus München, Straße 7.", "机器学习是人工智能的一个分支。",
    "東京は日本の首都です。ひらがなとカタカナ。", "Привет, как дела? Всё хорошо.",
    "def f(x):\n\treturn x  *  2\n\n\n    # four spaces\n", "for (int i = 0; i < n; ++i) {\n    sum += a[i];\n}",
    "Emoji: 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇻🇳 ✨", "Numbers 1234567 and 3.14159 on 2026-11-28 at 10:45.",
    "I'm sure you'll see he's fine; they'd know we've been here.", "I'M SURE YOU'LL SEE HE'S FINE; THEY'D KNOW.",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "   leading and trailing spaces   ",
    "\n\n\nthree newlines", "Windows\r\nline\r\nendings", "     ", "", "https://example.com/path?q=1&r=two#frag",
    "!!!???... ---- ____ ****", "∑ x² + √y ≤ ∞, α β γ → ∀ε>0", "tab\tseparated\tvalues\t1\t2",
    "MixedCase camelCase snake_case SCREAMING_CASE 42x", "a  b   c    d     e", "won't can't shouldn't O'Neil",
    "<|endoftext|> then text <|im_end|>",
]


def tokenizer(model_dir, model_file):
    from transformers import AutoTokenizer
    from tokenizers import pre_tokenizers
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    assert tok.is_fast
    # transformers' GGUF converter gives every gpt2-type vocabulary the plain ByteLevel pre-tokenizer; the GGUF
    # says tokenizer.ggml.pre = "smollm", i.e. SmolLM2's own tokenizer.json pre-tokenizer: digits split one by
    # one, then ByteLevel. Restore it so the reference is the tokenizer SmolLM2 ships.
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    d = os.path.join(OUT, "DTTokenizerTests", "Fixtures")
    os.makedirs(d, exist_ok=True)
    cases = []
    for i, t in enumerate(TEXTS):
        case = {"text": t, "ids": tok(t, add_special_tokens=False)["input_ids"]}
        if i in (0, 12):
            case["ids_with_special"] = tok(t, add_special_tokens=True)["input_ids"]
        cases.append(case)
    json.dump({"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "cases": cases},
              open(os.path.join(d, "smollm2_tokenizer_cases.json"), "w"), ensure_ascii=False, indent=1)
    tmp = tempfile.mkdtemp()
    tok.save_pretrained(tmp)
    shutil.copy(os.path.join(tmp, "tokenizer.json"), os.path.join(d, "smollm2_tokenizer.json"))
    return tok


PROSE = ("Bread is one of the oldest prepared foods. Evidence from the Neolithic period shows that people ground "
         "cereal grains into flour, mixed it with water, and baked flat cakes on hot stones. The discovery of leavening, "
         "probably by accident when wild yeasts settled into dough left in the sun, turned these dense cakes into the "
         "airy loaves we know today. In ancient Egypt, bakers worked in large workshops and bread was so important that "
         "workers building the pyramids were partly paid in loaves. The Romans organised bakers into guilds, built mills "
         "driven by animals and water, and sold many kinds of bread, from coarse dark loaves for the poor to fine white "
         "bread for the wealthy. During the Middle Ages, laws fixed the weight and price of a loaf, and bakers who cheated "
         "their customers could be fined or paraded through the streets. The industrial revolution brought steel roller "
         "mills and commercial yeast, and in the twentieth century sliced bread wrapped in paper appeared on shop shelves. "
         "Today, bakers around the world still argue about flour, water, salt and time, the four ingredients that matter most.")
CODE = '''import heapq
from collections import defaultdict


def dijkstra(graph, source):
    """Shortest distances from source in a graph given as {node: [(neighbour, weight), ...]}."""
    distance = defaultdict(lambda: float("inf"))
    distance[source] = 0
    queue = [(0, source)]
    visited = set()
    while queue:
        d, node = heapq.heappop(queue)
        if node in visited:
            continue
        visited.add(node)
        for neighbour, weight in graph.get(node, []):
            candidate = d + weight
            if candidate < distance[neighbour]:
                distance[neighbour] = candidate
                heapq.heappush(queue, (candidate, neighbour))
    return dict(distance)


if __name__ == "__main__":
    graph = {"a": [("b", 7), ("c", 9), ("f", 14)], "b": [("c", 10), ("d", 15)], "c": [("d", 11), ("f", 2)],
             "d": [("e", 6)], "e": [], "f": [("e", 9)]}
    for node, d in sorted(dijkstra(graph, "a").items()):
        print(f"{node}: {d}")
'''


def golden(model_dir, model_file, tok):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file, torch_dtype=torch.float32).eval()
    chat = tok.apply_chat_template([
        {"role": "user", "content": "Can you explain in a few sentences why the sky looks blue during the day and red at sunset?"},
        {"role": "assistant", "content": "Sunlight contains all colours. When it passes through the atmosphere, air molecules scatter "
         "short blue wavelengths much more strongly than long red ones, an effect called Rayleigh scattering, so blue light reaches "
         "our eyes from every direction of the sky. At sunset the light travels through far more air before it reaches us; most of "
         "the blue has been scattered away along the path, and the remaining light is dominated by orange and red. Dust and "
         "smoke can make the colours even stronger. That is also why the sky directly overhead stays blue longer than the horizon. "
         "The same physics explains why distant mountains look bluish, why the Moon's sky is black (there is no air to scatter "
         "light), and why photographers call the hour after sunrise and the hour before sunset the golden hour: the low sun "
         "shines through a thick layer of atmosphere that filters out most blue light and leaves a warm, soft glow."}],
        tokenize=False)
    texts = [("prose", PROSE), ("code", CODE), ("chat", chat)]
    tensors, records = {}, []
    for i, (name, text) in enumerate(texts):
        ids = tok(text, add_special_tokens=False)["input_ids"][:260]
        assert len(ids) >= 200, (name, len(ids))
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        lp = torch.log_softmax(logits.double(), dim=-1)
        nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        T = len(ids)
        positions = [0, T // 3, 2 * T // 3, T - 1]
        tensors[f"logits_full_{i}"] = logits[positions].numpy()
        tensors[f"logits_head_{i}"] = logits[:, :256].contiguous().numpy()
        tensors[f"nll_{i}"] = nll.float().numpy()
        records.append({"name": name, "text": text, "ids": ids, "mean_nll": float(nll.mean()), "positions": positions})
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}], tokenize=False,
                                     add_generation_prompt=True)
    pids = tok(prompt, add_special_tokens=False)["input_ids"]
    out = model.generate(torch.tensor([pids]), max_new_tokens=12, do_sample=False)[0][len(pids):].tolist()
    d = os.path.join(OUT, "DTModelTests", "Fixtures")
    os.makedirs(d, exist_ok=True)
    save_file(tensors, os.path.join(d, "smollm2_golden.safetensors"))
    json.dump({"texts": records, "vocab_size": model.config.vocab_size,
               "model_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
               "greedy_france": {"prompt_ids": pids, "generated_ids": out, "text": tok.decode(out)},
               "notes": "transformers loads llama GGUF with Q/K rows un-permuted to HF order (reverse_permute in "
                        "modeling_gguf_pytorch_utils) and uses rotate-half RoPE."},
              open(os.path.join(d, "smollm2_golden.json"), "w"), ensure_ascii=False, indent=1)


def permute(w, heads):
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM
    d = os.path.join(OUT, "DTModelTests", "Fixtures", "tiny")
    os.makedirs(d, exist_ok=True)
    common = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=128, initializer_range=0.2)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 300, (2, 12), generator=g)
    mask = torch.tensor([[1] * 12, [1] * 8 + [0] * 4])

    def save(name, model):
        path = os.path.join(d, name)
        model.save_pretrained(path, safe_serialization=True)
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(path, extra)):
                os.remove(os.path.join(path, extra))
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        json.dump({"ids": ids.tolist(), "attention_mask": mask.tolist(), "logits": logits.tolist()},
                  open(os.path.join(path, "expected.json"), "w"))
        return logits

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**common, rope_theta=10000.0, tie_word_embeddings=False)).float().eval()
    save("llama", llama)
    llama.save_pretrained(os.path.join(d, "llama_sharded"), safe_serialization=True, max_shard_size="60KB")
    gen = os.path.join(d, "llama_sharded", "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    torch.manual_seed(1)
    save("llama3rope", LlamaForCausalLM(LlamaConfig(**common, rope_theta=500000.0, tie_word_embeddings=True,
                                                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16})).float().eval())
    torch.manual_seed(2)
    save("qwen2", Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True)).float().eval())
    torch.manual_seed(4)
    save("mistral", MistralForCausalLM(MistralConfig(**common, tie_word_embeddings=False, sliding_window=None)).float().eval())

    sd = {k: v.detach().float().numpy() for k, v in llama.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    for l in range(2):
        for hf, gg in [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"), ("self_attn.q_proj", "attn_q"),
                       ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                       ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")]:
            names[f"model.layers.{l}.{hf}.weight"] = f"blk.{l}.{gg}.weight"
    for quant, fname in [(None, "llama.gguf.bin"), (Q.Q8_0, "llama_q8.gguf.bin")]:
        w = gguf.GGUFWriter(os.path.join(d, fname), "llama")
        w.add_block_count(2); w.add_embedding_length(64); w.add_feed_forward_length(128); w.add_head_count(4)
        w.add_head_count_kv(2); w.add_rope_freq_base(10000.0); w.add_layer_norm_rms_eps(1e-5); w.add_context_length(128)
        w.add_vocab_size(300); w.add_rope_dimension_count(16)
        deq = {}
        for hf, gg in names.items():
            t = sd[hf]
            if gg.endswith("attn_q.weight"):
                t = permute(t, 4)
            if gg.endswith("attn_k.weight"):
                t = permute(t, 2)
            if quant is not None and t.ndim == 2:
                raw = gguf.quants.quantize(t, quant)
                w.add_tensor(gg, raw, raw_dtype=quant)
                back = gguf.quants.dequantize(raw, quant).reshape(t.shape)
            else:
                w.add_tensor(gg, t)
                back = t
            # Un-permute what the GGUF holds to get the HF weights the reference runs with.
            if gg.endswith("attn_q.weight"):
                back = back.reshape(4, back.shape[0] // 4 // 2, 2, -1).swapaxes(1, 2).reshape(back.shape)
            if gg.endswith("attn_k.weight"):
                back = back.reshape(2, back.shape[0] // 2 // 2, 2, -1).swapaxes(1, 2).reshape(back.shape)
            deq[hf] = back
        w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
        if quant is not None:
            assert np.array_equal(deq["model.layers.0.self_attn.q_proj.weight"].shape, sd["model.layers.0.self_attn.q_proj.weight"].shape)
            q8 = LlamaForCausalLM(llama.config).float().eval()
            q8.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in deq.items()})
            with torch.no_grad():
                logits = q8(input_ids=ids, attention_mask=mask).logits
            json.dump({"ids": ids.tolist(), "attention_mask": mask.tolist(), "logits": logits.tolist()},
                      open(os.path.join(d, "llama_q8_expected.json"), "w"))


if os.environ.get("ONLY_TOKENIZER") != "1":
    formats()
model_dir, model_file = os.path.dirname(os.path.abspath(args.model)), os.path.basename(args.model)
tok = tokenizer(model_dir, model_file)
if os.environ.get("ONLY_TOKENIZER") != "1":
    golden(model_dir, model_file, tok)
    tiny()
for root, _, files in os.walk(OUT):
    for f in files:
        p = os.path.join(root, f)
        if "Fixtures" in p and os.path.getmtime(p) > 0 and ("smollm2" in f or "tiny" in p or "quant" in f or "mixed" in f):
            print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, OUT)}")
