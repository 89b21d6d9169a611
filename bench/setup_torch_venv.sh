#!/usr/bin/env bash
# Creates bench/.venv (python3 on PATH, `python3 -m venv`) holding the current
# PyTorch wheel and numpy, for the side-by-side training benchmark
# (bench/run_train.sh). Idempotent: does nothing when the venv already imports
# torch and numpy. Set FORCE=1 to reinstall.
#
# Source of the wheel: PyPI (the project machines reach only PyPI and Debian).
# On Linux x86-64 the PyPI wheel is the CUDA build: it pulls the nvidia-*
# runtime wheels (a few GB) but runs on the CPU like a CPU-only wheel; the
# benchmark only uses its CPU kernels. Its resident memory after import is
# larger than a CPU-only wheel's, so peak-RSS ratios use Debian's torch too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${VENV:-$here/.venv}"
py="${PYTHON:-python3}"

have_torch() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c 'import torch, numpy' >/dev/null 2>&1
}

if [ "${FORCE:-0}" != 1 ] && have_torch; then
  echo "setup_torch_venv: $venv already has torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'), numpy $("$venv/bin/python" -c 'import numpy; print(numpy.__version__)'); nothing to do"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup_torch_venv: creating $venv with $(command -v "$py") ($("$py" --version 2>&1))"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

"${pip[@]}" install --upgrade numpy torch

if ! have_torch; then
  echo "setup_torch_venv: torch still does not import in $venv" >&2
  exit 1
fi
"$venv/bin/python" -c 'import torch, numpy; print("setup_torch_venv: torch", torch.__version__, "numpy", numpy.__version__, "in", __import__("sys").prefix)'
