"""PyTorch + PEFT reference of dtrain's main job (launch/main-job.sh's fine-tune: launch/configs/instruct-lora.yaml),
so the whole fine-tune can be compared in wall time with `mpirun -np 2 dtrain train --config …`.
    /tmp/ref/bin/python scripts/pytorch_main_job.py                       # the full run: 50 steps, bf16 autocast
    flock /tmp/cpu.lock /tmp/ref/bin/python scripts/pytorch_main_job.py --max-steps 2    # smoke test
Options: --model PATH (a .gguf file, or an HF directory with config.json + safetensors + tokenizer.json; default
the default model ~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf, which transformers dequantizes to fp32
as `dtrain --precision fp32` does), --config YAML (default launch/configs/instruct-lora.yaml), --autocast bf16|none
(default bf16: forward under torch.autocast("cpu", bfloat16), fp32 master weights), --base-dtype fp32|bf16 (default
fp32; bf16 stores the frozen base in bf16 — model.to(torch.bfloat16) before get_peft_model, the LoRA parameters
kept in fp32 for AdamW — with --autocast bf16 PyTorch's fastest CPU configuration in our microbenchmarks),
--max-steps N (0 = from epochs; like dtrain's max_steps it also sets the cosine schedule's length), --threads
(default 2), --ranks (default 2).
Needs the venv of scripts/bench_pytorch.py (torch, transformers, peft, gguf, tokenizers, pyyaml).

What is the same as dtrain (Sources/DTTraining/{Dataset,Trainer,Optimizer}.swift, DTTokenizer/ChatTemplate.swift):
  - data: each {"messages"} line rendered with ChatML as dtrain's renderer does (SmolLM2's default system turn
    inserted when there is none), each segment tokenized on its own, no BOS; targets = assistant replies and
    their <|im_end|> only (train_on_prompt false), other labels -100; truncated to max_length.
    Tokenizer: SmolLM2's, rebuilt from the GGUF by scripts/make_llama1b.py (transformers' own GGUF tokenizer
    skips the digit split), or DIR/tokenizer.json. The rendered text is checked against the model's Jinja
    chat template (transformers' apply_chat_template) on the first example.
  - order: dtrain's seeded SplitMix64 permutation per epoch (same seed → the same examples in each step), each
    step's 16 examples split as `--ranks` ranks would take them (every 2nd), micro-batches of 8 right-padded.
  - loss: sum of token NLL over all the step's target tokens / their count (the global token mean dtrain
    all-reduces), clipped to global norm 1, torch AdamW (0.9, 0.999, 1e-8, weight decay from the config),
    HF cosine schedule with linear warmup (step 0 has lr 0, as dtrain), PEFT LoRA r 8, alpha 16, dropout 0,
    the seven projections.
  - validation: mean token NLL over the target tokens of valid.jsonl, before training (adapter off), every
    eval_every steps and at the end.
  Not the same: LoRA's random A init (PEFT's kaiming-uniform from torch's RNG), bf16 autocast arithmetic.
  bf16 autocast also rounds each adapted projection's output, base(x) + B·A·x·scaling, to bf16 (PEFT adds the two
  bf16 products): while the adapter is young its term is below half a bf16 ulp of base(x) for most elements and
  is rounded away in the forward (~95% of them after the 2-step smoke test; the gradient through the sum is not
  affected: same grads as fp32 to cosine 0.9997). So over the first few steps the validation loss moves much less
  than in fp32 or dtrain (2 steps: 2.61 -> ~2.59 under autocast, ~2.50 otherwise, with the same adapter), and
  catches up as the adapter grows (B 10x larger: its term survives on average). Compare losses on full runs.
Prints the configuration and data/model summary, one line per step (as dtrain: step, loss, lr, grad norm, tokens/s,
valid loss),
then `timing: …` and finally
    pytorch main job: N steps, X s wall (training only), Y s total, valid loss A -> B [autocast C, base D]
where "training only" = the optimizer steps (forward, backward, clip, AdamW), without the evaluations and loading;
"total" = the whole script from start.
"""
import argparse
import json
import math
import os
import sys
import time

