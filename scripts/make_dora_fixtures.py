#!/usr/bin/env python3
"""Generate the DoRA interop fixtures: PEFT-made DoRA adapters on the tiny interop Llama with PEFT's logits,
and a dtrain-trained DoRA adapter with the loss PEFT computes for it.

Reuses scripts/make_interop_fixtures.py (its tiny_model, sequences and helpers; it does not regenerate the
model). Everything is written under Tests/DTTrainingTests/Fixtures/interop/:

  peft_dora/                     PEFT LoRA with use_dora=True (r=4, alpha=8, all 7 projections,
                                 init_lora_weights=False so B != 0; every lora_magnitude_vector then
                                 multiplied by 1 + 0.3·N(0, 1) so m != ‖W + s·B·A‖ and the magnitude matters)
  peft_dora_expected.json        {"ids": [[16 ids]], "logits": (16,V), "base_logits": (16,V)}
  peft_dora_rslora/              use_dora=True, use_rslora=True, r=8, alpha=16, q_proj,o_proj,down_proj
                                 (o and down add into the residual stream), magnitudes perturbed as above
  peft_dora_rslora_expected.json same form
  dtrain_dora/                   the final adapter of `dtrain train --use-dora true` (6 steps, lr 0.03,
                                 r=4, alpha=8, all 7 projections) on tiny_model and dtrain_data.jsonl
  dtrain_dora_expected.json      {"sequences", "texts", "dora_mean_nll" (PEFT's mean next-token NLL of the
                                 4 round-trip sequences with dtrain_dora loaded), "base_mean_nll",
                                 "load_report" (what PEFT said when loading it), "peft_merged_mean_nll"
                                 (after PEFT's merge_and_unload)}

How to run (CPU only; the dtrain part needs a release build of dtrain at .build/release/dtrain, copied to
/tmp/dtrain-fixture-bin first; --skip-dtrain leaves dtrain_dora* untouched):

    /tmp/ref/bin/python scripts/make_dora_fixtures.py

Versions used for the committed fixtures: torch 2.15.0, transformers 5.24.0, peft 0.21.2 (as
interop/versions.json records for the other interop fixtures).
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_interop_fixtures as interop  # noqa: E402  (sets torch determinism and offline mode on import)

import numpy as np  # noqa: E402
import torch  # noqa: E402

OUT = interop.OUT
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The four sequences of the LoRA round trip (make_interop_fixtures.make_dtrain_roundtrip).
TEXTS = [
    "The cat likes the garden today.",
    "Hello, how are you?",
    "<|im_start|>user\nSay hello.<|im_end|>\n",
    "A small bird reads a letter.",
]


def perturb_magnitudes(model, seed):
    """m ← m · (1 + 0.3·N(0, 1)) for every DoRA magnitude, so m differs from the row norms PEFT starts at."""
    g = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_magnitude_vector" in name:
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=g))
                count += 1
    assert count > 0, "no lora_magnitude_vector parameters: not a DoRA model"
    return count


def make_peft_dora(vocab, name, seed, **lora_kwargs):
    from peft import LoraConfig, get_peft_model

    base = interop.load_base()
    ids = interop.random_ids(vocab, seed=seed)
    base_logits = interop.logits_of(base, ids)
    torch.manual_seed(seed)
    cfg = LoraConfig(lora_dropout=0.0, task_type="CAUSAL_LM", init_lora_weights=False, use_dora=True, **lora_kwargs)
    model = get_peft_model(base, cfg).eval()
    n = perturb_magnitudes(model, seed + 1)
    logits = interop.logits_of(model, ids)
    out = {"ids": ids.tolist(), "logits": interop.f32_list(logits), "base_logits": interop.f32_list(base_logits)}
    out_dir = os.path.join(OUT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    interop.drop_readme(out_dir)
    interop.write_json(os.path.join(OUT, f"{name}_expected.json"), out)
    interop.log(f"{name}: {n} magnitude vectors, max|logits-base|={np.abs(logits - base_logits).max():.4f}")


def make_dtrain_dora(binary_src):
    from peft import PeftModel

    binary = "/tmp/dtrain-fixture-bin"
    shutil.copy2(binary_src, binary)
    data = os.path.join(OUT, "dtrain_data.jsonl")
    assert os.path.exists(data), "run scripts/make_interop_fixtures.py first (dtrain_data.jsonl)"
    final = interop.run_dtrain(binary, data, "/tmp/dtrain-fixture-run",
                               ["--learning-rate", "0.03", "--lora-rank", "4", "--lora-alpha", "8", "--use-dora", "true",
                                "--compute", "fp32"])
    dst = os.path.join(OUT, "dtrain_dora")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(final, dst)
    shutil.rmtree("/tmp/dtrain-fixture-run", ignore_errors=True)

    tok = interop.load_tokenizer()
    sequences = [tok.encode(t, add_special_tokens=False).ids for t in TEXTS]
    base_nll, _ = interop.mean_nll(interop.load_base(), sequences)
    model, cfg, report = interop.peft_load_checked(dst)
    assert cfg.use_dora, "PEFT did not read use_dora"
    dora_nll, per = interop.mean_nll(model, sequences)
    merged_nll, _ = interop.mean_nll(model.merge_and_unload(), sequences)
    interop.write_json_pretty(os.path.join(OUT, "dtrain_dora_expected.json"), {
        "sequences": sequences, "texts": TEXTS, "dora_mean_nll": dora_nll, "dora_per_sequence_mean_nll": per,
        "base_mean_nll": base_nll, "peft_merged_mean_nll": merged_nll, "load_report": report,
    })
    interop.log(f"dtrain_dora: PEFT weights_clean={report['weights_clean']} messages={report['messages']} "
                f"mean_nll={dora_nll:.6f} (base {base_nll:.6f}, PEFT-merged {merged_nll:.6f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-dtrain", action="store_true", help="leave the dtrain_dora fixtures alone")
    ap.add_argument("--dtrain", default=os.path.join(interop.REPO, ".build", "release", "dtrain"))
    args = ap.parse_args()
    assert os.path.exists(os.path.join(interop.MODEL_DIR, "model.safetensors")), "run scripts/make_interop_fixtures.py first"
    vocab = interop.load_tokenizer().get_vocab_size()
    make_peft_dora(vocab, "peft_dora", seed=303, r=4, lora_alpha=8, target_modules=TARGETS)
    make_peft_dora(vocab, "peft_dora_rslora", seed=404, r=8, lora_alpha=16, use_rslora=True,
                   target_modules=["q_proj", "o_proj", "down_proj"])
    if not args.skip_dtrain:
        make_dtrain_dora(args.dtrain)
    for root, _, files in sorted(os.walk(OUT)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            if "dora" in os.path.relpath(p, OUT):
                interop.log(f"{os.path.getsize(p):>9}  {os.path.relpath(p, OUT)}")


if __name__ == "__main__":
    main()
