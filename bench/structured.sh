#!/usr/bin/env bash
# Structured pruning of LeNet-300-100 to half its hidden neurons (L1 norm):
# accuracy of the dense net, of the shrunk net as cut, and after a short
# fine-tune; then bytes and forward time, dense vs shrunk (structured_bench).
# Needs the dense run of bench/tickets.sh (runs/tickets/seed<S>/dense).
# Usage: bash bench/structured.sh      Environment: SEED=0 OUT=runs/tickets THREADS=2 FT_EPOCHS=3
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SEED=${SEED:-0}
OUT=${OUT:-runs/tickets}
THREADS=${THREADS:-2}
FT_EPOCHS=${FT_EPOCHS:-3}
pare=${PARE:-build/pare}
d="$OUT/seed$SEED"
dense="$d/dense/model.bin"
[ -f "$dense" ] || { echo "no $dense: run bench/tickets.sh first" >&2; exit 1; }
common=(--from "$dense" --data fashion-mnist --structured --keep 0.5 --threads "$THREADS" --json)
cut=$($pare prune "${common[@]}" --out "$d/structured_keep50" | tail -1)
ft=$($pare prune "${common[@]}" --train --epochs "$FT_EPOCHS" --batch 60 --optimizer adam --lr 1.2e-4 \
      --schedule cosine --out "$d/structured_keep50_ft" | tail -1)
dense_acc=$($pare eval "$dense" --data fashion-mnist --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')
python3 - "$dense_acc" "$cut" "$ft" "$FT_EPOCHS" "$dense" <<'PY'
import json, os, sys
dense, cut, ft, ep = float(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
dense_bytes = os.path.getsize(sys.argv[5])
print("| LeNet-300-100 | parameters | model file bytes | test accuracy | vs dense |")
print("|---|---|---|---|---|")
print("| dense | 266,610 | %s | %.2f %% | |" % (format(dense_bytes, ","), 100 * dense))
for name, r in (("half the hidden neurons, as cut", cut), ("the same, fine-tuned %s epochs (Adam 1.2e-4)" % ep, ft)):
    print("| %s | %s | %s | %.2f %% | %+.2f |" % (name, format(r["parameters"], ","), format(r["model_bytes"], ","),
          100 * r["test_accuracy"], 100 * (r["test_accuracy"] - dense)))
PY
echo
build/bench/structured_bench "$dense" 0.5
