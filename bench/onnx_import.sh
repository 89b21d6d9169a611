#!/usr/bin/env bash
# A PyTorch model through pare: LeNet-300-100 trained in torch (Debian's python3-torch 1.13) on Fashion-MNIST,
# exported with torch.onnx.export, read by `pare import`, evaluated by pare on the same test set (the
# requirement: the test accuracy within 0.1 point of torch's), then pruned to 10 % of its weights with two
# epochs of fine-tuning and stored with 5-bit weight sharing.
#
# Usage: bash bench/onnx_import.sh [PARE_BINARY [OUT_DIR]]     (defaults: build/pare, runs/onnx_import)
# Environment: EPOCHS (torch training, default 10), SEED (0), THREADS (pare's threads, 2), TORCH_THREADS (1:
# on a loaded two-core machine torch's OpenMP threads at 2 spin against each other, 10 s of training took 13 min).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pare=${1:-$root/build/pare}
out=${2:-$root/runs/onnx_import}
epochs=${EPOCHS:-10}
seed=${SEED:-0}
threads=${THREADS:-2}
torch_threads=${TORCH_THREADS:-1}
python=/usr/bin/python3
mkdir -p "$out"

echo "== torch $("$python" -c 'import torch; print(torch.__version__)'): LeNet-300-100, $epochs epochs of Adam"
OMP_NUM_THREADS=$torch_threads OPENBLAS_NUM_THREADS=$torch_threads "$python" "$root/bench/torch_lenet300_onnx.py" \
  --out "$out" --epochs "$epochs" --seed "$seed" --threads "$torch_threads" | tee "$out/torch.json"

echo "== pare import"
"$pare" import "$out/model.onnx" -o "$out/lenet300.pare"
"$pare" eval "$out/lenet300.pare" --data fashion-mnist --threads "$threads" --json \
  --save-outputs "$out/pare_logits.npy" | tee "$out/pare_eval.json"

"$python" - "$out" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
t = json.load(open(f"{out}/torch.json"))["test_accuracy"]
p = json.load(open(f"{out}/pare_eval.json"))["accuracy"]
d = np.abs(np.load(f"{out}/torch_logits.npy").astype(np.float64) - np.load(f"{out}/pare_logits.npy"))
print(f"test accuracy: torch {100 * t:.2f}%, pare (imported) {100 * p:.2f}%, difference {100 * (p - t):+.2f} points "
      f"(requirement: within 0.1); logits max|pare-torch| {d.max():.3g}")
if abs(p - t) > 0.001 + 1e-12:
    sys.exit("FAIL: accuracies differ by more than 0.1 point")
PY

echo "== pare prune --from the imported model: 90 % by magnitude, 2 epochs of fine-tuning"
"$pare" prune --from "$out/lenet300.pare" --data fashion-mnist --criterion magnitude --sparsity 0.9 \
  --train --epochs 2 --batch 60 --optimizer adam --lr 6e-4 --schedule cosine --seed "$seed" \
  --threads "$threads" --out "$out/pruned90" --overwrite --quiet
"$pare" eval "$out/pruned90/model.bin" --data fashion-mnist --threads "$threads" --json | tee "$out/pruned_eval.json"

echo "== pare compress --share-bits 5"
"$pare" compress "$out/pruned90/model.bin" -o "$out/pruned90.pare" --share-bits 5 >/dev/null
"$pare" eval "$out/pruned90.pare" --data fashion-mnist --threads "$threads" --json | tee "$out/compressed_eval.json"

"$python" - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
t = json.load(open(f"{out}/torch.json"))["test_accuracy"]
p = json.load(open(f"{out}/pare_eval.json"))["accuracy"]
pr = json.load(open(f"{out}/pruned_eval.json"))
c = json.load(open(f"{out}/compressed_eval.json"))["accuracy"]
size, dense = os.path.getsize(f"{out}/pruned90.pare"), 4 * (784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10)
print(f"summary: torch {100 * t:.2f}% | imported {100 * p:.2f}% | pruned to {100 * (1 - pr['sparsity']):.1f}% "
      f"of the weights, fine-tuned: {100 * pr['accuracy']:.2f}% | 5-bit .pare {size} bytes "
      f"({dense / size:.1f}x smaller than the fp32 dense weights, {dense} bytes): {100 * c:.2f}%")
PY
