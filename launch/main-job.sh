#!/usr/bin/env bash
# The main job: set up, show the base model's answers, fine-tune LoRA on the shipped instruction data with
# two MPI ranks, then show the answers again with the adapter.
#   bash launch/main-job.sh
# Expect ~5 minutes on a 2-core machine; the "after" answers use the taught "ANSWER: … / WHY: …" format.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
B=.build/release/dtrain
RUN=runs/instruct-lora

show() {  # show ADAPTER_FLAGS...
  while IFS= read -r prompt; do
    [ -n "$prompt" ] || continue
    printf '\n> %s\n' "$prompt"
    "$B" generate -p "$prompt" --max-tokens 48 "$@" 2>/dev/null
  done < data/instruct/prompts.txt
}

echo "== Before fine-tuning (base model, greedy) =="
show
echo
echo "== Fine-tuning: mpirun -np 2 dtrain train --config launch/configs/instruct-lora.yaml =="
rm -rf "$RUN"
mpirun -np 2 --bind-to none "$B" train --config launch/configs/instruct-lora.yaml
echo
echo "== After fine-tuning (adapter $RUN/final, greedy) =="
show --adapter "$RUN/final"
