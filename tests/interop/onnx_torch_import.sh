#!/usr/bin/env bash
# Interop test: `pare import` reads what torch.onnx.export writes (Debian's python3-torch 1.13, opsets 13
# and 14), and the imported model is a pare model like any other.
#
# onnx_torch_import.py trains five small torch nets on synthetic data and exports them:
#   mlp          Linear/ReLU/Dropout                 -> Gemm, Relu
#   mlp_matmul   x @ W + b written out                -> MatMul, Add, Relu
#   mlp_softmax  mlp with a Softmax at the end (13)   -> Gemm, Relu, Softmax (pare drops the Softmax)
#   cnn          Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Linear
#                                                     -> Conv, Relu, MaxPool, Pad (zeros), AveragePool, Flatten, Gemm
#   cnn_view     strided Conv2d without bias, Tanh, Sigmoid, MaxPool2d, x.view(x.size(0), -1), Linear
#                                                     -> Conv, Tanh, Sigmoid, MaxPool, Shape/Gather/.../Reshape, Gemm
#   cnn_bn       Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, Linear
#                                                     -> Conv (the batch norm folded in), Relu, MaxPool, Flatten, Gemm
# Each export is imported with `pare import`, evaluated with `pare eval --save-outputs` and compared with
# torch's logits on the same test inputs: max |diff| <= 1e-4. Then the imported mlp and cnn go through
# `pare prune --from ... --sparsity 0.5` (the pruned model has half its weights zero and keeps its accuracy)
# and `pare compress --share-bits 5` (the .pare file evaluates as well), and `pare train --from` fine-tunes
# them for an epoch (no worse than the import: it starts from the imported weights). Malformed files (an export cut at
# twelve points, empty, not ONNX) and an op pare does not import (LeakyRelu) make `pare import` exit 1 with a
# one-line error, and write no model file.
#
# Usage: onnx_torch_import.sh PARE_BINARY WORK_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=venv.sh
source "$here/venv.sh" "$@"
need_torch numpy
"$python" "$here/onnx_torch_import.py" make "$run"

status=0
for onnx in mlp_op13 mlp_op14 mlp_matmul_op13 mlp_matmul_op14 mlp_softmax_op13 cnn_op13 cnn_op14 cnn_view_op13 \
  cnn_view_op14 cnn_bn_op13 cnn_bn_op14; do
  name=${onnx%_op1?}
  case $name in cnn*) data=img ;; *) data=vec ;; esac
  echo "$onnx.onnx:"
  if ! "$pare" import "$run/$onnx.onnx" -o "$run/$onnx.pare" >"$run/$onnx.import.log" 2>&1; then
    echo "FAIL: pare import $onnx.onnx: $(cat "$run/$onnx.import.log")" >&2
    status=1
    continue
  fi
  "$pare" eval "$run/$onnx.pare" --data "$run/${data}_test_x.npy" --labels "$run/${data}_test_y.npy" \
    --save-outputs "$run/$onnx.pare_out.npy" >/dev/null
  "$python" "$here/onnx_torch_import.py" compare "$run/$name.torch_out.npy" "$run/$onnx.pare_out.npy" || status=1
done

# The imported models continue through pare: prune half the weights (one shot, a short fine-tune), then 5-bit
# weight sharing.
for onnx in mlp_op13 cnn_op14; do
  [ -f "$run/$onnx.pare" ] || continue
  case $onnx in cnn*) data=img ;; *) data=vec ;; esac
  d=(--data "$run/${data}_train_x.npy" --labels "$run/${data}_train_y.npy"
     --test "$run/${data}_test_x.npy" --test-labels "$run/${data}_test_y.npy")
  echo "$onnx.pare through prune and compress:"
  "$pare" prune --from "$run/$onnx.pare" --criterion magnitude --sparsity 0.5 "${d[@]}" --train --epochs 1 \
    --out "$run/${onnx}_pruned" --quiet >/dev/null
  "$pare" compress "$run/${onnx}_pruned/model.bin" -o "$run/${onnx}_c.pare" --share-bits 5 >/dev/null
  "$pare" train --from "$run/$onnx.pare" "${d[@]}" --epochs 1 --lr 0.002 --out "$run/${onnx}_tuned" --quiet \
    >/dev/null
  "$pare" eval "$run/${onnx}_tuned/model.bin" --data "$run/${data}_test_x.npy" --labels "$run/${data}_test_y.npy" \
    --json >"$run/$onnx.tuned.json"
  "$pare" eval "$run/$onnx.pare" --data "$run/${data}_test_x.npy" --labels "$run/${data}_test_y.npy" \
    --json >"$run/$onnx.eval.json"
  "$pare" eval "$run/${onnx}_pruned/model.bin" --data "$run/${data}_test_x.npy" \
    --labels "$run/${data}_test_y.npy" --json >"$run/$onnx.pruned.json"
  "$pare" eval "$run/${onnx}_c.pare" --data "$run/${data}_test_x.npy" --labels "$run/${data}_test_y.npy" \
    --json >"$run/$onnx.c.json"
  "$python" - "$run/$onnx.eval.json" "$run/$onnx.pruned.json" "$run/$onnx.c.json" "$run/$onnx.tuned.json" \
    "$run/${onnx}_c.pare" <<'PY' || status=1
