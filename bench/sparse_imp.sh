#!/usr/bin/env bash
# Issue #5's training figures, side by side in one run:
#   1. the LeNet-300-100 training step (forward + backward + Adam, batch 60) at
#      90/95/98 % sparsity: dense vs masked-dense vs sparse, threads 1 and 2
#      (build/bench/sparse_step_bench; target: sparse >= 4x faster than dense
#      at 95 %);
#   2. a whole IMP run, `pare ticket` with the docs/tickets.md recipe (Adam
#      1.2e-3, batch 60, cosine, standardised inputs, 20 % per round, output
#      layer 10 %, rewind to init), ROUNDS pruning rounds after the dense round
#      0, EPOCHS per round, with --sparse auto and with --sparse off (target:
#      auto >= 2.5x cheaper in total seconds);
#   3. the same IMP run in PyTorch with torch.nn.utils.prune (bench/torch_imp.py),
#      the PyPI torch (bench/.venv, bench/setup_torch_venv.sh) and Debian's
#      torch 1.13 (/usr/bin/python3), at each of TORCH_THREADS (target: pare
#      auto >= 4x cheaper than the faster torch setting).
# Prints the step table, a per-round table (seconds, executed GFLOP, layer
# kinds, accuracy) and the totals with their ratios; everything is also in
# OUT (runs, raw JSON lines, report.txt).
#
# Usage (from anywhere): bash bench/sparse_imp.sh
# Environment:
#   ROUNDS=10 EPOCHS=2 THREADS=2 SEED=0
#   TORCH_THREADS="2 1"   thread settings tried for each torch (the faster is compared)
#   OUT=runs/sparse-imp   output directory (the pare runs are redone: --overwrite)
#   STEP_REPS=1000        steps timed per setting by sparse_step_bench (after 100 warm-up)
#   REPEATS=5             repeats of the whole set of runs (pare off, pare auto, then
#                         each torch at each thread setting), one set after the
#                         other, so that every side sees the same stretches of
#                         machine load (this VM has slow spells of minutes, in
#                         which a pare run takes 1.4x as long); the per-round
#                         table shows each round's fastest repeat, the ratios
#                         compare medians (and fastest) of whole-run totals
#   RUN_TIMEOUT=150       seconds per torch run (a run past it is killed; its rounds so far are kept)
#   SKIP_BUILD=1 SKIP_STEP=1 SKIP_PARE=1 SKIP_TORCH_PYPI=1 SKIP_TORCH_DEBIAN=1
#   TORCH_PYPI_PY=bench/.venv/bin/python   TORCH_DEBIAN_PY=/usr/bin/python3
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

ROUNDS="${ROUNDS:-10}"
EPOCHS="${EPOCHS:-2}"
THREADS="${THREADS:-2}"
SEED="${SEED:-0}"
TORCH_THREADS="${TORCH_THREADS:-2 1}"
OUT="${OUT:-runs/sparse-imp}"
STEP_REPS="${STEP_REPS:-1000}"
REPEATS="${REPEATS:-5}"
RUN_TIMEOUT="${RUN_TIMEOUT:-150}"
TORCH_PYPI_PY="${TORCH_PYPI_PY:-bench/.venv/bin/python}"
TORCH_DEBIAN_PY="${TORCH_DEBIAN_PY:-/usr/bin/python3}"
if command -v python3 >/dev/null 2>&1; then PY=python3; else PY=/usr/bin/python3; fi

mkdir -p "$OUT"
report="$OUT/report.txt"
: > "$OUT/runs.jsonl"  # one line per timed run: what ran, load before, wall seconds, exit status
exec > >(tee "$report") 2>&1

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
record() { # name status wall load command...
  local name="$1" status="$2" wall="$3" load="$4"; shift 4
  "$PY" -c 'import json,sys; print(json.dumps({"name":sys.argv[1],"status":int(sys.argv[2]),"wall_seconds":float(sys.argv[3]),"load_before":sys.argv[4],"command":sys.argv[5]}))' \
    "$name" "$status" "$wall" "$load" "$*" >> "$OUT/runs.jsonl"
}

