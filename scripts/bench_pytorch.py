"""PyTorch reference for `dtrain bench`: SmolLM2-135M's architecture (random weights — speed does not depend
on the values), fp32, 2 threads, batch 4 × 256: forward tokens/s and LoRA (PEFT, r=8, all seven targets)
training tokens/s, plus an SGEMM of the same shape as dtrain's, so both are measured under the same load.
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers peft
    /tmp/ref/bin/python scripts/bench_pytorch.py            # forward and LoRA training
    /tmp/ref/bin/python scripts/bench_pytorch.py --budget   # where the forward's time goes (see budget())
Options (all optional; wrap runs in `flock /tmp/cpu.lock` on a shared 2-core machine):
    --autocast bf16    forward (no_grad) and the LoRA step under torch.autocast("cpu", dtype=torch.bfloat16),
                       PyTorch's best CPU configuration (fp32 master weights, bf16 matrix products; needs a CPU
                       with AVX512-BF16 or AMX to be fast). `--autocast none` (default) = plain fp32.
    --base-dtype bf16  store the frozen base model in bf16 (model.to(torch.bfloat16) before get_peft_model; the
                       LoRA A/B parameters are cast back to fp32, so AdamW updates fp32 masters). With
                       --autocast bf16 this spares autocast re-converting every fp32 frozen weight to bf16 on each
                       forward (and keeping the copies for backward). `--base-dtype fp32` (default) = as before.
                       Without --autocast the step runs in plain bf16 (activations bf16, LoRA products in fp32).
    --check            also print each LoRA step's loss (warm-up + timed steps; use --iterations 2 for three
                       steps) and whether it decreased, e.g.
                           --autocast bf16 --base-dtype bf16 --batch 1 --length 32 --iterations 2 --check
    --model DIR        build the model from DIR/config.json instead of the built-in SmolLM2-135M config; weights
                       are loaded from DIR's safetensors when present (as fp32), else random (e.g. a directory
                       from scripts/make_llama1b.py). `--random` forces random weights.
    --batch B --length T   input shape (default 4 × 256).
Prints, in order (the fp32 lines are unchanged from earlier versions; bench_compare.sh greps them):
    cpu capability: AVX512                       (torch.backends.cpu.get_cpu_capability())
    sgemm 1024x1536x576: … GFLOP/s               (always fp32, dtrain's SGEMM shape)
    bf16 gemm 1024x1536x576: … GFLOP/s           (only with --autocast bf16)
    forward batch 4x256: … tokens/s (… s/batch, median of 5, best …)
    train LoRA batch 4x256: … tokens/s (… s/step, median of 5, best …)
With --autocast bf16 the last two read `forward bf16-autocast batch 4x256:` / `train LoRA bf16-autocast batch 4x256:`;
--base-dtype bf16 adds `bf16-base ` after the autocast word: `forward bf16-autocast bf16-base batch 4x256:` /
`train LoRA bf16-autocast bf16-base batch 4x256:` (and `forward bf16-base batch …` without autocast); the bf16 gemm
line is printed whenever either flag asks for bf16.
With --model a line `model: DIR (…M parameters, …)` follows the capability line (`…, bf16 base)` with bf16 base).
With --check, after the train line: `check: losses a b c … (decreasing|NOT decreasing); trainable [dtypes], frozen [dtypes]`.
"""
import argparse
import contextlib
import glob
import os
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--budget", action="store_true", help="where the forward's time goes (see budget())")
parser.add_argument("--autocast", choices=["none", "fp32", "bf16"], default="none",
                    help="bf16: forward and LoRA step under torch.autocast('cpu', bfloat16); none/fp32: plain fp32")
parser.add_argument("--base-dtype", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: frozen base weights stored in bf16 (LoRA parameters stay fp32)")
parser.add_argument("--check", action="store_true", help="print each LoRA step's loss and whether it decreased")
parser.add_argument("--model", metavar="DIR", help="HF model directory (config.json; safetensors weights if present)")
parser.add_argument("--random", action="store_true", help="with --model: random weights even if safetensors exist")
parser.add_argument("--batch", type=int, default=4)
parser.add_argument("--length", type=int, default=256)
parser.add_argument("--iterations", type=int, default=5, help="timed runs after one warm-up (median reported)")
args = parser.parse_args()

torch.set_num_threads(2)
torch.manual_seed(0)
print(f"cpu capability: {torch.backends.cpu.get_cpu_capability()}")

BF16 = args.autocast == "bf16"
BF16_BASE = args.base_dtype == "bf16"
MODE = ("bf16-autocast " if BF16 else "") + ("bf16-base " if BF16_BASE else "")


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16) if BF16 else contextlib.nullcontext()


