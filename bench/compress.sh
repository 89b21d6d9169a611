#!/usr/bin/env bash
# Issue #6's compression figure on Fashion-MNIST (MODEL=lenet300, the default,
# or lenet5): the dense net and lottery tickets (IMP, the docs/tickets.md
# recipe, no controls) written as .pare files (`pare compress`) as float, int8
# per channel and k-bit shared weights, each evaluated from the file
# (`pare eval`), with the ratio to the fp32 dense weights.
#
# Usage: bash bench/compress.sh
# Environment: MODEL=lenet300 SEED=0 EPOCHS=10 ROUNDS=15 THREADS=2 OUT=runs/compress-MODEL SKIP_BUILD=1
#              TICKET_FLAGS="--layer-rate conv2d1.weight=0.1 ..." (extra `pare ticket` flags)
#              TICKET_DIR=<an existing `pare ticket` run to reuse>
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MODEL=${MODEL:-lenet300}
SEED=${SEED:-0}
EPOCHS=${EPOCHS:-10}
ROUNDS=${ROUNDS:-15}
THREADS=${THREADS:-2}
OUT=${OUT:-runs/compress-$MODEL}
[ -n "${SKIP_BUILD:-}" ] || make build >/dev/null
pare=build/pare
mkdir -p "$OUT"
recipe=(--model "$MODEL" --data fashion-mnist --batch 60 --optimizer adam --lr 1.2e-3 --schedule cosine
        --normalize --threads "$THREADS" --epochs "$EPOCHS" --seed "$SEED" --quiet)
ticket=${TICKET_DIR:-$OUT/ticket}
if [ -z "${TICKET_DIR:-}" ]; then
  echo "[$(date +%T)] IMP: $ROUNDS rounds of 20 % (output layer 10 %), $EPOCHS epochs each" >&2
  # shellcheck disable=SC2086
  $pare ticket "${recipe[@]}" --rounds "$ROUNDS" --rate 0.2 --output-rate 0.1 ${TICKET_FLAGS:-} \
    --out "$ticket" >/dev/null
fi
accuracy() { $pare eval "$1" --data fashion-mnist --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])'; }
dense_acc=$(accuracy "$ticket/round_0/ticket/model.bin")
echo "$MODEL, Fashion-MNIST, seed $SEED: dense test accuracy $dense_acc" >&2
echo "| model | weights kept | storage | file bytes | smaller than fp32 dense | test accuracy | vs dense |"
echo "|---|---|---|---|---|---|---|"
for r in 0 $(seq 7 2 "$ROUNDS"); do
  m="$ticket/round_$r/ticket/model.bin"
  [ -f "$m" ] || continue
  for storage in "float" "int8" "shared 6" "shared 5" "shared 4"; do
    case "$storage" in
      float) flags=() ;;
      int8) flags=(--int8) ;;
      shared*) flags=(--share-bits "${storage#shared }") ;;
    esac
    f="$OUT/round${r}_${storage// /}.pare"
    j=$($pare compress "$m" -o "$f" "${flags[@]}" --json)
    acc=$(accuracy "$f")
    python3 - "$r" "$storage" "$j" "$acc" "$dense_acc" <<'PY'
import json, sys
r, storage, j, acc, dense = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
kept = sum(t["kept"] for t in j["tensors"] if len(t["dims"]) > 1)
total = sum(t["numel"] for t in j["tensors"] if len(t["dims"]) > 1)
bits = "" if storage in ("float", "int8") else " bits"
print(f"| round {r} | {100 * kept / total:.2f} % | {storage}{bits} | {j['file_bytes']:,} | {j['ratio']:.1f}x | "
      f"{100 * acc:.2f} % | {100 * (acc - dense):+.2f} |")
PY
  done
done
