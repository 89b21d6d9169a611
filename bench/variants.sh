#!/usr/bin/env bash
# Issue #6's delta figure: ten fine-tuned variants of one base kept as deltas.
# The base is `make demo`'s pruned LeNet-300-100 (runs/demo/pruned90); variant
# k is fine-tuned for EPOCHS on the training images of classes k and k+1 (mod
# 10), training only UPDATE of each weight (`pare train --from --update-fraction`),
# then stored with `pare delta` and rebuilt with `pare apply`. Prints each
# delta's bytes, the variant's and the rebuilt variant's test accuracy, and the
# total against the base's .pare file (float, and with 5-bit shared weights).
#
# Usage: bash bench/variants.sh   (after make demo)
# Environment: BASE=runs/demo/pruned90/model.bin EPOCHS=1 UPDATE=0.01 LR=1e-3 OUT=runs/variants
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BASE=${BASE:-runs/demo/pruned90/model.bin}
EPOCHS=${EPOCHS:-1}
UPDATE=${UPDATE:-0.01}
LR=${LR:-1e-3}
OUT=${OUT:-runs/variants}
pare=build/pare
[ -f "$BASE" ] || { echo "no base model $BASE: run make demo first" >&2; exit 1; }
mkdir -p "$OUT"
acc() { $pare eval "$1" --data fashion-mnist --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])'; }
$pare compress "$BASE" -o "$OUT/base.pare" --json > "$OUT/base.json"
$pare compress "$BASE" -o "$OUT/base5.pare" --share-bits 5 --json > "$OUT/base5.json"
echo "| variant | trained on classes | weights changed | delta bytes | variant accuracy | rebuilt accuracy |"
echo "|---|---|---|---|---|---|"
total=0
for k in 0 1 2 3 4 5 6 7 8 9; do
  c2=$(( (k + 1) % 10 ))
  v="$OUT/variant$k"
  $pare train --from "$BASE" --data fashion-mnist --train-classes "$k,$c2" --epochs "$EPOCHS" --batch 60 \
    --lr "$LR" --update-fraction "$UPDATE" --seed "$k" --out "$v" --overwrite --quiet >/dev/null
  d=$($pare delta "$BASE" "$v/model.bin" -o "$OUT/variant$k.pdelta" --json)
  $pare apply "$BASE" "$OUT/variant$k.pdelta" -o "$OUT/variant${k}_rebuilt.bin" >/dev/null
  a=$(acc "$v/model.bin"); b=$(acc "$OUT/variant${k}_rebuilt.bin")
  bytes=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes"])' "$d")
  changed=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["changed"])' "$d")
  total=$((total + bytes))
  python3 -c 'import sys; k,c,ch,by,a,b=sys.argv[1:]; print(f"| {k} | {c} | {ch} | {int(by):,} | {100*float(a):.2f} % | {100*float(b):.2f} % |")' \
    "$k" "$k,$c2" "$changed" "$bytes" "$a" "$b"
done
python3 - "$total" "$OUT/base.json" "$OUT/base5.json" <<'PY'
import json, sys
total = int(sys.argv[1])
base = json.load(open(sys.argv[2]))["file_bytes"]
base5 = json.load(open(sys.argv[3]))["file_bytes"]
print(f"\nten deltas: {total:,} bytes = {total / base:.2f}x the base .pare ({base:,} bytes, float) "
      f"and {total / base5:.2f}x the base with 5-bit shared weights ({base5:,} bytes); target <= 1.5x")
PY