echo "== issue #5: sparse training step and IMP run -> $OUT"
echo "   ROUNDS=$ROUNDS EPOCHS=$EPOCHS THREADS=$THREADS TORCH_THREADS='$TORCH_THREADS' SEED=$SEED"
echo "   $(date -Is)  git $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)')"
echo "   $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) logical CPUs; load average $(loadavg)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== make build"
  if ! make build > "$OUT/build.log" 2>&1; then
    tail -n 5 "$OUT/build.log" | sed 's/^/   /'
    echo "   make build FAILED; continuing with whatever build/ holds"
  fi
fi
if [ "${SKIP_TORCH_PYPI:-0}" != 1 ] && [ "$TORCH_PYPI_PY" = bench/.venv/bin/python ]; then
  bash bench/setup_torch_venv.sh > "$OUT/setup_torch_venv.log" 2>&1 ||
    echo "   bench/setup_torch_venv.sh FAILED (see $OUT/setup_torch_venv.log)"
  tail -n 1 "$OUT/setup_torch_venv.log" | sed 's/^/   /'
fi

# ---- 1. the training step
if [ "${SKIP_STEP:-0}" != 1 ]; then
  echo "== training step: build/bench/sparse_step_bench $STEP_REPS 100 1,2 0.9,0.95,0.98   (load $(loadavg))"
  if [ -x build/bench/sparse_step_bench ]; then
    load="$(loadavg)"
    t0=$(now)
    build/bench/sparse_step_bench "$STEP_REPS" 100 1,2 0.9,0.95,0.98 > "$OUT/step.txt" 2> "$OUT/step.err"
    st=$?
    record step "$st" "$(elapsed "$t0")" "$load" build/bench/sparse_step_bench "$STEP_REPS" 100 1,2 0.9,0.95,0.98
    grep -v '^{' "$OUT/step.txt"
    grep '"sparse_step_ratio"' "$OUT/step.txt" | head -n 1 | "$PY" -c \
      'import json,sys; r=json.loads(sys.stdin.read()); print("   --sparse auto on these masks (layer:density<crossover?kind):", r["auto"])'
    [ "$st" = 0 ] || { echo "   sparse_step_bench FAILED ($st):"; tail -n 3 "$OUT/step.err"; }
  else
    echo "   build/bench/sparse_step_bench missing (bench/ is built only when Google Benchmark is found)"
  fi
fi

# ---- 2 and 3. pare ticket (--sparse off and auto) and torch.nn.utils.prune, interleaved
recipe=(--model lenet300 --data fashion-mnist --batch 60 --optimizer adam --lr 1.2e-3
        --schedule cosine --normalize --epochs "$EPOCHS" --threads "$THREADS" --seed "$SEED")
torch_sides=()
for side in pypi debian; do
  if [ "$side" = pypi ]; then
    [ "${SKIP_TORCH_PYPI:-0}" = 1 ] && continue; py="$TORCH_PYPI_PY"
  else
    [ "${SKIP_TORCH_DEBIAN:-0}" = 1 ] && continue; py="$TORCH_DEBIAN_PY"
  fi
  if ! "$py" -c 'import torch' > /dev/null 2>&1; then
    echo "== torch-$side: $py has no torch; skipped"
    continue
  fi
  torch_sides+=("$side:$py")
  rm -f "$OUT"/torch-"$side"-*.jsonl "$OUT"/torch-"$side"-*.err  # this run's replace them
