#!/usr/bin/env bash
# Browser test of pare report (issue #8): real runs of pare on a small CSV task
# (train, prune + fine-tune, compress, ticket, a tiny Life study) plus one run
# log carrying the cost ledger, written into one report; headless Chromium
# (Debian's chromium) loads the file from disk with the network cut off, and
# the page's own record (report_page.js writes it on <body>) must say that
# every chart pare report listed was drawn, with no uncaught error or
# console.error. A screenshot of the whole page is kept: WORK_DIR/report.png.
#
# Usage: report_browser_test.sh PARE_BINARY WORK_DIR
set -euo pipefail
pare=$1
work=$2
mkdir -p "$work"
work="$(cd "$work" && pwd)"
runs="$work/runs"
rm -rf "$runs" "$work/profile" "$work/report.html" "$work/report.png" && mkdir -p "$runs"

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
  echo "FAIL: chromium is not installed (make deps installs Debian's chromium)" >&2
  exit 1
fi

# Data: points in the square, label 1 above the diagonal; a 2-16-2 MLP.
for split in train:512:1 test:256:2; do
  IFS=: read -r name rows seed <<<"$split"
  awk -v rows="$rows" -v seed="$seed" 'BEGIN { srand(seed); print "x,y,label";
    for (i = 0; i < rows; i++) { x = 2 * rand() - 1; y = 2 * rand() - 1; printf "%.6f,%.6f,%d\n", x, y, (x + y > 0) } }' \
    >"$runs/$name.csv"
done
echo '{"name": "mlp", "input": [2], "layers": [{"type": "linear", "out": 16}, {"type": "relu"}, {"type": "linear", "out": 2}]}' \
  >"$runs/mlp.json"
data=(--data "$runs/train.csv" --test "$runs/test.csv")

"$pare" train --model "$runs/mlp.json" "${data[@]}" --epochs 4 --batch 32 --threads 1 --out "$runs/dense" --quiet
"$pare" prune --from "$runs/dense/model.bin" "${data[@]}" --criterion magnitude --sparsity 0.75 --train \
  --epochs 2 --batch 32 --threads 1 --out "$runs/pruned" --quiet
"$pare" compress "$runs/pruned/model.bin" -o "$runs/pruned.pare" --share-bits 4 >/dev/null
"$pare" eval "$runs/pruned.pare" "${data[@]}" --json >"$runs/pruned.pare.eval.json"
"$pare" ticket --model "$runs/mlp.json" "${data[@]}" --epochs 2 --batch 32 --rounds 3 --threads 1 \
  --out "$runs/ticket" --quiet >/dev/null
"$pare" life --steps 1 --widths 1,2 --seeds 2 --examples 64 --test-examples 16 --epochs 1 --board-size 8 \
  --jobs 1 --out "$runs/life" --quiet >/dev/null
# A run whose log carries the cost ledger (its fields as the ledger writes them):
# the energy chart and the measured/estimated labels of the cost table.
mkdir -p "$runs/ledger"
cat >"$runs/ledger/log.jsonl" <<'JSON'
{"event":"start","model":"mlp","sparsity":0.0,"sparse_training":null}
{"event":"epoch","epoch":1,"train_loss":0.52,"test_loss":0.41,"test_accuracy":0.9}
{"event":"epoch","epoch":2,"train_loss":0.31,"test_loss":0.28,"test_accuracy":0.94}
{"event":"end","test_accuracy":0.94,"sparsity":0.0,"flops":2.1e7,"seconds":0.2,"cost":{"flops":2.1e7,"executed_flops":2.1e7,"seconds":0.2,"cpu_seconds":0.35,"peak_rss_bytes":52000000,"joules":3.1,"energy":{"method":"rapl-package","measured":true,"detail":"package-0 counter, scaled to this process's share of CPU time"},"co2e_grams":0.0004,"grid_g_per_kwh":475,"pue":1.1,"money":0.00001,"currency":"EUR","price_per_core_hour":0.04}}
JSON

summary=$("$pare" report "$runs" -o "$work/report.html" --title "pare report: browser test <&>" --json)
echo "$summary"
expected=$(grep -o '"charts":\[[^]]*\]' <<<"$summary" | sed 's/"charts":\[//; s/\]$//' | tr ',' '\n' | grep -c '"')
for id in curves-loss curves-accuracy prune-0 bytes cost-0 cost-1 cost-table life-0 layers-0; do
  grep -q "\"$id\"" <<<"$summary" || { echo "FAIL: pare report did not list chart $id" >&2; exit 1; }
done

# Headless, no network: every host resolves to nothing, every proxy is closed.
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --disable-extensions
       --mute-audio --hide-scrollbars --user-data-dir="$work/profile" --host-resolver-rules="MAP * ~NOTFOUND"
       --proxy-server="http://127.0.0.1:9" --enable-logging=stderr --v=0)
url="file://$work/report.html"
# The same width as the screenshot, so the page height it records fits it.
dom=$(timeout 120 "$chromium" "${flags[@]}" --window-size=1280,1000 --dump-dom "$url" 2>"$work/chromium.log")
body=$(grep -o '<body[^>]*>' <<<"$dom" | head -1)
echo "$body"
attr() { sed -n "s/.* $1=\"\([^\"]*\)\".*/\1/p" <<<"$body"; }
fail=0
[ "$(attr data-status)" = done ] || { echo "FAIL: the page's script did not finish" >&2; fail=1; }
[ "$(attr data-charts-expected)" = "$expected" ] ||
  { echo "FAIL: the page lists $(attr data-charts-expected) charts, pare report $expected" >&2; fail=1; }
[ "$(attr data-charts-drawn)" = "$expected" ] ||
  { echo "FAIL: $(attr data-charts-drawn) of $expected charts drawn; not drawn: $(attr data-charts-missing)" >&2; fail=1; }
[ "$(attr data-errors)" = "[]" ] || { echo "FAIL: errors in the page: $(attr data-errors)" >&2; fail=1; }
sections=$(grep -o 'data-chart="[^"]*"' <<<"$dom" | wc -l)
drawn=$(grep -o 'data-drawn="yes"' <<<"$dom" | wc -l)
[ "$sections" = "$expected" ] && [ "$drawn" = "$expected" ] ||
  { echo "FAIL: $sections chart sections, $drawn drawn, $expected expected" >&2; fail=1; }
if grep -E "Uncaught|CONSOLE\(.*\).*(Error|error)" "$work/chromium.log" >&2; then
  echo "FAIL: the browser logged a script error" >&2
  fail=1
fi
# Whatever is in the file renders as text: the title's markup stays escaped.
grep -q '<h1 id="title">pare report: browser test &lt;&amp;&gt;</h1>' <<<"$dom" ||
  { echo "FAIL: the title was not escaped" >&2; fail=1; }

# The whole page as a picture, kept beside the report.
height=$(attr data-page-height)
timeout 120 "$chromium" "${flags[@]}" --screenshot="$work/report.png" --window-size="1280,${height:-6000}" "$url" \
  2>>"$work/chromium.log"
[ -s "$work/report.png" ] || { echo "FAIL: no screenshot" >&2; fail=1; }
[ $fail -eq 0 ] || exit 1
echo "PASS: $expected charts drawn, no errors; screenshot $work/report.png (1280x${height:-6000})"
