#!/usr/bin/env bash
# Interop test: `pare export --format onnx` runs in onnxruntime (PyPI) and gives pare's own outputs.
#
# Small models trained by pare on synthetic NPY data (onnx_ort.py data):
#   mlp         linear/relu/dropout, trained with --normalize (the export starts with Sub/Div)
#   mlp_pruned  mlp with 80 % of its weights pruned by magnitude and fine-tuned
#   mlp_act     linear/tanh/sigmoid, a linear layer without bias
#   cnn         conv2d (with and without bias, padded, strided), maxpool, avgpool, tanh, sigmoid, flatten,
#               dropout, linear
# Each is exported as a float graph, checked by the onnx checker, run in onnxruntime (graph optimizations off
# and on, whole test set and batches of 7) and compared with `pare eval --save-outputs`: max |diff| <= 1e-4;
# and imported back with `pare import`, it gives the same outputs (max |diff| <= 1e-5).
# Then mlp, mlp_pruned and cnn are written as int8 .pare files (pare compress --int8 --calibrate), exported
# in QDQ form and compared with `pare eval --int8 --save-outputs`: max |diff| <= one step of an 8-bit grid
# over the logits' range (onnx_ort.py tolerance_int8), argmax agreement >= 99 %, and with ORT's graph
# optimizations off (the QDQ graph run as written) >= 99 % of the outputs within 1e-4. mlp and cnn with int8
# weights only (no --calibrate) export s8 weights behind DequantizeLinear and float activations: within 1e-4.
#
# onnxruntime, onnx and numpy go into a venv under WORK_DIR that sees Debian's python3 packages (created once,
# reused while it imports them).
#
# Usage: onnx_ort.sh PARE_BINARY WORK_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=venv.sh
source "$here/venv.sh" "$@"
use_venv onnxruntime,onnx,numpy onnxruntime onnx numpy

"$py" "$here/onnx_ort.py" data "$run"

train() {  # NAME EXTRA_ARGS...: trains NAME.json on NAME's data into $run/NAME
  local name=$1
  shift
  "$pare" train --model "$run/$name.json" --data "$run/${name%_act}_train_x.npy" \
    --labels "$run/${name%_act}_train_y.npy" --test "$run/${name%_act}_test_x.npy" \
    --test-labels "$run/${name%_act}_test_y.npy" --epochs 8 --batch 16 --lr 0.01 --seed 3 \
    --out "$run/$name" --quiet "$@" >/dev/null
}
train mlp --normalize
train mlp_act
train cnn
# mlp with 80 % of its weights pruned (pruned weights are zeros in the export; pare's int8 net runs its layers
# on the sparse int8 product).
"$pare" prune --from "$run/mlp/model.bin" --criterion magnitude --sparsity 0.8 --data "$run/mlp_train_x.npy" \
  --labels "$run/mlp_train_y.npy" --train --epochs 2 --batch 16 --lr 0.005 --out "$run/mlp_pruned" --quiet >/dev/null

declare -A ops=([mlp]=Sub,Div,Gemm,Relu [mlp_pruned]=Sub,Div,Gemm,Relu [mlp_act]=Gemm,Tanh,Sigmoid
                [cnn]=Conv,Relu,MaxPool,Tanh,AveragePool,Sigmoid,Flatten,Gemm)
status=0
for name in mlp mlp_pruned mlp_act cnn; do
  data=${name%_*}
  echo "$name (float):"
  "$pare" export "$run/$name/model.bin" --format onnx -o "$run/$name.onnx" >/dev/null
  "$pare" eval "$run/$name/model.bin" --data "$run/${data}_test_x.npy" --labels "$run/${data}_test_y.npy" \
    --save-outputs "$run/$name.pare_out.npy" >/dev/null
  "$py" "$here/onnx_ort.py" check float "$run/$name.onnx" "$run/${data}_test_x.npy" \
    "$run/$name.pare_out.npy" "${ops[$name]}" || status=1
  # Round trip: the export imported back is the same network: the same outputs up to summation order (the
  # pruned model runs sparse kernels, its import dense ones).
  "$pare" import "$run/$name.onnx" -o "$run/$name.rt.pare" >/dev/null
  "$pare" eval "$run/$name.rt.pare" --data "$run/${data}_test_x.npy" --labels "$run/${data}_test_y.npy" \
    --save-outputs "$run/$name.rt_out.npy" >/dev/null
  "$py" - "$run/$name.pare_out.npy" "$run/$name.rt_out.npy" <<'PY' || status=1
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
d = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
print(f"  pare import of the export: max|diff| {d:.3g} against the model exported")
if not d <= 1e-5:
    sys.exit(f"FAIL: the imported export differs from the model ({a.shape} vs {b.shape}, max diff {d})")
PY
done

# Weights-only int8 (pare compress --int8 without --calibrate): s8 weights behind DequantizeLinear, float
# activations; pare eval runs the dequantized weights in float, so the float tolerance holds.
for name in mlp cnn; do
  echo "$name (int8 weights, float activations):"
  "$pare" compress "$run/$name/model.bin" -o "$run/${name}_w8.pare" --int8 >/dev/null
  "$pare" export "$run/${name}_w8.pare" --format onnx -o "$run/${name}_w8.onnx" >/dev/null
  "$pare" eval "$run/${name}_w8.pare" --data "$run/${name}_test_x.npy" --labels "$run/${name}_test_y.npy" \
    --save-outputs "$run/${name}_w8.pare_out.npy" >/dev/null
  "$py" "$here/onnx_ort.py" check w8 "$run/${name}_w8.onnx" "$run/${name}_test_x.npy" \
    "$run/${name}_w8.pare_out.npy" "${ops[$name]},DequantizeLinear" || status=1
done

for name in mlp mlp_pruned cnn; do
  data=${name%_*}
  echo "$name (int8, QDQ):"
  if ! "$pare" compress "$run/$name/model.bin" -o "$run/${name}_q.pare" --int8 --calibrate \
      --data "$run/${data}_train_x.npy" --labels "$run/${data}_train_y.npy" >"$run/${name}_q.log" 2>&1; then
    echo "FAIL: pare compress --int8 --calibrate $name: $(cat "$run/${name}_q.log")" >&2
    status=1
    continue
  fi
  "$pare" export "$run/${name}_q.pare" --format onnx -o "$run/${name}_q.onnx" >/dev/null
  "$pare" eval "$run/${name}_q.pare" --int8 --data "$run/${data}_test_x.npy" --labels "$run/${data}_test_y.npy" \
    --save-outputs "$run/${name}_q.pare_out.npy" >/dev/null
  "$py" "$here/onnx_ort.py" check int8 "$run/${name}_q.onnx" "$run/${data}_test_x.npy" \
    "$run/${name}_q.pare_out.npy" "${ops[$name]},QuantizeLinear,DequantizeLinear" || status=1
  # The int8 outputs are not the float ones (otherwise the int8 path was not taken).
  "$py" - "$run/$name.pare_out.npy" "$run/${name}_q.pare_out.npy" <<'PY' || status=1
import sys
import numpy as np
f, q = np.load(sys.argv[1]), np.load(sys.argv[2])
d = float(np.abs(f - q).max())
print(f"  pare int8 against pare float: max|diff| {d:.3g}, argmax agreement {100 * np.mean(f.argmax(1) == q.argmax(1)):.2f}%")
if d == 0.0:
    sys.exit("FAIL: pare eval --int8 gave exactly the float outputs")
PY
done

if [ "$status" -ne 0 ]; then
  echo "FAIL: see above" >&2
  exit 1
fi
echo "onnx_ort: all exports agree with pare"