done
[ "${SKIP_PARE:-0}" != 1 ] && rm -rf "$OUT"/pare-off-* "$OUT"/pare-auto-*
for k in $(seq 1 "$REPEATS"); do
  if [ "${SKIP_PARE:-0}" != 1 ]; then
    for mode in off auto; do
      name="pare-$mode-$k"
      cmd=(build/pare ticket "${recipe[@]}" --rounds "$ROUNDS" --rate 0.2 --output-rate 0.1
           --sparse "$mode" --out "$OUT/$name" --overwrite --quiet)
      echo "== repeat $k/$REPEATS: pare --sparse $mode   (load $(loadavg))"
      [ "$k" = 1 ] && echo "   ${cmd[*]}"
      load="$(loadavg)"
      t0=$(now)
      "${cmd[@]}" > "$OUT/$name.out" 2> "$OUT/$name.err"
      st=$?
      wall=$(elapsed "$t0")
      record "$name" "$st" "$wall" "$load" "${cmd[@]}"
      printf '   exit %s, %.1f s wall\n' "$st" "$wall"
      [ "$st" = 0 ] || tail -n 3 "$OUT/$name.err" | sed 's/^/   /'
    done
  fi
  for sp in ${torch_sides[@]+"${torch_sides[@]}"}; do
    side="${sp%%:*}" py="${sp#*:}"
    for t in $TORCH_THREADS; do
      name="torch-$side-t$t-$k"
      cmd=("$py" bench/torch_imp.py --rounds "$ROUNDS" --epochs "$EPOCHS" --threads "$t" --seed "$SEED")
      echo "== repeat $k/$REPEATS: torch-$side, $t thread(s)   (load $(loadavg))"
      [ "$k" = 1 ] && echo "   OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t OPENBLAS_NUM_THREADS=1 ${cmd[*]}"
      load="$(loadavg)"
      t0=$(now)
      OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t OPENBLAS_NUM_THREADS=1 timeout "$RUN_TIMEOUT" "${cmd[@]}" \
        > "$OUT/$name.jsonl" 2> "$OUT/$name.err"
      st=$?
      wall=$(elapsed "$t0")
      record "$name" "$st" "$wall" "$load" "${cmd[@]}"
      printf '   exit %s%s, %.1f s wall\n' "$st" "$([ "$st" = 124 ] && echo " (timed out after ${RUN_TIMEOUT} s)")" "$wall"
    done
  done
done

# ---- tables
echo "== results   (load now $(loadavg))"
"$PY" - "$OUT" "$ROUNDS" "$EPOCHS" "$THREADS" "$REPEATS" <<'EOF'
import glob, json, os, sys

import statistics
out, rounds, epochs, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def jl(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip().startswith("{")]
    except OSError:
        return []

runs = {r["name"]: r for r in jl(os.path.join(out, "runs.jsonl"))}

def pare_run(name):
    d = os.path.join(out, name)
    rows = {}
    for r in jl(os.path.join(d, "log.jsonl")):
        if r.get("kind") != "ticket":
            continue
        lg = jl(os.path.join(d, "round_%d" % r["round"], "ticket", "log.jsonl"))
        end = [l for l in lg if l.get("event") == "end"]
        disp = [l for l in lg if l.get("event") == "sparse_dispatch"]
        kinds = "dense"
        cross = None
        if disp:
            kinds = "/".join({"sparse": "S", "masked-dense": "M", "dense": "D"}[x["kind"]] for x in disp[-1]["layers"])
            cross = [x.get("crossover") for x in disp[-1]["layers"]]
        rows[r["round"]] = dict(
            density=r["density"], acc=r["test_accuracy"], seconds=r["seconds"],
            exec_gflop=(end[-1].get("executed_flops", 0) / 1e9) if end else None,
            gflop=r["flops"] / 1e9, kinds=kinds, crossover=cross,
            wall=end[-1].get("seconds") if end else None)
    return rows

def torch_side(name):
    lines = jl(os.path.join(out, name + ".jsonl"))
    rows = {l["round"]: l for l in lines if l.get("event") == "round"}
    summ = [l for l in lines if l.get("event") == "summary"]
    return rows, (summ[-1] if summ else None)

def total(rows):
    return sum(v["seconds"] for v in rows.values()) if len(rows) == rounds + 1 else None

pare = {m: [(k, pare_run("pare-%s-%d" % (m, k))) for k in range(1, repeats + 1)] for m in ("off", "auto")}
pare = {m: [(k, rows) for k, rows in v if rows] for m, v in pare.items()}

