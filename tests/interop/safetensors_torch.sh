#!/usr/bin/env bash
# Interop test (issue #6): a pruned model exported by `pare export --format
# safetensors` loads with the safetensors package from PyPI into PyTorch
# (Debian's python3-torch), and the torch network built from it gives the same
# test accuracy as `pare eval`. The safetensors package goes into a venv under
# the build directory that sees Debian's python3 packages (created once).
#
# Usage: safetensors_torch.sh PARE_BINARY WORK_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=venv.sh
source "$here/venv.sh" "$@"
need_torch
use_venv safetensors.torch safetensors

# Data: points in the square, label 1 above the diagonal; a 2-8-2 MLP.
"$py" - "$run" <<'PY'
import random, sys
run = sys.argv[1]
for name, rows, seed in (("train.csv", 512, 1), ("test.csv", 256, 2)):
    rng = random.Random(seed)
    with open(f"{run}/{name}", "w") as f:
        f.write("x,y,label\n")
        for _ in range(rows):
            x, y = rng.uniform(-1, 1), rng.uniform(-1, 1)
            f.write(f"{x},{y},{int(x + y > 0)}\n")
with open(f"{run}/mlp.json", "w") as f:
    f.write('{"name": "mlp", "input": [2], "layers": [{"type": "linear", "out": 8}, {"type": "relu"}, {"type": "linear", "out": 2}]}')
PY
"$pare" train --model "$run/mlp.json" --data "$run/train.csv" --test "$run/test.csv" --epochs 5 --batch 16 \
  --lr 0.02 --out "$run/dense" --quiet >/dev/null
"$pare" prune --from "$run/dense/model.bin" --criterion magnitude --sparsity 0.5 --data "$run/train.csv" \
  --test "$run/test.csv" --out "$run/pruned" --quiet >/dev/null
"$pare" export "$run/pruned/model.bin" --format safetensors -o "$run/m.safetensors" >/dev/null
pare_acc=$("$pare" eval "$run/pruned/model.bin" --data "$run/test.csv" --json --sparse off |
           "$py" -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')
"$py" "$here/safetensors_torch.py" "$run/m.safetensors" "$run/test.csv" "$pare_acc"
