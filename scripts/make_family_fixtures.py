"""Golden fixtures for the architecture families (Tests/DTModelTests/Fixtures/families/<name>/):
  - model/: a small random-weight checkpoint saved by transformers as bf16 sharded safetensors
  - expected.safetensors: transformers' fp32 logits (weights = the bf16 values) for ids.json's two sequences,
    the first longer than the sliding window, the second right-padded (attention_mask)
  - ids.json: the ids, mask and what was checked
  - model.gguf.bin: the same weights (BF16) written with the gguf package the way llama.cpp's converter names
    them (llama arch: Q/K rows permuted for adjacent-pair RoPE)
Run (in a throwaway venv outside the repo, see make_model_fixtures.py):
    HF_HUB_OFFLINE=1 /tmp/ref/bin/python scripts/make_family_fixtures.py
Made with torch 2.15.0, transformers 5.24.0, gguf 0.19.0, safetensors 0.8.0.
"""
import json
import os
import shutil

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.torch import save_file

OUT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "Tests", "DTModelTests", "Fixtures", "families"))
COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=64, initializer_range=0.2)
LENGTH = 24


def permute(w, heads):
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_names(layers, qk_norm, sandwich=False):
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    pairs = [("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"),
             ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
             ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"),
             # Phi-3's fused tensors, as convert_hf_to_gguf.py's Phi3MiniModel writes them (ffn_up holds gate then up)
             ("self_attn.qkv_proj", "attn_qkv"), ("mlp.gate_up_proj", "ffn_up")]
    if sandwich:   # Gemma: post_attention_layernorm norms the attention output
        pairs += [("post_attention_layernorm", "post_attention_norm"), ("pre_feedforward_layernorm", "ffn_norm"),
                  ("post_feedforward_layernorm", "post_ffw_norm")]
    else:
        pairs += [("post_attention_layernorm", "ffn_norm")]
    if qk_norm:
        pairs += [("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")]
    for l in range(layers):
        for hf, gg in pairs:
            names[f"model.layers.{l}.{hf}.weight"] = f"blk.{l}.{gg}.weight"
            names[f"model.layers.{l}.{hf}.bias"] = f"blk.{l}.{gg}.bias"
    return names