def fastest_per_round(runs_):
    best = {}
    for _, rows in runs_:
        for r, v in rows.items():
            if r not in best or v["seconds"] < best[r]["seconds"]:
                best[r] = v
    return best

off, auto = fastest_per_round(pare["off"]), fastest_per_round(pare["auto"])
# torch[setting] = [(k, rows, summary, name)], setting = "torch-<side>-t<threads>"
torch = {}
for p in sorted(glob.glob(os.path.join(out, "torch-*-t*-*.jsonl"))):
    name = os.path.basename(p)[:-len(".jsonl")]
    setting, k = name.rsplit("-", 1)
    rows, summ = torch_side(name)
    torch.setdefault(setting, []).append((int(k), rows, summ, name))

def torch_fastest_per_round(runs_):
    best = {}
    for _, rows, _, _ in runs_:
        for r, v in rows.items():
            if r not in best or v["train_seconds"] < best[r]["train_seconds"]:
                best[r] = v
    return best

def fmt(v, f="%.2f"):
    return "-" if v is None else f % v

# Per round.
tnames = list(torch)
print("\nIMP per round: LeNet-300-100, Fashion-MNIST, %d epoch(s) per round, pare %d thread(s);"
      " seconds = the round's training loop (evaluation excluded); every column: the fastest of %d repeats of each round"
      % (epochs, threads, repeats))
print("layer kinds (pare auto): fc1/fc2/fc3, D dense (no mask), M masked-dense, S sparse\n")
hdr = ["round", "density", "kinds", "off s", "auto s", "off/auto", "off GFLOP exec", "auto GFLOP exec",
       "acc off", "acc auto"] + ["%s s" % n.replace("torch-", "") for n in tnames] + \
      ["acc %s" % n.replace("torch-", "") for n in tnames]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for r in range(rounds + 1):
    o, a = off.get(r), auto.get(r)
    row = [str(r), fmt((a or o or {}).get("density"), "%.4f"), (a or {}).get("kinds", "-"),
           fmt(o and o["seconds"]), fmt(a and a["seconds"]),
           fmt(o and a and o["seconds"] / a["seconds"], "%.2fx"),
           fmt(o and o["exec_gflop"], "%.1f"), fmt(a and a["exec_gflop"], "%.1f"),
           fmt(o and 100 * o["acc"], "%.2f %%"), fmt(a and 100 * a["acc"], "%.2f %%")]
    for n in tnames:
        t = torch_fastest_per_round(torch[n]).get(r)
        row.append(fmt(t and t["train_seconds"]))
    for n in tnames:
        t = torch_fastest_per_round(torch[n]).get(r)
        row.append(fmt(t and 100 * t["test_accuracy"], "%.2f %%"))
    print("| " + " | ".join(row) + " |")

cross = next((v["crossover"] for k, v in sorted(auto.items()) if v["crossover"]), None)
if cross:
    print("\nmeasured crossover densities (pare auto, training, batch 60, %d threads): fc1 %s, fc2 %s, fc3 %s"
          % (threads, *[fmt(c, "%.3f") for c in cross]))

# Totals.
print("\nTotals (%d rounds after the dense round 0, %d epoch(s) each)\n" % (rounds, epochs))
print("| run | rounds done | training s (sum of rounds) | process wall s | final density | final acc |")
print("|---|---|---|---|---|---|")
ptot = {}  # mode -> [(training s, wall s) of each finished repeat]
for mode in ("off", "auto"):
    for k, rows in pare[mode]:
        key = "pare-%s-%d" % (mode, k)
        t = total(rows)
        if t:
            ptot.setdefault(mode, []).append((t, runs.get(key, {}).get("wall_seconds")))
        last = rows.get(max(rows)) if rows else None
        print("| pare --sparse %s, repeat %d | %d | %s | %s | %s | %s |" % (mode, k, len(rows), fmt(t),
              fmt(runs.get(key, {}).get("wall_seconds"), "%.1f"),
              fmt(last and last["density"], "%.4f"), fmt(last and 100 * last["acc"], "%.2f %%")))
    rows = fastest_per_round(pare[mode])
    if len(rows) == rounds + 1:
        print("| pare --sparse %s, fastest repeat of each round | %d | %s | | | |" % (mode, len(rows), fmt(total(rows))))