import json, os, sys
imp, pruned, comp, tuned = (json.load(open(p)) for p in sys.argv[1:5])
size = os.path.getsize(sys.argv[5])
print(f"  imported: accuracy {100 * imp['accuracy']:.2f}%; pruned: sparsity {100 * pruned['sparsity']:.1f}%, "
      f"accuracy {100 * pruned['accuracy']:.2f}%; 5-bit .pare: {size} bytes, accuracy {100 * comp['accuracy']:.2f}%; "
      f"train --from, 1 epoch: accuracy {100 * tuned['accuracy']:.2f}%")
if tuned["accuracy"] < imp["accuracy"] - 0.1:
    sys.exit("FAIL: fine-tuning the imported model lost accuracy: it did not start from the imported weights")
# Magnitude pruning at 0.5 removes half the prunable weights (the sparsity counts those only).
if abs(pruned["sparsity"] - 0.5) > 0.01:
    sys.exit(f"FAIL: the pruned model's sparsity is {pruned['sparsity']}, expected about 0.5")
if imp["accuracy"] < 0.6 or pruned["accuracy"] < imp["accuracy"] - 0.15 or comp["accuracy"] < pruned["accuracy"] - 0.05:
    sys.exit("FAIL: accuracy lost through prune/compress (imported, pruned, compressed above)")
PY
done

# Malformed input: exit status 1 (pare's "pare: error: ..."; 3 would be an internal error, 128+ a crash), one
# line on stderr, no output file.
size=$(stat -c %s "$run/cnn_op13.onnx")
bads=()
for cut in 1 2 3 4 5 6 7 8 9 10 11 12; do  # from 1/13 of the bytes to all but the last 13th
  head -c $((size * cut / 13)) "$run/cnn_op13.onnx" >"$run/truncated$cut.onnx"
  bads+=("truncated$cut")
done
head -c $((size - 1)) "$run/cnn_op13.onnx" >"$run/truncated_last.onnx"
: >"$run/empty.onnx"
printf 'this is not a protobuf\n' >"$run/text.onnx"
for bad in "${bads[@]}" truncated_last empty text bad_leakyrelu; do
  rc=0
  "$pare" import "$run/$bad.onnx" -o "$run/$bad.pare" >"$run/$bad.out" 2>"$run/$bad.err" || rc=$?
  lines=$(wc -l <"$run/$bad.err")
  echo "$bad.onnx: pare import exit $rc: $(head -c 300 "$run/$bad.err")"
  if [ "$rc" -ne 1 ] || [ "$lines" -ne 1 ] || [ -e "$run/$bad.pare" ]; then
    echo "FAIL: pare import $bad.onnx: exit $rc (expected 1), $lines stderr lines (expected 1)," \
      "output file $([ -e "$run/$bad.pare" ] && echo written || echo absent)" >&2
    status=1
  fi
done
if ! grep -q LeakyRelu "$run/bad_leakyrelu.err"; then
  echo "FAIL: the error for an unsupported op does not name it (LeakyRelu)" >&2
  status=1
fi

if [ "$status" -ne 0 ]; then
  echo "FAIL: see above" >&2
  exit 1
fi
echo "onnx_torch_import: every torch export imports and agrees with torch"