STARTED = time.time()
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF de-quantization progress bar

import torch  # noqa: E402
import yaml  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM, get_constant_schedule_with_warmup  # noqa: E402
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GGUF = os.path.expanduser("~/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf")
IGNORE = -100
MASK64 = (1 << 64) - 1


# --- dtrain's sample order (SampleOrder.permutation with SplitMix64) -------------------------------------------
def splitmix64(seed):
    state = seed & MASK64
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        yield z ^ (z >> 31)


def permutation(count, seed, epoch):
    rng = splitmix64(seed + epoch * 0x9E3779B97F4A7C15)
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        j = next(rng) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


# --- dtrain's ChatML rendering (ChatTemplate.render, family chatml) ---------------------------------------------
def default_system_prompt(jinja):
    t = jinja.replace("\\n", "\n")
    for opener in ("'<|im_start|>system\n", '"<|im_start|>system\n'):
        start = t.find(opener)
        if start >= 0:
            start += len(opener)
            end = t.find("<|im_end|>", start)
            text = t[start:end] if end >= 0 else ""
            if text and "{{" not in text and "'" not in text and '"' not in text:
                return text
            return None
    return None


def render_chatml(messages, default_system):
    """[(text, is_assistant)] as dtrain's renderer; loss goes on the assistant reply and its <|im_end|>."""
    if default_system is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default_system}] + messages
    out = []
    for m in messages:
        out.append((f"<|im_start|>{m['role']}\n", False))
        if m["role"] == "assistant":
            out += [(f"{m['content']}<|im_end|>", True), ("\n", False)]
        else:
            out.append((f"{m['content']}<|im_end|>\n", False))
    return out


def load_examples(path, tok, template, max_length):
    default_system = default_system_prompt(template)
    examples, truncated = [], 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            messages = json.loads(line)["messages"]
            tokens, trainable = [], []
            for text, target in render_chatml(messages, default_system):
                ids = tok.encode(text, add_special_tokens=False).ids
                tokens += ids
                trainable += [target] * len(ids)
            if len(tokens) > max_length:
                tokens, trainable = tokens[:max_length], trainable[:max_length]
                truncated += 1
            # HF labels are shifted inside the loss: label[t] = token t if it is a target (dtrain: labels[t-1]).
            labels = [t if k else IGNORE for t, k in zip(tokens, trainable)]
            labels[0] = IGNORE
            if not any(x != IGNORE for x in labels):
                sys.exit(f"{path}:{line_no}: no target tokens")
            examples.append((tokens, labels, messages))
    return examples, truncated


def check_template(tok_example, template, tok):
    """The first example's text as dtrain renders it vs. the model's Jinja template (transformers)."""
    try:
        import jinja2
    except ImportError:
        return "not checked (no jinja2)"
    tokens, _, messages = tok_example
    jinja_text = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(template).render(messages=messages, add_generation_prompt=False)
    ours = tok.decode(tokens, skip_special_tokens=False)
    return "matches the Jinja chat template" if ours == jinja_text else f"DIFFERS from the Jinja template: {jinja_text!r} vs {ours!r}"


# --- model and tokenizer ------------------------------------------------------------------------------------
def load_model_and_tokenizer(path):
    if path.endswith(".gguf"):
        import make_llama1b
        fields = make_llama1b.gguf_tokenizer_fields(path)
        tok = make_llama1b.build_tokenizer(fields)
        template, pad = fields["template"], fields["pad"] if fields["pad"] is not None else fields["eos"]
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                     dtype=torch.float32)
        source = f"{path} (GGUF, dequantized to fp32 by transformers)"
    else:
        tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        with open(os.path.join(path, "tokenizer_config.json")) as f:
            tc = json.load(f)
        template = tc.get("chat_template")
        pad_name = tc.get("pad_token") or tc.get("eos_token")
        pad_name = pad_name["content"] if isinstance(pad_name, dict) else pad_name
        pad = tok.token_to_id(pad_name) if pad_name else 0
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).float()
        source = f"{path} (HF directory, fp32)"
    if not template or "<|im_start|>" not in template:
        sys.exit(f"{path}: this reference renders ChatML only; the model's chat template is not ChatML")
    dtypes = {q.dtype for q in model.parameters()}
    if dtypes != {torch.float32}:
        sys.exit(f"{path}: expected fp32 weights after loading, found {dtypes}")
    return model, tok, template, pad, source


