#!/usr/bin/env bash
# Issue #6's delta figure: ten fine-tuned variants of one base kept as deltas.
# The base is `make demo`'s pruned LeNet-300-100 (runs/demo/pruned90); variant
# k is fine-tuned for EPOCHS on the training images of classes k and k+1 (mod
# 10), training either only UPDATE of each weight (METHOD=sparse: `pare train
# --from --update-fraction`) or rank-RANK LoRA factors of each weight
# (METHOD=lora: `--lora-rank`), then stored with `pare delta` and rebuilt with
# `pare apply`. Prints each delta's bytes, the test accuracy on the variant's
# two classes of the base and of the variant, the variant's and the rebuilt
# variant's accuracy on all ten, and the total against the base's .pare file
# (float, and with 5-bit shared weights).
#
# Usage: bash bench/variants.sh   (after make demo)
# Environment: BASE=runs/demo/pruned90/model.bin EPOCHS=1 METHOD=sparse UPDATE=0.01
#              RANK=1 LR=1e-3 INT8=0 OUT=runs/variants (runs/variants-lora<RANK> with METHOD=lora)
#              INT8=1: `pare delta --int8` (differences, or LoRA factors, as int8)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BASE=${BASE:-runs/demo/pruned90/model.bin}
EPOCHS=${EPOCHS:-1}
METHOD=${METHOD:-sparse}
UPDATE=${UPDATE:-0.01}
RANK=${RANK:-1}
LR=${LR:-1e-3}
INT8=${INT8:-0}
delta_flags=(); [ "$INT8" = 1 ] && delta_flags=(--int8)
case "$METHOD" in
  sparse) tune=(--update-fraction "$UPDATE"); OUT=${OUT:-runs/variants} ;;
  lora) tune=(--lora-rank "$RANK"); OUT=${OUT:-runs/variants-lora$RANK} ;;
  *) echo "METHOD must be sparse or lora, got $METHOD" >&2; exit 2 ;;
esac
pare=build/pare
[ -f "$BASE" ] || { echo "no base model $BASE: run make demo first" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT/accuracies.txt"
acc() { $pare eval "$@" --data fashion-mnist --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])'; }
$pare compress "$BASE" -o "$OUT/base.pare" --json > "$OUT/base.json"
$pare compress "$BASE" -o "$OUT/base5.pare" --share-bits 5 --json > "$OUT/base5.json"
echo "| variant | trained on classes | values stored | delta bytes | on its classes: base | variant | rebuilt | all classes: variant | rebuilt |"
echo "|---|---|---|---|---|---|---|---|---|"
total=0
for k in 0 1 2 3 4 5 6 7 8 9; do
  c2=$(( (k + 1) % 10 ))
  v="$OUT/variant$k"
  $pare train --from "$BASE" --data fashion-mnist --train-classes "$k,$c2" --epochs "$EPOCHS" --batch 60 \
    --lr "$LR" "${tune[@]}" --seed "$k" --out "$v" --overwrite --quiet >/dev/null
  d=$($pare delta "$BASE" "$v/model.bin" -o "$OUT/variant$k.pdelta" "${delta_flags[@]}" --json)
  $pare apply "$BASE" "$OUT/variant$k.pdelta" -o "$OUT/variant${k}_rebuilt.bin" >/dev/null
  a=$(acc "$v/model.bin"); b=$(acc "$OUT/variant${k}_rebuilt.bin")
  own_base=$(acc "$BASE" --test-classes "$k,$c2"); own=$(acc "$v/model.bin" --test-classes "$k,$c2")
  own_b=$(acc "$OUT/variant${k}_rebuilt.bin" --test-classes "$k,$c2")
  bytes=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes"])' "$d")
  changed=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["changed"] + d.get("lora", {}).get("factor_values", 0))' "$d")
  total=$((total + bytes))
  echo "$own $own_b $a $b" >> "$OUT/accuracies.txt"
  python3 -c 'import sys; k,c,ch,by,ob,o,ob2,a,b=sys.argv[1:]; print(f"| {k} | {c} | {ch} | {int(by):,} | {100*float(ob):.2f} % | {100*float(o):.2f} % | {100*float(ob2):.2f} % | {100*float(a):.2f} % | {100*float(b):.2f} % |")' \
    "$k" "$k,$c2" "$changed" "$bytes" "$own_base" "$own" "$own_b" "$a" "$b"
done
python3 - "$total" "$OUT/base.json" "$OUT/base5.json" "$OUT/accuracies.txt" <<'PY'
import json, sys
total = int(sys.argv[1])
rows = [[float(x) for x in line.split()] for line in open(sys.argv[4])]
mean = [100 * sum(r[i] for r in rows) / len(rows) for i in range(4)]
print(f"\nmeans: on its classes {mean[0]:.2f} % (rebuilt {mean[1]:.2f} %), on all ten {mean[2]:.2f} % (rebuilt {mean[3]:.2f} %)")
base = json.load(open(sys.argv[2]))["file_bytes"]
base5 = json.load(open(sys.argv[3]))["file_bytes"]
print(f"ten deltas: {total:,} bytes = {total / base:.2f}x the base .pare ({base:,} bytes, float) "
      f"and {total / base5:.2f}x the base with 5-bit shared weights ({base5:,} bytes); target <= 1.5x")
PY
