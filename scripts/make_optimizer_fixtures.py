#!/usr/bin/env python3
"""Generate reference fixtures for dtrain's AdamW, grad-norm clipping and LR schedules.

Writes Tests/DTTrainingTests/Fixtures/adamw_reference.json with the exact float32
behaviour of PyTorch, so the Swift implementation can be checked against it.

How to run (needs a Python venv with torch; transformers is optional and only used
to cross-check the schedule formulas if it is installed):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch numpy          # (transformers optional)
    /tmp/refvenv/bin/python scripts/make_optimizer_fixtures.py

Run from the repository root (or anywhere: the output path is resolved relative to
this file). Output is deterministic (fixed seeds, CPU, float32).

Contents of the JSON:
  initial                 10 float32 parameter values (seeded normal)
  grads                   6 x 10 gradients, one per optimizer step (seeded normal)
  lrs                     learning rate used at each of the 6 steps
                          (base_lr 0.01, HF cosine schedule with 2 warmup steps, 6 total)
  params_after_each_step  6 x 10 parameter values after each torch.optim.AdamW step
  exp_avg_final / exp_avg_sq_final   AdamW state after the last step
  betas, eps, weight_decay, base_lr
  clip                    torch.nn.utils.clip_grad_norm_ case over 3 tensors (L2 norm)
  schedules               lr at steps 0..9 for base lr 1.0, warmup 3, total 10, for HF's
                          constant/linear/cosine-with-warmup schedules
All floats are written with Python's full repr of the float32 value (converted to double).
"""

import json
import math
import os

import torch

torch.set_default_dtype(torch.float32)

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "Tests", "DTTrainingTests", "Fixtures", "adamw_reference.json",
)


# ---- HF transformers schedule formulas (transformers/optimization.py) ----------------
def constant_with_warmup_lambda(num_warmup_steps):
    def f(step):
        if step < num_warmup_steps:
            return float(step) / float(max(1.0, num_warmup_steps))
        return 1.0
    return f


def linear_with_warmup_lambda(num_warmup_steps, num_training_steps):
    def f(step):
        if step < num_warmup_steps:
            return float(step) / float(max(1, num_warmup_steps))
        return max(0.0, float(num_training_steps - step)
                   / float(max(1, num_training_steps - num_warmup_steps)))
    return f


def cosine_with_warmup_lambda(num_warmup_steps, num_training_steps, num_cycles=0.5):
    def f(step):
        if step < num_warmup_steps:
            return float(step) / float(max(1, num_warmup_steps))
        progress = float(step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))
    return f


def tolist(t):
    return [float(x) for x in t.detach().to(torch.float32).reshape(-1).tolist()]


# ---- AdamW over 6 steps with cosine warmup schedule -----------------------------------
def adamw_case():
    base_lr = 0.01
    betas = (0.9, 0.999)
    eps = 1e-8
    wd = 0.1
    steps = 6

    g = torch.Generator().manual_seed(1234)
    initial = torch.randn(10, generator=g, dtype=torch.float32)
    grads = [torch.randn(10, generator=g, dtype=torch.float32) for _ in range(steps)]

    p = torch.nn.Parameter(initial.clone())
    opt = torch.optim.AdamW([p], lr=base_lr, betas=betas, eps=eps, weight_decay=wd,
                            amsgrad=False, foreach=False, fused=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup_lambda(2, steps))

    lrs, after = [], []
    for k in range(steps):
        lrs.append(float(opt.param_groups[0]["lr"]))
        p.grad = grads[k].clone()
        opt.step()
        sched.step()
        after.append(tolist(p))
    st = opt.state[p]
    return {
        "initial": tolist(initial),
        "grads": [tolist(x) for x in grads],
        "lrs": lrs,
        "params_after_each_step": after,
        "exp_avg_final": tolist(st["exp_avg"]),
        "exp_avg_sq_final": tolist(st["exp_avg_sq"]),
        "betas": list(betas),
        "eps": eps,
        "weight_decay": wd,
        "base_lr": base_lr,
        "schedule": {"name": "cosine_with_warmup", "num_warmup_steps": 2, "num_training_steps": steps},
        "note": "torch.optim.AdamW, float32, amsgrad=False, maximize=False; "
                "lrs[k] is the lr used for step k (scheduler stepped after each optimizer step).",
    }


# ---- clip_grad_norm_ -----------------------------------------------------------------
def clip_case():
    g = torch.Generator().manual_seed(99)
    shapes = [(4,), (3, 2), (5,)]
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.zeros(s))
        p.grad = torch.randn(s, generator=g, dtype=torch.float32) * 0.8
        params.append(p)
    grads_before = [tolist(p.grad) for p in params]
    total = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0, norm_type=2.0, foreach=False)
    return {
        "grads": grads_before,
        "shapes": [list(s) for s in shapes],
        "max_norm": 1.0,
        "norm_type": 2.0,
        "total_norm": float(total),
        "clipped": [tolist(p.grad) for p in params],
        "note": "torch.nn.utils.clip_grad_norm_: total_norm is the L2 norm over all grads before "
                "clipping; clip_coef = max_norm / (total_norm + 1e-6), clamped to <= 1.",
    }


# ---- schedules -----------------------------------------------------------------------
def schedules_case():
    warmup, total = 3, 10
    lambdas = {
        "constant_with_warmup": constant_with_warmup_lambda(warmup),
        "linear_with_warmup": linear_with_warmup_lambda(warmup, total),
        "cosine_with_warmup": cosine_with_warmup_lambda(warmup, total),
    }
    out = {"base_lr": 1.0, "num_warmup_steps": warmup, "num_training_steps": total}
    for name, fn in lambdas.items():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        lrs = []
        for _ in range(total):
            lrs.append(float(opt.param_groups[0]["lr"]))
            p.grad = torch.zeros(1)
            opt.step()
            sched.step()
        out[name] = lrs
    # Optional cross-check against transformers' own implementations.
    try:
        import transformers
        makers = {
            "constant_with_warmup": lambda o: transformers.get_constant_schedule_with_warmup(o, warmup),
            "linear_with_warmup": lambda o: transformers.get_linear_schedule_with_warmup(o, warmup, total),
            "cosine_with_warmup": lambda o: transformers.get_cosine_schedule_with_warmup(o, warmup, total),
        }
        for name, mk in makers.items():
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=1.0)
            sched = mk(opt)
            ref = []
            for _ in range(total):
                ref.append(float(opt.param_groups[0]["lr"]))
                p.grad = torch.zeros(1)
                opt.step()
                sched.step()
            assert ref == out[name], (name, ref, out[name])
        print("schedules cross-checked against transformers", transformers.__version__)
    except ImportError:
        print("transformers not installed; schedule cross-check skipped")
    out["note"] = "lr used for optimizer step k, k=0..9 (LambdaLR stepped after each optimizer step)."
    return out


def main():
    data = adamw_case()
    data["clip"] = clip_case()
    data["schedules"] = schedules_case()
    data["generator"] = {"script": "scripts/make_optimizer_fixtures.py", "torch": torch.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(OUT))
    print("  lrs:", data["lrs"])
    print("  params after step 6[:3]:", data["params_after_each_step"][-1][:3])
    print("  clip total_norm:", data["clip"]["total_norm"])
    for k in ("constant_with_warmup", "linear_with_warmup", "cosine_with_warmup"):
        print("  %-22s %s" % (k, [round(x, 4) for x in data["schedules"][k]]))


if __name__ == "__main__":
    main()
