#!/usr/bin/env bash
# Side-by-side training benchmark: pare vs PyTorch (current PyPI wheel in
# bench/.venv, and Debian's torch 1.13 via /usr/bin/python3) on
#   LeNet-300-100 and LeNet-5 (Fashion-MNIST, Adam 1.2e-3, batch 60) and
#   the Game of Life net, 1 step, m=1 and m=8 (80 000 boards, Adam 1e-3, batch 8).
# Each torch is run with 1 and 2 threads (OMP_NUM_THREADS=T, OPENBLAS_NUM_THREADS=1)
# and the faster setting is kept; the best (shortest) epoch of each side is compared.
# Prints the table and writes it, with every run and the exact commands, to
# bench/results/train_<date>.md; raw logs go to bench/results/train_<date>/.
#
# Usage (from anywhere): bash bench/run_train.sh
# Environment:
#   EPOCHS=3             epochs for the Fashion-MNIST models (both sides)
#   LIFE_EPOCHS=1        passes over the boards for life (both sides)
#   LIFE_BOARDS=80000    training boards for life
#   MODELS="lenet300 lenet5 life1 life8"
#   TORCH_THREADS="1 2"  thread settings tried for each torch
#   PARE_THREADS="1 2"   thread settings tried for pare (the faster is kept, as for torch)
#   SKIP_BUILD=1         do not run `make build`
#   SKIP_PARE=1 / SKIP_TORCH_PYPI=1 / SKIP_TORCH_DEBIAN=1
#   TORCH_PYPI_PY=bench/.venv/bin/python   TORCH_DEBIAN_PY=/usr/bin/python3
#   PARE_CMD_lenet300, PARE_CMD_lenet5, PARE_CMD_life1, PARE_CMD_life8:
#     pare command templates, run with `bash -c` from the repository root;
#     {EPOCHS} {LIFE_EPOCHS} {BOARDS} {M} {THREADS} {DIR} are substituted
#     ({DIR} is a fresh output directory; pare writes {DIR}/log.jsonl).
#   RUN_TIMEOUT=900      seconds per run (a run past it is killed and reported as failed)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

EPOCHS="${EPOCHS:-3}"
LIFE_EPOCHS="${LIFE_EPOCHS:-1}"
LIFE_BOARDS="${LIFE_BOARDS:-80000}"
MODELS="${MODELS:-lenet300 lenet5 life1 life8}"
TORCH_THREADS="${TORCH_THREADS:-1 2}"
PARE_THREADS="${PARE_THREADS:-1 2}"
RUN_TIMEOUT="${RUN_TIMEOUT:-900}"
TORCH_PYPI_PY="${TORCH_PYPI_PY:-bench/.venv/bin/python}"
TORCH_DEBIAN_PY="${TORCH_DEBIAN_PY:-/usr/bin/python3}"

if command -v python3 >/dev/null 2>&1; then PY=python3; else PY=/usr/bin/python3; fi

default_pare_cmd() {
  case "$1" in
    lenet300|lenet5)
      echo "build/pare train --model $1 --data fashion-mnist --epochs {EPOCHS} --batch 60 --optimizer adam --lr 1.2e-3 --threads {THREADS} --seed 0 --out {DIR} --json" ;;
    life*)
      echo "build/pare train --model life --life-steps 1 --width {M} --data life --examples {BOARDS} --batch 8 --optimizer adam --lr 1e-3 --epochs {LIFE_EPOCHS} --threads {THREADS} --out {DIR} --json" ;;
  esac
}

stamp="$(date +%Y-%m-%d_%H%M%S)"
resdir="bench/results/train_${stamp}"
md="bench/results/train_${stamp}.md"
manifest="$resdir/runs.jsonl"
mkdir -p "$resdir"
: > "$manifest"
notes=()

