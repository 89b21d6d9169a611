#!/usr/bin/env bash
# Speed of one Game of Life training run of the full recipe (issue #4): n = 1,
# m = 1, 10,000 boards x 100 epochs = 125,000 steps of batch 8, Adam 1e-3, BCE,
# 32x32 toroidal boards, no early stop, one thread each. pare runs it as the
# study does (`pare life --no-early-stop`: evaluation on 1,000 boards and a
# checkpoint after every epoch); PyTorch runs bench/torch_train.py (evaluation
# after every epoch, no checkpoints) under Debian's torch 1.13
# (/usr/bin/python3) and, when bench/.venv exists, the current PyPI torch.
#
# Prints per side the training-loop seconds (all epochs, evaluation excluded),
# steps per second, the whole process's wall seconds (data generation and
# evaluation included) and the final test scores, then the ratios torch / pare.
# Both sides draw their own boards from seed 0 (different streams, same recipe).
#
# Usage (from anywhere): bash bench/life_speed.sh
# Environment:
#   EPOCHS=100 BOARDS=10000   the recipe (steps = EPOCHS * BOARDS / 8)
#   SKIP_BUILD=1              do not run `cmake --build build`
#   SKIP_TORCH_PYPI=1 / SKIP_TORCH_DEBIAN=1
#   TORCH_PYPI_PY=bench/.venv/bin/python   TORCH_DEBIAN_PY=/usr/bin/python3
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

EPOCHS="${EPOCHS:-100}"
BOARDS="${BOARDS:-10000}"
TORCH_PYPI_PY="${TORCH_PYPI_PY:-bench/.venv/bin/python}"
TORCH_DEBIAN_PY="${TORCH_DEBIAN_PY:-/usr/bin/python3}"
PY=/usr/bin/python3

if [ -z "${SKIP_BUILD:-}" ]; then cmake --build build -j2 >/dev/null; fi
work="$(mktemp -d /tmp/pare_life_speed.XXXXXX)"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }

# ---- pare ----
t0=$(now)
build/pare life --steps 1 --widths 1 --seeds 1 --examples "$BOARDS" --epochs "$EPOCHS" --batch 8 --lr 1e-3 \
  --no-early-stop --jobs 1 --out "$work/pare" --quiet >/dev/null
t1=$(now)
echo "{\"side\": \"pare $(git rev-parse --short HEAD)\", \"wall\": $(echo "$t1 - $t0" | bc)," \
  "\"result\": $(cat "$work/pare/n1_m1/seed0/result.json")}" | tr -d '\n' > "$work/pare.json"
echo >> "$work/pare.json"

# ---- torch ----
run_torch() {  # label python
  local label="$1" py="$2" out="$work/torch_$1.jsonl"
  local t0 t1
  t0=$(now)
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "$py" bench/torch_train.py --model life \
    --m 1 --steps 1 --boards "$BOARDS" --test-boards 1000 --epochs "$EPOCHS" --batch 8 --lr 1e-3 \
    --threads 1 --seed 0 > "$out" 2> "$work/torch_$1.err" || {
      echo "torch ($label) failed:" >&2; tail -5 "$work/torch_$1.err" >&2; return 0; }
  t1=$(now)
  echo "{\"side\": \"$label\", \"wall\": $(echo "$t1 - $t0" | bc), \"summary\": $(tail -1 "$out")}" > "$work/$1.json"
}
if [ -z "${SKIP_TORCH_DEBIAN:-}" ] && [ -x "$TORCH_DEBIAN_PY" ]; then run_torch debian "$TORCH_DEBIAN_PY"; fi
if [ -z "${SKIP_TORCH_PYPI:-}" ] && [ -x "$TORCH_PYPI_PY" ]; then run_torch pypi "$TORCH_PYPI_PY"; fi

# ---- report ----
"$PY" - "$work" "$EPOCHS" "$BOARDS" <<'EOF'
import json, os, sys
work, epochs, boards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
steps = epochs * ((boards + 7) // 8)
pare = json.load(open(os.path.join(work, "pare.json")))
r = pare["result"]
rows = [(pare["side"], r["train_seconds"], r["steps"], pare["wall"], r["test_accuracy"], r["test_exact"])]
torch = []
for label, name in (("debian", "torch {} (Debian)"), ("pypi", "torch {} (PyPI, bench/.venv)")):
    p = os.path.join(work, label + ".json")
    if not os.path.exists(p):
        continue
    t = json.load(open(p))
    s = t["summary"]
    row = (name.format(s["torch"]), sum(s["epoch_seconds"]), steps, t["wall"], s["test_accuracy"],
           s.get("test_boards_correct", float("nan")))
    rows.append(row)
    torch.append(row)
print(f"Game of Life n=1 m=1, full recipe: {boards} boards x {epochs} epochs = {steps} steps of batch 8, "
      "Adam 1e-3, one thread each, no early stop")
print(f"{'side':40} {'train loop s':>12} {'steps/s':>9} {'process wall s':>14} {'cells right':>11} {'boards right':>12}")
for name, loop, st, wall, acc, exact in rows:
    print(f"{name:40} {loop:12.2f} {st / loop:9.0f} {wall:14.2f} {100 * acc:10.3f}% {100 * exact:11.1f}%")
for name, loop, _, wall, _, _ in torch:
    print(f"{name}: {loop / rows[0][1]:.1f}x pare's training-loop time, {wall / rows[0][3]:.1f}x its process wall time "
          f"(target: pare at most 1/10)")
EOF
