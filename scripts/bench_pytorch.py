"""PyTorch reference for `dtrain bench`: SmolLM2-135M's architecture (random weights — speed does not depend
on the values), fp32, 2 threads, batch 4 × 256: forward tokens/s and LoRA (PEFT, r=8, all seven targets)
training tokens/s, plus an SGEMM of the same shape as dtrain's, so both are measured under the same load.
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers peft
    /tmp/ref/bin/python scripts/bench_pytorch.py            # forward and LoRA training
    /tmp/ref/bin/python scripts/bench_pytorch.py --budget   # where the forward's time goes (see budget())
"""
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

torch.set_num_threads(2)
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5, rope_theta=100000,
                  max_position_embeddings=8192, tie_word_embeddings=True)
model = LlamaForCausalLM(cfg).float().eval()
ids = torch.randint(0, cfg.vocab_size, (4, 256))

a, b = torch.rand(1024, 576), torch.rand(1536, 576)
a @ b.T
t = time.time()
for _ in range(10):
    a @ b.T
print(f"sgemm 1024x1536x576: {2 * 1024 * 1536 * 576 / ((time.time() - t) / 10) / 1e9:.1f} GFLOP/s")

ITERATIONS = 5


def timed(fn):
    """Median and best wall time of ITERATIONS runs after one warm-up (as `dtrain bench` reports)."""
    fn()
    times = []
    for _ in range(ITERATIONS):
        t = time.time()
        fn()
        times.append(time.time() - t)
    times.sort()
    return times[len(times) // 2], times[0]




def budget():
    """The forward, then the same matrix products alone (the 210 layer projections with the model's own
    weights, and the LM head), alternated 7 times; medians. "rest" = attention, norms, RoPE, SwiGLU, embedding.
    Set against `dtrain bench forward --profile` run in the same minutes."""
    linear = torch.nn.functional.linear
    x, h = torch.randn(1024, 576), torch.randn(1024, 1536)

    def products():
        t0 = time.perf_counter()
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            for w in (attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.o_proj.weight,
                      mlp.gate_proj.weight, mlp.up_proj.weight):
                linear(x, w)
            linear(h, mlp.down_proj.weight)
        t1 = time.perf_counter()
        linear(x, model.lm_head.weight)
        return t1 - t0, time.perf_counter() - t1

    with torch.no_grad():
        model(ids)
        products()
        forward, layers, head = [], [], []
        for _ in range(7):
            t = time.perf_counter()
            model(ids)
            forward.append(time.perf_counter() - t)
            a, b = products()
            layers.append(a)
            head.append(b)
    f, p, l = (sorted(v)[3] for v in (forward, layers, head))
    print(f"forward {f:.3f} s ({1024 / f:.0f} tokens/s)  layer products {p:.3f}  lm head {l:.3f}  rest {f - p - l:.3f}")


if "--budget" in sys.argv:
    budget()
    sys.exit(0)

with torch.no_grad():
    s, best = timed(lambda: model(ids))
print(f"forward batch 4x256: {1024 / s:.1f} tokens/s ({s:.2f} s/batch, median of {ITERATIONS}, best {best:.2f})")

lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                            "gate_proj", "up_proj", "down_proj"]))
lora.train()
opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)


def step():
    opt.zero_grad()
    out = lora(input_ids=ids, labels=ids)
    out.loss.backward()
    opt.step()


s, best = timed(step)
print(f"train LoRA batch 4x256: {1024 / s:.1f} tokens/s ({s:.2f} s/step, median of {ITERATIONS}, best {best:.2f})")