if args.model:
    cfg = AutoConfig.from_pretrained(args.model)
    has_weights = bool(glob.glob(os.path.join(args.model, "*.safetensors")))
    if has_weights and not args.random:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        source = "weights from safetensors"
    else:
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        source = "random weights"
    model = model.float().eval()
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model} ({n / 1e6:.0f}M parameters, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
          f"{source}{', bf16 base' if BF16_BASE else ''})")
else:
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5, rope_theta=100000,
                      max_position_embeddings=8192, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float().eval()
if BF16_BASE:
    model = model.to(torch.bfloat16)
B, T = args.batch, args.length
TOKENS = B * T
SHAPE = f"{B}x{T}"
ids = torch.randint(0, cfg.vocab_size, (B, T))

a, b = torch.rand(1024, 576), torch.rand(1536, 576)
a @ b.T
t = time.time()
for _ in range(10):
    a @ b.T
print(f"sgemm 1024x1536x576: {2 * 1024 * 1536 * 576 / ((time.time() - t) / 10) / 1e9:.1f} GFLOP/s")
if BF16 or BF16_BASE:
    a16, b16 = a.bfloat16(), b.bfloat16()
    a16 @ b16.T
    t = time.time()
    for _ in range(10):
        a16 @ b16.T
    print(f"bf16 gemm 1024x1536x576: {2 * 1024 * 1536 * 576 / ((time.time() - t) / 10) / 1e9:.1f} GFLOP/s")

ITERATIONS = args.iterations


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
    """The forward, then the same matrix products alone (the 7 layer projections per layer with the model's own
    weights, and the LM head), alternated 7 times; medians. "rest" = attention, norms, RoPE, SwiGLU, embedding.
    Set against `dtrain bench forward --profile` run in the same minutes. Under --autocast bf16 both halves run
    inside the autocast context (so the products include casting the fp32 weights to bf16)."""
    linear = torch.nn.functional.linear
    dtype = torch.bfloat16 if BF16_BASE and not BF16 else torch.float32  # plain bf16: inputs of the weights' dtype
    x, h = torch.randn(TOKENS, cfg.hidden_size, dtype=dtype), torch.randn(TOKENS, cfg.intermediate_size, dtype=dtype)

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

    with torch.no_grad(), autocast():
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
    print(f"forward {MODE}{f:.3f} s ({TOKENS / f:.0f} tokens/s)  layer products {p:.3f}  lm head {l:.3f}  rest {f - p - l:.3f}")


if args.budget:
    budget()
    sys.exit(0)


def forward():
    with torch.no_grad(), autocast():
        model(ids)


s, best = timed(forward)
print(f"forward {MODE}batch {SHAPE}: {TOKENS / s:.1f} tokens/s ({s:.2f} s/batch, median of {ITERATIONS}, best {best:.2f})")

lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                            "gate_proj", "up_proj", "down_proj"]))
if BF16_BASE:  # PEFT may create the adapter in the base layer's dtype: fp32 masters for the trainable part
    for name, p in lora.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
lora.train()
opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-4)


def step():
    opt.zero_grad()
    with autocast():
        out = lora(input_ids=ids, labels=ids)
    out.loss.backward()
    opt.step()
    if args.check:
        losses.append(out.loss.item())


losses = []
s, best = timed(step)
print(f"train LoRA {MODE}batch {SHAPE}: {TOKENS / s:.1f} tokens/s ({s:.2f} s/step, median of {ITERATIONS}, best {best:.2f})")
if args.check:
    trainable = {p.dtype for p in lora.parameters() if p.requires_grad}
    frozen = {p.dtype for p in lora.parameters() if not p.requires_grad}
    decreasing = all(b < a for a, b in zip(losses, losses[1:]))
    print(f"check: losses {' '.join(f'{x:.5f}' for x in losses)} ({'decreasing' if decreasing else 'NOT decreasing'}); "
          f"trainable {sorted(str(d) for d in trainable)}, frozen {sorted(str(d) for d in frozen)}")
