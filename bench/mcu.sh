#!/usr/bin/env bash
# The microcontroller figures of docs/mcu.md (issue #7):
#  1. two Fashion-MNIST classifiers trained by pare (a 2.3k-parameter CNN and a
#     784-32-10 MLP), int8, exported as C; their test accuracy measured by the
#     generated C on the host over all 10,000 test images (host_accuracy.c);
#     flash, RAM and instructions per inference on a Cortex-M0+ (pare export
#     --device-cost); their outputs on 200 test images bit-identical to pare's
#     in QEMU (Cortex-M0+, mps2-an385);
#  2. the n = 1 Game of Life net pruned back by pare life-prune (docs/life_prune.md),
#     shrunk, int8, exported: every cell of 100 test boards right in QEMU, and
#     its flash.
#
#   bash bench/mcu.sh                       # everything (the Life pruning takes a few minutes)
#   LIFE_MODEL=runs/life-prune/n1_m4_seed0_lamp/finetune/shrunk.bin bash bench/mcu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pare=${PARE:-build/pare}
out=${OUT:-runs/mcu}
here=bench/mcu
tests=tests/codegen/mcu
mkdir -p "$out"
data=(--data fashion-mnist)
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
labels=/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

cat >"$out/tiny_cnn.json" <<'EOF'
{"name": "tiny_cnn", "input": [1, 28, 28], "layers": [
 {"type": "conv2d", "out": 4, "kernel": 5}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
 {"type": "conv2d", "out": 8, "kernel": 5}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
 {"type": "flatten"}, {"type": "linear", "out": 10}]}
EOF
cat >"$out/mlp32.json" <<'EOF'
{"name": "mlp32", "input": [784], "layers": [{"type": "linear", "out": 32}, {"type": "relu"},
 {"type": "linear", "out": 10}]}
EOF

# In QEMU on a Cortex-M0+: the harness compares every output byte with pare's.
qemu_check() {
  local dir=$1
  arm-none-eabi-gcc -mcpu=cortex-m0plus -mthumb -Os -DPARE_MODEL_NO_FLOAT -I "$dir" "$dir/model.c" \
    "$dir/pare_runtime.c" "$tests/harness.c" "$tests/startup.c" --specs=nano.specs --specs=rdimon.specs \
    -Wl,--section-start=.vectors=0x0 -Wl,--defsym=__stack_top=0x20010000 -o "$dir/m0plus.elf"
  timeout 600 qemu-system-arm -M mps2-an385 -display none -serial none -monitor none -semihosting \
    -kernel "$dir/m0plus.elf" </dev/null
}

for m in tiny_cnn mlp32; do
  lr=2e-3
  [ "$m" = mlp32 ] && lr=1.2e-3
  echo "== $m" >&2
  "$pare" train --model "$out/$m.json" "${data[@]}" --epochs 10 --batch 60 --optimizer adam --lr "$lr" \
    --schedule cosine --normalize --seed 0 --out "$out/$m" --overwrite --quiet
  "$pare" compress "$out/$m/model.bin" -o "$out/$m.pare" --int8 --calibrate "${data[@]}" \
    --calibration-samples 1000 >/dev/null
  "$pare" eval "$out/$m.pare" "${data[@]}" --int8
  "$pare" export "$out/$m.pare" --target c -o "$out/${m}_c" "${data[@]}" --calibration-samples 1000 \
    --test-vectors 200 --device-cost
  cc -std=c99 -O2 -I "$out/${m}_c" "$out/${m}_c/model.c" "$out/${m}_c/pare_runtime.c" "$here/host_accuracy.c" \
    -lz -o "$out/${m}_c/host_accuracy"
  echo -n "generated C on the host, all test images: "
  "$out/${m}_c/host_accuracy" "$images" "$labels"
  echo -n "Cortex-M0+ in QEMU, 200 test images against pare: "
  qemu_check "$out/${m}_c"
done

# The MLP with 4-bit and 3-bit shared weights (k-means codebooks, codes
# decoded on the fly), and the demo's 90 %-pruned LeNet-300-100 as int8 CSR and
# as 5-bit CSR codes, when make demo has run.
shared_check() {
  local model=$1 name=$2
  shift 2
  "$pare" compress "$model" -o "$out/$name.pare" --calibrate "${data[@]}" --calibration-samples 1000 "$@" >/dev/null
  "$pare" eval "$out/$name.pare" "${data[@]}" --program
  "$pare" export "$out/$name.pare" --target c -o "$out/${name}_c" "${data[@]}" --test-vectors 200 --device-cost
  cc -std=c99 -O2 -I "$out/${name}_c" "$out/${name}_c/model.c" "$out/${name}_c/pare_runtime.c" "$here/host_accuracy.c" \
    -lz -o "$out/${name}_c/host_accuracy"
  echo -n "generated C on the host, all test images: "
  "$out/${name}_c/host_accuracy" "$images" "$labels"
  echo -n "Cortex-M0+ in QEMU, 200 test images against pare: "
  qemu_check "$out/${name}_c"
}
echo "== mlp32, shared weights" >&2
shared_check "$out/mlp32/model.bin" mlp32_shared4 --share-bits 4
shared_check "$out/mlp32/model.bin" mlp32_shared3 --share-bits 3
if [ -f runs/demo/pruned90/model.bin ]; then
  echo "== LeNet-300-100, 90 % pruned (make demo)" >&2
  shared_check runs/demo/pruned90/model.bin lenet300_p90_int8 --int8
  shared_check runs/demo/pruned90/model.bin lenet300_p90_shared5 --share-bits 5
fi

echo "== life n = 1" >&2
life=${LIFE_MODEL:-}
if [ -z "$life" ]; then
  "$pare" life-prune --steps 1 --width 4 --seed 0 --score lamp --epochs 30 --out "$out/life-prune" >&2
  life="$out/life-prune/finetune/shrunk.bin"
fi
lifedata=(--data life --life-steps 1 --examples 1000 --test-examples 100)
"$pare" eval "$life" --data life --life-steps 1 --test-examples 1000
"$pare" compress "$life" -o "$out/life.pare" --int8 --calibrate "${lifedata[@]}" --calibration-samples 500 >/dev/null
"$pare" export "$out/life.pare" --target c -o "$out/life_c" "${lifedata[@]}" --calibration-samples 500 \
  --test-vectors 100 --device-cost
echo -n "Cortex-M0+ in QEMU, 100 test boards: "
qemu_check "$out/life_c"
