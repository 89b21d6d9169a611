#!/usr/bin/env bash
# Codebook fine-tuning (issue #6, Deep Compression section 3.2) on
# Fashion-MNIST: a saved model written with k-bit shared weights, with and
# without `--finetune-epochs`, each file evaluated from the .pare (`pare eval`).
# Prints a markdown table: storage, fine-tuning, file bytes, test accuracy and
# the change against the model as saved (float weights).
#
# Usage: bash bench/codebook_finetune.sh   (after `make demo`: runs/demo/pruned90)
# Environment: MODEL_FILE=runs/demo/pruned90/model.bin BITS="2 3 5" EPOCHS=3
#              FT_FLAGS="" (extra recipe flags, e.g. "--lr 3e-4 --schedule cosine")
#              OUT=runs/codebook-finetune PARE=build/pare (threads: the cores the process may use)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MODEL_FILE=${MODEL_FILE:-runs/demo/pruned90/model.bin}
BITS=${BITS:-2 3 5}
EPOCHS=${EPOCHS:-3}
OUT=${OUT:-runs/codebook-finetune}
PARE=${PARE:-build/pare}
mkdir -p "$OUT"
accuracy() { $PARE eval "$1" --data fashion-mnist --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])'; }
base=$(accuracy "$MODEL_FILE")
echo "$MODEL_FILE: test accuracy $base (float weights)" >&2
echo "| storage | codebook fine-tuning | file bytes | test accuracy | vs float weights |"
echo "|---|---|---|---|---|"
row() {  # storage, fine-tuning label, .pare file
  local acc bytes
  acc=$(accuracy "$3")
  bytes=$(stat -c %s "$3")
  python3 -c 'import sys; s, ft, b, a, base = sys.argv[1:]; a, base = float(a), float(base)
print(f"| {s} | {ft} | {int(b):,} | {100 * a:.2f} % | {100 * (a - base):+.2f} |")' "$1" "$2" "$bytes" "$acc" "$base"
}
$PARE compress "$MODEL_FILE" -o "$OUT/float.pare" --json >/dev/null
row "float" "-" "$OUT/float.pare"
for k in $BITS; do
  $PARE compress "$MODEL_FILE" -o "$OUT/shared$k.pare" --share-bits "$k" --json >/dev/null
  row "shared $k bits" "none" "$OUT/shared$k.pare"
  # shellcheck disable=SC2086
  $PARE compress "$MODEL_FILE" -o "$OUT/shared${k}_ft.pare" --share-bits "$k" --finetune-epochs "$EPOCHS" \
    --data fashion-mnist ${FT_FLAGS:-} > "$OUT/shared${k}_ft.log"
  row "shared $k bits" "$EPOCHS epochs" "$OUT/shared${k}_ft.pare"
done
