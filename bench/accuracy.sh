#!/usr/bin/env bash
# Accuracy check for docs/results.md: LeNet-300-100 and LeNet-5 on Fashion-MNIST,
# 10 epochs, Adam 1.2e-3 with cosine decay, batch 60, standardised inputs, for
# the given seeds. Prints one Markdown row per run (final and best epoch).
# Usage: bash bench/accuracy.sh [seed...]   (default seeds: 0 1)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("${@:-0 1}")
[ $# -eq 0 ] && seeds=(0 1)
echo "| model | seed | test accuracy after 10 epochs | best epoch | s/epoch (mean) |"
echo "|---|---|---|---|---|"
for model in lenet300 lenet5; do
  for seed in "${seeds[@]}"; do
    build/pare train --model "$model" --data fashion-mnist --epochs 10 --batch 60 \
      --optimizer adam --lr 1.2e-3 --schedule cosine --normalize --seed "$seed" --json --quiet |
      python3 -c '
import json, sys
model, seed = sys.argv[1], sys.argv[2]
acc = [json.loads(l) for l in sys.stdin if "\"epoch\"" in l]
acc = [d for d in acc if d.get("event") == "epoch"]
best = max(acc, key=lambda d: d["test_accuracy"])
secs = sum(d["train_seconds"] for d in acc) / len(acc)
print("| %s | %s | %.2f %% | %.2f %% (epoch %d) | %.2f |" % (model, seed, 100 * acc[-1]["test_accuracy"],
      100 * best["test_accuracy"], best["epoch"], secs))' "$model" "$seed"
  done
done
