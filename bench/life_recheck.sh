#!/usr/bin/env bash
# Re-checks every solved run of a Life study (pare life) on a harder certificate:
# N fresh boards at the critical density D (default 5,000 at 0.38), every cell of
# every board. Prints one line per solved run and a count per (n, m) cell.
# Usage: bash bench/life_recheck.sh [STUDY_DIR]    Environment: BOARDS=5000 DENSITY=0.38
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
STUDY=${1:-runs/life-study}
BOARDS=${BOARDS:-5000}
DENSITY=${DENSITY:-0.38}
pare=${PARE:-build/pare}
out=$(mktemp)
for f in "$STUDY"/n*_m*/seed*/result.json; do
  d=$(dirname "$f")
  grep -q '"success": true' "$f" || continue
  cell=$(basename "$(dirname "$d")"); n=${cell#n}; n=${n%%_*}
  exact=$($pare eval "$d/model.bin" --data life --life-steps "$n" --density "$DENSITY" --examples 1 \
            --test-examples "$BOARDS" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["exact"])')
  echo "$cell $(basename "$d") $exact" | tee -a "$out"
done
echo "solved runs still right on all $BOARDS boards at density $DENSITY, per cell:"
awk '{c[$1]++; if ($3 == 1.0) s[$1]++} END {for (k in c) print k, s[k] + 0, "of", c[k]}' "$out" | sort -V
rm -f "$out"