ttot = {}  # setting -> [total of each finished repeat]
for setting in tnames:
    for k, rows, summ, n in sorted(torch[setting]):
        t = summ["total_train_seconds"] if summ else None
        if t:
            ttot.setdefault(setting, []).append(t)
        last = rows.get(max(rows)) if rows else None
        st = runs.get(n, {}).get("status")
        label = "%s (torch %s), repeat %d" % (setting, summ["torch"], k) if summ else "%s, repeat %d" % (setting, k)
        print("| %s | %d%s | %s | %s | %s | %s |" % (label, len(rows), " (timed out)" if st == 124 else
              (" (failed)" if st not in (0, None) else ""), fmt(t),
              fmt(runs.get(n, {}).get("wall_seconds"), "%.1f"),
              fmt(last and last["density"], "%.4f"), fmt(last and 100 * last["test_accuracy"], "%.2f %%")))

fastest = {m: min(t for t, _ in v) for m, v in ptot.items()}
a, o = fastest.get("auto"), fastest.get("off")
print()
if a and o:
    print("pare --sparse off / auto, fastest total of each (training s): %.2fx  (target 2.5x: %s)"
          % (o / a, "met" if o / a >= 2.5 else "NOT met"))
    mo = statistics.median(t for t, _ in ptot["off"]); ma = statistics.median(t for t, _ in ptot["auto"])
    print("pare --sparse off / auto, median total of each (training s): %.2fx" % (mo / ma))
    if len(off) == len(auto) == rounds + 1:
        print("pare --sparse off / auto, sum of each round's fastest repeat: %.2fx" % (total(off) / total(auto)))
    wo = [w for _, w in ptot["off"] if w]; wa = [w for _, w in ptot["auto"] if w]
    if wa and wo:
        print("pare --sparse off / auto (process wall, fastest of each): %.2fx" % (min(wo) / min(wa)))
    dens = [(auto[r]["density"]) for r in range(rounds + 1) if r in auto]
    print("(bound: a step costing exactly its density would make this run %.2fx cheaper: sum of densities %.2f of %d rounds)"
          % (len(dens) / sum(dens), sum(dens), len(dens)))
for side in ("pypi", "debian"):
    settings = [n for n in tnames if n.startswith("torch-%s-" % side)]
    # The faster thread setting by its median total (all repeats finished).
    cands = [(statistics.median(ttot[n]), n) for n in settings
             if n in ttot and len(ttot[n]) == len(torch[n])]
    if a and cands:
        med, n = min(cands)
        ma = statistics.median(t for t, _ in ptot["auto"])
        print("torch %s (faster: %s, median %.1f s of %d, fastest %.1f s) / pare auto (training s):"
              " %.2fx median against median, %.2fx fastest against fastest  (target 4x: %s)"
              % (side, n, med, len(ttot[n]), min(ttot[n]), med / ma, min(ttot[n]) / a,
                 "met" if med / ma >= 4 else "NOT met"))
    for n in settings:
        for k, rows, summ, name in sorted(torch[n]):
            if summ or not rows or not a:
                continue
            s_ = sum(v["train_seconds"] for v in rows.values())
            pa = sum(auto[r]["seconds"] for r in rows if r in auto)  # fastest repeat of each round
            print("%s did not finish: rounds 0..%d took %.1f s, pare auto %.1f s for the same rounds (%.2fx)"
                  % (name, max(rows), s_, pa, s_ / pa if pa else float("nan")))
EOF
echo "raw: $OUT/ (report.txt, step.txt, pare-off-K/, pare-auto-K/, torch-SIDE-tT-K.jsonl, runs.jsonl)"