echo "== pare vs torch training benchmark -> $resdir"
echo "   EPOCHS=$EPOCHS LIFE_EPOCHS=$LIFE_EPOCHS LIFE_BOARDS=$LIFE_BOARDS MODELS='$MODELS' TORCH_THREADS='$TORCH_THREADS' PARE_THREADS=$PARE_THREADS"
echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- pare build
if [ "${SKIP_PARE:-0}" != 1 ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== make build (log: $resdir/build.log)"
  if ! make build > "$resdir/build.log" 2>&1; then
    tail -n 5 "$resdir/build.log" | sed 's/^/   /'
    notes+=("make build failed (see $resdir/build.log); pare rows use whatever build/pare exists")
    echo "   make build FAILED; continuing with the torch side"
  fi
fi
if [ "${SKIP_PARE:-0}" != 1 ] && [ ! -x build/pare ]; then
  notes+=("build/pare does not exist")
fi

# ---- torch (PyPI) venv
if [ "${SKIP_TORCH_PYPI:-0}" != 1 ] && [ "$TORCH_PYPI_PY" = bench/.venv/bin/python ]; then
  echo "== bench/setup_torch_venv.sh (log: $resdir/setup_torch_venv.log)"
  if ! bash bench/setup_torch_venv.sh > "$resdir/setup_torch_venv.log" 2>&1; then
    notes+=("bench/setup_torch_venv.sh failed (see $resdir/setup_torch_venv.log)")
    echo "   setup_torch_venv.sh FAILED; the PyPI torch column will be empty"
  fi
  tail -n 1 "$resdir/setup_torch_venv.log" | sed 's/^/   /'
fi

run() { # model side threads [--env K=V ...] [--pare-dir D] [--samples N] -- command...
  local model="$1" side="$2" threads="$3"; shift 3
  local base="$resdir/${model}_${side}${threads:+_t$threads}"
  "$PY" bench/summarize.py run "$manifest" --model "$model" --side "$side" \
    ${threads:+--threads "$threads"} --timeout "$RUN_TIMEOUT" \
    --stdout "$base.out" --stderr "$base.err" "$@"
}

for model in $MODELS; do
  case "$model" in
    lenet300|lenet5) targs=(--model "$model" --epochs "$EPOCHS"); m=""; samples=60000 ;;
    life*) m="${model#life}"
           targs=(--model life --m "$m" --steps 1 --boards "$LIFE_BOARDS" --epochs "$LIFE_EPOCHS")
           samples="$LIFE_BOARDS" ;;
    *) echo "unknown model $model (expected lenet300 lenet5 lifeM)"; continue ;;
  esac
  echo "== $model"

  if [ "${SKIP_PARE:-0}" != 1 ]; then
    var="PARE_CMD_${model}"
    tmpl="${!var:-$(default_pare_cmd "$model")}"
    for t in $PARE_THREADS; do
      dir="$resdir/pare_${model}_t$t"
      cmd="$tmpl"
      cmd="${cmd//\{EPOCHS\}/$EPOCHS}"
      cmd="${cmd//\{LIFE_EPOCHS\}/$LIFE_EPOCHS}"
      cmd="${cmd//\{BOARDS\}/$LIFE_BOARDS}"
      cmd="${cmd//\{M\}/$m}"
      cmd="${cmd//\{THREADS\}/$t}"
      cmd="${cmd//\{DIR\}/$dir}"
      run "$model" pare "$t" --pare-dir "$dir" --samples "$samples" -- "$cmd"
    done
  fi

  for side in torch-pypi torch-debian; do
    if [ "$side" = torch-pypi ]; then
      [ "${SKIP_TORCH_PYPI:-0}" = 1 ] && continue; py="$TORCH_PYPI_PY"
    else
      [ "${SKIP_TORCH_DEBIAN:-0}" = 1 ] && continue; py="$TORCH_DEBIAN_PY"
    fi
    for t in $TORCH_THREADS; do
      run "$model" "$side" "$t" --env "OMP_NUM_THREADS=$t" --env "OPENBLAS_NUM_THREADS=1" \
        --env "MKL_NUM_THREADS=$t" -- "$py" bench/torch_train.py "${targs[@]}" --threads "$t"
    done
  done
done

echo "== results (best epoch per side; torch at its faster thread setting)"
note_args=()
for n in "${notes[@]}"; do note_args+=(--note "$n"); done
"$PY" bench/summarize.py report "$manifest" --md "$md" "${note_args[@]}"
echo "raw logs: $resdir/"