def write_gguf(path, arch, cfg, sd, permute_qk, sliding_window=None, qk_norm=False, sandwich=False, norm_shift=0.0,
               window_pattern=None, softcaps=None):
    rp = cfg.rope_parameters
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(cfg.num_hidden_layers); w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size); w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads); rp = cfg.rope_parameters
    w.add_rope_freq_base(float(rp["rope_theta"] if "rope_theta" in rp else rp["full_attention"]["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps); w.add_context_length(cfg.max_position_embeddings)
    w.add_vocab_size(cfg.vocab_size)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_key_length(head_dim); w.add_value_length(head_dim); w.add_rope_dimension_count(head_dim)
    if sliding_window is not None:
        w.add_sliding_window(sliding_window)
    if window_pattern is not None:   # per layer, True = sliding
        w.add_sliding_window_pattern(window_pattern)
    if softcaps is not None:   # Gemma 2: as convert_hf_to_gguf.py's Gemma2Model writes them
        w.add_attn_logit_softcapping(softcaps[0]); w.add_final_logit_softcapping(softcaps[1])
    if rp.get("rope_type") == "longrope":   # as convert_hf_to_gguf.py's Phi3MiniModel writes LongRoPE
        import math
        orig = rp["original_max_position_embeddings"]
        scale = cfg.max_position_embeddings / orig
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
        w.add_tensor("rope_factors_long.weight", np.array(rp["long_factor"], dtype=np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(rp["short_factor"], dtype=np.float32))
    names = gguf_names(cfg.num_hidden_layers, qk_norm, sandwich)
    for hf, t in sd.items():
        gg = names[hf]
        t = t.float().numpy()
        if hf.endswith("norm.weight"):   # llama.cpp's Gemma converter stores 1 + w
            t = t + norm_shift
        if permute_qk and (".attn_q." in gg):
            t = permute(t, cfg.num_attention_heads)
        if permute_qk and (".attn_k." in gg):
            t = permute(t, cfg.num_key_value_heads)
        if t.ndim == 2:   # bf16 values: stored exactly as BF16
            w.add_tensor(gg, gguf.quants.quantize(t, Q.BF16), raw_dtype=Q.BF16)
        else:
            w.add_tensor(gg, t.astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def family(name, model, gguf_arch, permute_qk, sliding_window=None, qk_norm=False, note="", sandwich=False, norm_shift=0.0,
           window_pattern=None, gguf_config=None, must_matter=()):
    """gguf_config: config overrides under which transformers computes what the GGUF means (llama.cpp's fixed
    semantics), saved as logits_gguf. must_matter: config keys whose removal (None) must change the logits, so the
    fixture tests them."""
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with torch.no_grad():   # norm weights away from HF's init of ones, so their use is tested
        for k, v in model.named_parameters():
            if k.endswith("norm.weight"):
                v.normal_(1.0 - norm_shift, 0.2)
    model = model.to(torch.bfloat16).eval()   # the checkpoint's values: bf16
    model.save_pretrained(os.path.join(d, "model"), safe_serialization=True, max_shard_size="100KB")
    gen = os.path.join(d, "model", "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    # fp32 compute on exactly those values, loaded back the way a user loads the checkpoint (a model cast to
    # bf16 and back would keep its RoPE inverse frequencies rounded to bf16).
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(os.path.join(d, "model"), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, model.config.vocab_size, (2, LENGTH), generator=g)
    mask = torch.tensor([[1] * LENGTH, [1] * (LENGTH - 7) + [0] * 7])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float().contiguous()
    if sliding_window is not None:   # the window must matter on this text, or the fixture would not test it
        full = type(model)(type(model.config)(**{**model.config.to_dict(), "sliding_window": 4096})).float().eval()
        full.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert (full(input_ids=ids, attention_mask=mask).logits - logits).abs().max() > 1e-2
    for key in must_matter:
        other = type(model)(type(model.config)(**{**model.config.to_dict(), key: None})).float().eval()
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert (other(input_ids=ids, attention_mask=mask).logits - logits).abs().max() > 1e-2, key
    tensors = {"logits": logits}
    if gguf_config is not None:
        other = type(model)(type(model.config)(**{**model.config.to_dict(), **gguf_config})).float().eval()
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            tensors["logits_gguf"] = other(input_ids=ids, attention_mask=mask).logits.float().contiguous()
    save_file(tensors, os.path.join(d, "expected.safetensors"))
    json.dump({"ids": ids.tolist(), "attention_mask": mask.tolist(), "sliding_window": sliding_window,
               "notes": note}, open(os.path.join(d, "ids.json"), "w"), indent=1)
    sd = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight" or not model.config.tie_word_embeddings}
    softcaps = getattr(model.config, "attn_logit_softcapping", None), getattr(model.config, "final_logit_softcapping", None)
    write_gguf(os.path.join(d, "model.gguf.bin"), gguf_arch, model.config, sd, permute_qk, sliding_window, qk_norm, sandwich,
               norm_shift, window_pattern, softcaps if gguf_arch == "gemma2" else None)
    for root, _, files in os.walk(d):
        for f in sorted(files):
            p = os.path.join(root, f)
            print(f"{os.path.getsize(p):>9}  {os.path.relpath(p, OUT)}")


def main(only):
    if only in (None, "gemma3"):
        gemma3()
    if only in (None, "gemma2"):
        gemma2()
    if only in (None, "phi3"):
        phi3()
    if only in (None, "phi3_longrope"):
        phi3_longrope()
    if only in ("gemma3", "gemma2", "phi3", "phi3_longrope"):
        return
    from transformers import MistralConfig, MistralForCausalLM
    torch.manual_seed(10)
    window = 5
    family("mistral_sliding",
           MistralForCausalLM(MistralConfig(**COMMON, tie_word_embeddings=False, sliding_window=window,
                                            attn_implementation="eager")),
           "llama", permute_qk=True, sliding_window=window,
           note=f"sliding_window {window} < {LENGTH} tokens: every layer attends to the last {window} keys")
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(11)
    family("qwen3",
           Qwen3ForCausalLM(Qwen3Config(**{**COMMON, "num_attention_heads": 2, "num_key_value_heads": 1}, head_dim=48,
                                        tie_word_embeddings=True, attn_implementation="eager")),
           "qwen3", permute_qk=False, qk_norm=True,
           note="per-head q/k RMSNorm before RoPE, head_dim 48 != hidden/heads, no q/k/v bias, tied embeddings")


def gemma3():
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM
    torch.manual_seed(12)
    window, types = 5, ["sliding_attention", "sliding_attention", "full_attention"]
    config = Gemma3TextConfig(**{**COMMON, "num_hidden_layers": 3, "intermediate_size": 64, "rms_norm_eps": 1e-6}, head_dim=16, query_pre_attn_scalar=24,
                              sliding_window=window, layer_types=types, tie_word_embeddings=True,
                              rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                                               "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
                              attn_implementation="eager")
    family("gemma3", Gemma3ForCausalLM(config), "gemma3", permute_qk=False, sliding_window=window, qk_norm=True,
           sandwich=True, norm_shift=1.0, window_pattern=[t == "sliding_attention" for t in types],
           gguf_config={"query_pre_attn_scalar": 16},
           note=f"(1 + w) RMSNorm, sandwich norms, embeddings x sqrt(64), GeGLU (gelu tanh), query_pre_attn_scalar 24, "
                f"QK-norm, layers {types} with window {window} on {LENGTH} tokens, local RoPE base 1e4 / global 1e6, tied; "
                "logits_gguf: llama.cpp's score scale 1/sqrt(head_dim)")


def phi3():
    from transformers import Phi3Config, Phi3ForCausalLM
    torch.manual_seed(14)
    window = 5
    config = Phi3Config(**COMMON, sliding_window=window, tie_word_embeddings=False, pad_token_id=None, bos_token_id=1,
                        eos_token_id=2, attn_implementation="eager")
    family("phi3", Phi3ForCausalLM(config), "phi3", permute_qk=False, sliding_window=window,
           note=f"fused qkv_proj (q, k, v rows) and gate_up_proj (gate, up rows), GGUF attn_qkv / ffn_up (2 x I rows), "
                f"no Q/K permutation (NeoX RoPE in llama.cpp), sliding window {window} on {LENGTH} tokens, untied")


def phi3_longrope():
    """LongRoPE as Phi-3.5-mini / Phi-3-128k configure it, scaled down: original context 16, max 64 (factor 4,
    attention factor sqrt(1 + ln 4 / ln 16)), short and long per-dimension factors. The 24-token text reaches beyond
    16 positions, so transformers uses the long factors for it; logits_short are the first 12 tokens' logits alone,
    where it uses the short ones."""
    from transformers import Phi3Config, Phi3ForCausalLM
    torch.manual_seed(15)
    g = torch.Generator().manual_seed(16)
    short = (1 + torch.rand(8, generator=g)).tolist()
    long = (1 + 8 * torch.rand(8, generator=g)).tolist()
    config = Phi3Config(**{**COMMON, "max_position_embeddings": 64}, original_max_position_embeddings=16,
                        rope_scaling={"type": "longrope", "short_factor": short, "long_factor": long},
                        tie_word_embeddings=False, pad_token_id=None, bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    family("phi3_longrope", Phi3ForCausalLM(config), "phi3", permute_qk=False,
           note="LongRoPE: original context 16 of 64, short/long factors per dimension, attention factor sqrt(1 + ln 4 / ln 16); "
                "the 24-token text uses the long factors, logits_short (first 12 tokens alone) the short ones")
    d = os.path.join(OUT, "phi3_longrope")
    from transformers import AutoModelForCausalLM
    from safetensors.torch import load_file
    model = AutoModelForCausalLM.from_pretrained(os.path.join(d, "model"), dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor(json.load(open(os.path.join(d, "ids.json")))["ids"][0][:12]).unsqueeze(0)
    with torch.no_grad():
        tensors = load_file(os.path.join(d, "expected.safetensors"))
        tensors["logits_short"] = model(input_ids=ids).logits.float().contiguous()
    save_file(tensors, os.path.join(d, "expected.safetensors"))
    # the two factor sets must give different logits on the short text, or the fixture would not test the choice
    assert (tensors["logits_short"][0] - tensors["logits"][0, :12]).abs().max() > 1e-2


def gemma2():
    from transformers import Gemma2Config, Gemma2ForCausalLM
    torch.manual_seed(13)
    window = 5
    config = Gemma2Config(**{**COMMON, "num_hidden_layers": 3, "intermediate_size": 64, "rms_norm_eps": 1e-6}, head_dim=16,
                          query_pre_attn_scalar=16, sliding_window=window, attn_logit_softcapping=3.0,
                          final_logit_softcapping=2.5, tie_word_embeddings=True, attn_implementation="eager")
    family("gemma2", Gemma2ForCausalLM(config), "gemma2", permute_qk=False, sliding_window=window, sandwich=True,
           norm_shift=1.0, must_matter=("attn_logit_softcapping", "final_logit_softcapping"),
           note=f"(1 + w) RMSNorm, sandwich norms, embeddings x sqrt(64), GeGLU, attention soft-cap 3.0 and final-logit "
                f"soft-cap 2.5 (small, so both change the logits), layers {config.layer_types} (the default alternation) "
                f"with window {window} on {LENGTH} tokens, one RoPE base, query_pre_attn_scalar = head_dim 16 (llama.cpp's "
                "scale for a non-27B GGUF), tied")


if __name__ == "__main__":
    import sys
    main(sys.argv[1] if len(sys.argv) > 1 else None)
