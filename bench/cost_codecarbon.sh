#!/usr/bin/env bash
# pare's cost ledger beside CodeCarbon (PyPI) around the same training run
# (issue #8, docs/cost.md): LeNet-300-100 on Fashion-MNIST, 10 epochs.
#   bash bench/cost_codecarbon.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pare=${PARE:-build/pare}
out=${OUT:-runs/cost-codecarbon}
venv=bench/.venv-codecarbon
if ! "$venv/bin/python" -c 'import codecarbon' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check codecarbon
fi
"$venv/bin/python" -c 'import codecarbon; print("codecarbon", codecarbon.__version__)'
"$venv/bin/python" bench/cost_codecarbon.py "$(realpath "$pare")" "$out" --model lenet300 --data fashion-mnist \
  --epochs 10 --batch 60 --optimizer adam --lr 1.2e-3 --schedule cosine --normalize --seed 0
