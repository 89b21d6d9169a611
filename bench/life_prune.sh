#!/usr/bin/env bash
# The pruning extension of the Game of Life study (issue #4, docs/life.md):
# for each net in NETS, train the dense life net of (n, m, seed) until it
# solves (every cell of every one of 1,000 test boards right), prune it
# iteratively by magnitude with and without rewinding as far as it still
# solves (when the single smallest weight cannot go: up to CHANNELS whole
# hidden channels, then ALTERNATIVES further single weights, docs/life_prune.md),
# and, where TRIES > 0, run the ticket test (the rewound ticket vs
# its mask from fresh inits vs the m = 1 net from scratch).
#
# NETS lists n:m:seed:score:tries. Each net is one `pare life-prune` study
# in its own directory under OUT (named by its settings), so an interrupted
# bench continues where it stopped: trainings found on disk are skipped.
# The tables go to OUT/summary.md; each study's full report (every
# training, the ticket test, the filters of the smallest nets) is its
# results.md.
#
# Usage: bash bench/life_prune.sh
# Environment: NETS="1:8:0:lamp:16 1:8:0:magnitude:0 1:4:0:lamp:0 2:8:1:lamp:8"
#              EPOCHS=30 ROUND_EPOCHS=8 MAX_TRAININGS=30 TEST_EPOCHS=20 JOBS=2
#              CHANNELS=4 ALTERNATIVES=3 (0 0: the search before the end candidates)
#              OUT=runs/life-prune SKIP_BUILD=1 PARE=build/pare
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NETS=${NETS:-1:8:0:lamp:16 1:8:0:magnitude:0 1:4:0:lamp:0 2:8:1:lamp:8}
EPOCHS=${EPOCHS:-30}
ROUND_EPOCHS=${ROUND_EPOCHS:-8}
MAX_TRAININGS=${MAX_TRAININGS:-30}
TEST_EPOCHS=${TEST_EPOCHS:-20}
JOBS=${JOBS:-2}
CHANNELS=${CHANNELS:-4}
ALTERNATIVES=${ALTERNATIVES:-3}
OUT=${OUT:-runs/life-prune}
[ -n "${SKIP_BUILD:-}" ] || make build >/dev/null
pare=${PARE:-build/pare}
mkdir -p "$OUT"

dirs=()
for net in $NETS; do
  IFS=: read -r n m seed score tries <<<"$net"
  dir="$OUT/n${n}_m${m}_seed${seed}_${score}"
  dirs+=("$dir")
  echo "== n=$n m=$m seed=$seed score=$score tries=$tries -> $dir" >&2
  # Exit code 2: the dense net did not solve; the study records that and
  # the bench goes on.
  "$pare" life-prune --steps "$n" --width "$m" --seed "$seed" --score "$score" --tries "$tries" \
    --epochs "$EPOCHS" --round-epochs "$ROUND_EPOCHS" --max-trainings "$MAX_TRAININGS" \
    --test-epochs "$TEST_EPOCHS" --channels "$CHANNELS" --alternatives "$ALTERNATIVES" --jobs "$JOBS" --out "$dir" --quiet >/dev/null || [ $? -eq 2 ]
done

python3 - "$OUT/summary.md" "${dirs[@]}" <<'PY'
import json, sys
out, dirs = sys.argv[1], sys.argv[2:]
rows, tickets = [], []
for d in dirs:
    r = json.load(open(d + "/results.json"))
    s, dense = r["settings"], r["dense"]
    head = f"| {s['n']} | {s['m']} | {s['seed']} | {s['score']} |"
    if not dense["success"]:
        rows.append(f"{head} dense net not solved | | | | | | | |")
        continue
    for x in r["searches"]:
        sm = x["smallest"]
        rows.append(f"{head} {x['mode']} | {x['rounds']} / {x['trainings']} | {sm['weights_alive']} | "
                    f"{sm['live_weights']} + {sm['live_biases']} = {sm['parameters']} | {sm['architecture']} | "
                    f"{sm['dense_parameters']} | {100 * x['verify_exact']:.1f} % | {x['stopped_because']} |")
    for a in r["ticket_test"]:
        lo, hi = a["ci95"]
        tickets.append(f"| {s['n']} | {s['m']} | {s['seed']} | {s['score']} | {a['arm']} | {a['parameters']} | "
                       f"{a['successes']} / {a['runs']} | {100 * a['success_rate']:.1f} % | "
                       f"{100 * lo:.1f} - {100 * hi:.1f} % |")
with open(out, "w") as f:
    f.write("# Pruning solved life nets\n\nMinimal nets: 25 parameters (n = 1), 48 (n = 2).\n\n"
            "| n | m | seed | score | mode | rounds / trainings | weights alive | live weights + biases = parameters "
            "| dense architecture | dense parameters | fresh boards right | stopped because |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    f.write("\n".join(rows) + "\n")
    if tickets:
        f.write("\n## Ticket test\n\n| n | m | seed | score | arm | parameters | solved / runs | success rate | 95 % CI |\n"
                "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(tickets) + "\n")
print(open(out).read())
PY
