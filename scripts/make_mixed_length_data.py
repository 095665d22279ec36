"""Writes a JSONL of "text" examples whose lengths vary widely (3 of 4 with 8-30 words, 1 of 4 with 150-200),
the case sequence packing is for; used for the packing rows of docs/benchmarks.md.
    python3 scripts/make_mixed_length_data.py /tmp/bench/skewed.jsonl
    .build/release/dtrain train --data /tmp/bench/skewed.jsonl --max-length 256 --batch-size 16 \
        --micro-batch-size 8 --max-steps 4 --packing true --output /tmp/run-packed     # and --packing false
"""
import json
import random
import sys

random.seed(1)
words = "the quick brown fox jumps over a lazy dog while counting stars in the cold night sky and singing".split()
with open(sys.argv[1], "w") as f:
    for i in range(64):
        n = random.randint(150, 200) if i % 4 == 0 else random.randint(8, 30)
        f.write(json.dumps({"text": " ".join(random.choice(words) for _ in range(n))}) + "\n")
