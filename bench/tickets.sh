#!/usr/bin/env bash
# The ticket study of docs/tickets.md: LeNet-300-100 on Fashion-MNIST with
# the engine's recipe (Adam 1.2e-3, batch 60, cosine decay, standardised
# inputs, EPOCHS per run), for each seed:
#   dense      pare train
#   imp        pare ticket: 20 % per round (output 10 %), rewind to init,
#              ROUNDS rounds, with the reinit and random-mask controls
#   snip, grasp, synflow, random, magnitude-at-init
#              pare prune --criterion C --sparsity S --train  (S in SPARSITIES)
#   gmp, set, rigl
#              pare train --sparse-training M --sparsity S
#   rigl2x     RigL with twice the epochs (Evci et al.'s RigL_2x)
# Writes every run under OUT (default runs/tickets) and the tables to
# OUT/tables.md (bench/tickets_table.py). Runs already finished are skipped,
# so an interrupted study continues where it stopped.
#
# Usage: bash bench/tickets.sh
# Environment: SEEDS="0" EPOCHS=10 ROUNDS=18 SPARSITIES="0.9 0.98" THREADS=2
#              OUT=runs/tickets SKIP_BUILD=1 PARE=build/pare (a copy keeps a long study on one binary)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SEEDS=${SEEDS:-0}
EPOCHS=${EPOCHS:-10}
ROUNDS=${ROUNDS:-18}
SPARSITIES=${SPARSITIES:-0.9 0.98}
THREADS=${THREADS:-2}
OUT=${OUT:-runs/tickets}
[ -n "${SKIP_BUILD:-}" ] || make build >/dev/null
pare=${PARE:-build/pare}
recipe_without_epochs=(--model lenet300 --data fashion-mnist --batch 60 --optimizer adam --lr 1.2e-3
                       --schedule cosine --normalize --threads "$THREADS" --quiet)
recipe=("${recipe_without_epochs[@]}" --epochs "$EPOCHS")
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

for seed in $SEEDS; do
  d="$OUT/seed$seed"
  mkdir -p "$d"
  if [ ! -f "$d/dense/log.jsonl" ] || ! grep -q '"event":"end"' "$d/dense/log.jsonl"; then
    log "seed $seed: dense"
    $pare train "${recipe[@]}" --seed "$seed" --out "$d/dense" --overwrite >/dev/null
  fi
  log "seed $seed: imp ($ROUNDS rounds, controls)"
  $pare ticket "${recipe[@]}" --seed "$seed" --rounds "$ROUNDS" --rate 0.2 --output-rate 0.1 \
    --controls --out "$d/imp" >/dev/null
  for s in $SPARSITIES; do
    for c in snip grasp synflow random magnitude; do
      log "seed $seed: $c at $s"
      $pare prune "${recipe[@]}" --seed "$seed" --criterion "$c" --sparsity "$s" --train \
        --out "$d/$c-$s" >/dev/null
    done
    for m in gmp set rigl rigl2x; do
      if [ ! -f "$d/$m-$s/log.jsonl" ] || ! grep -q '"event":"end"' "$d/$m-$s/log.jsonl"; then
        log "seed $seed: $m at $s"
        epochs=$EPOCHS
        [ "$m" = rigl2x ] && epochs=$((2 * EPOCHS))
        $pare train "${recipe_without_epochs[@]}" --epochs "$epochs" --seed "$seed" --sparse-training "${m%2x}" \
          --sparsity "$s" --out "$d/$m-$s" --overwrite >/dev/null
      fi
    done
  done
done
python3 bench/tickets_table.py "$OUT" | tee "$OUT/tables.md"