def main():
    p = argparse.ArgumentParser(description="PyTorch + PEFT reference of dtrain's main job")
    p.add_argument("--model", default=DEFAULT_GGUF, help="a .gguf file or an HF model directory")
    p.add_argument("--config", default=os.path.join(REPO, "launch/configs/instruct-lora.yaml"))
    p.add_argument("--autocast", choices=["bf16", "none"], default="bf16")
    p.add_argument("--base-dtype", choices=["fp32", "bf16"], default="fp32",
                   help="dtype of the frozen base weights (the LoRA parameters stay fp32)")
    p.add_argument("--max-steps", type=int, default=0, help="optimizer steps (0: from epochs), as dtrain's max_steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ranks", type=int, default=2, help="split each step's examples as this many dtrain ranks would")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    with open(a.config) as f:
        cfg = yaml.safe_load(f)
    if cfg.get("method", "lora") != "lora":
        sys.exit(f"{a.config}: method {cfg.get('method')!r}; this reference does LoRA only")
    if cfg.get("train_on_prompt", False):
        sys.exit(f"{a.config}: train_on_prompt true is not handled here")
    G, micro = int(cfg.get("batch_size", 8)), int(cfg.get("micro_batch_size", 4))
    max_length, epochs, seed = int(cfg.get("max_length", 512)), float(cfg.get("epochs", 1)), int(cfg.get("seed", 42))
    lr, warmup = float(cfg.get("learning_rate", 2e-4)), int(cfg.get("warmup_steps", 0))
    schedule, eval_every = cfg.get("schedule", "cosine"), int(cfg.get("eval_every", 0))
    max_grad_norm, weight_decay = float(cfg.get("max_grad_norm", 1.0)), float(cfg.get("weight_decay", 0.0))
    targets = cfg.get("lora_targets", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    rel = lambda x: x if os.path.isabs(x) else os.path.join(REPO, x)  # noqa: E731

    t = time.time()
    model, tok, template, pad, source = load_model_and_tokenizer(a.model)
    model.config.use_cache = False
    load_seconds = time.time() - t
    train, truncated = load_examples(rel(cfg["data"]), tok, template, max_length)
    valid, _ = load_examples(rel(cfg["valid_data"]), tok, template, max_length) if cfg.get("valid_data") else ([], 0)
    total = a.max_steps if a.max_steps > 0 else max(1, math.ceil(epochs * len(train) / G))
    print(f"model: {source}, loaded in {load_seconds:.1f} s; torch {torch.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {a.threads} threads, autocast {a.autocast}, "
          f"base dtype {a.base_dtype}")
    print(f"data: {len(train)} training examples, {len(valid)} validation"
          + (f", {truncated} truncated to {max_length} tokens" if truncated else "")
          + f"; {total} steps of {G} examples as {a.ranks} rank(s) × micro-batches of {micro}; first example "
          + check_template(train[0], template, tok))

    if a.base_dtype == "bf16":
        model.to(torch.bfloat16)  # the frozen base in bf16; get_peft_model then creates the adapter
    torch.manual_seed(seed)
    lora = get_peft_model(model, LoraConfig(r=int(cfg.get("lora_rank", 8)), lora_alpha=float(cfg.get("lora_alpha", 16)),
                                            lora_dropout=float(cfg.get("lora_dropout", 0.0)), target_modules=targets,
                                            use_rslora=bool(cfg.get("use_rslora", False)), bias="none",
                                            task_type="CAUSAL_LM"))
    params = [q for q in lora.parameters() if q.requires_grad]
    for q in params:  # fp32 master weights for AdamW (PEFT's autocast_adapter_dtype already does it; made sure here)
        q.data = q.data.float()
    frozen = sorted({str(q.dtype).replace("torch.", "") for q in lora.parameters() if not q.requires_grad})
    print(f"trainable: {sum(q.numel() for q in params)} parameters (LoRA r={cfg.get('lora_rank', 8)} on {','.join(targets)}), "
          f"{'/'.join(sorted({str(q.dtype).replace('torch.', '') for q in params}))}; frozen base {'/'.join(frozen)}")
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    make_schedule = {"cosine": get_cosine_schedule_with_warmup, "linear": get_linear_schedule_with_warmup}.get(schedule)
    sched = make_schedule(opt, warmup, total) if make_schedule else get_constant_schedule_with_warmup(opt, warmup)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16")

    def batch(exs):
        T = max(len(e[0]) for e in exs)
        ids = torch.full((len(exs), T), pad, dtype=torch.long)
        labels = torch.full((len(exs), T), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(exs), T), dtype=torch.long)
        for b, (tokens, lab, _) in enumerate(exs):
            ids[b, :len(tokens)] = torch.tensor(tokens)
            labels[b, :len(lab)] = torch.tensor(lab)
            mask[b, :len(tokens)] = 1
        return ids, labels, mask

    def nll_sum(ids, labels, mask):
        with autocast():
            logits = lora(input_ids=ids, attention_mask=mask).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum")

    def evaluate(with_adapter):
        lora.eval()
        s, n = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(valid), micro):
                ids, labels, mask = batch(valid[start:start + micro])
                if with_adapter:
                    s += nll_sum(ids, labels, mask).item()
                else:
                    with lora.disable_adapter():
                        s += nll_sum(ids, labels, mask).item()
                n += int((labels[:, 1:] != IGNORE).sum())
        lora.train()
        return s / max(1, n)

    orders = {}

    def sample(pos):
        epoch = pos // len(train)
        if epoch not in orders:
            orders[epoch] = permutation(len(train), seed, epoch)
        return orders[epoch][pos % len(train)]

    eval_seconds, train_seconds = 0.0, 0.0
    base = final = None
    if valid:
        t = time.time()
        base = final = evaluate(with_adapter=False)
        eval_seconds += time.time() - t
        print(f"validation loss before training: {base:.4f}")
    lora.train()
    for s in range(total):
        t = time.time()
        positions = list(range(s * G, (s + 1) * G))
        micro_batches = []
        for r in range(a.ranks):  # rank r's share (every ranks-th position), in micro-batches
            mine = positions[r::a.ranks]
            micro_batches += [mine[i:i + micro] for i in range(0, len(mine), micro)]
        exs = [[train[sample(q)] for q in mb] for mb in micro_batches]
        count = sum(sum(1 for x in e[1][1:] if x != IGNORE) for mb in exs for e in mb)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for mb in exs:
            loss = nll_sum(*batch(mb))
            (loss / count).backward()
            loss_sum += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm) if max_grad_norm > 0 else \
            torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in params]))
        step_lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        seconds = time.time() - t
        train_seconds += seconds
        valid_now = ""
        if valid and ((eval_every > 0 and (s + 1) % eval_every == 0) or s + 1 == total):
            t = time.time()
            final = evaluate(with_adapter=True)
            eval_seconds += time.time() - t
            valid_now = f"valid loss {final:.4f} | "
        tokens = sum(len(e[0]) for mb in exs for e in mb)
        print(f"step {s + 1}/{total} | loss {loss_sum / count:.4f} | lr {step_lr:.2e} | grad norm {float(norm):.3f} | "
              f"{tokens / seconds:.0f} tokens/s | {valid_now}{seconds:.1f} s", flush=True)
    wall = time.time() - STARTED
    print(f"timing: steps {train_seconds:.1f} s, evaluations {eval_seconds:.1f} s, model load {load_seconds:.1f} s, "
          f"total {wall:.1f} s")
    valid_text = f"valid loss {base:.4f} -> {final:.4f}" if valid else "no validation data"
    print(f"pytorch main job: {total} steps, {train_seconds:.1f} s wall (training only), {wall:.1f} s total, {valid_text} "
          f"[autocast {a.autocast}, base {a.base_dtype}]")


if __name__ == "__main__":
    main()
