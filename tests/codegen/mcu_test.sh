#!/usr/bin/env bash
# The C export proven on the target instruction set (issue #7): for four int8
# models (a pruned Fashion-MNIST MLP as int8 CSR and as 3-bit shared-weight
# codes, a CNN, and the Game of Life net on 32x32 boards), `pare export
# --target c` writes the C; the test
#   - compiles it warning-free with gcc and clang (-std=c99 -Wall -Wextra
#     -Werror -pedantic) and runs it on the host: every output byte equal to
#     pare's own integer inference (pare_test_vectors.h);
#   - runs it under AddressSanitizer + UBSan on a heap arena of exactly the
#     planned size, whose two ends must both be used;
#   - checks that the header's arena is the size pare reported;
#   - cross-compiles it for Cortex-M0+ (no FPU, -DPARE_MODEL_NO_FLOAT: no
#     floating-point call may appear) and Cortex-M4 and runs it in
#     qemu-system-arm (mps2-an385, mps2-an386): the same bytes and checksum;
#   - exports twice: the same model gives the same bytes.
#
# Usage: mcu_test.sh PARE_BINARY WORK_DIR
set -euo pipefail
pare=$1
work=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$work" && mkdir -p "$work"
cd "$work"

for tool in gcc clang arm-none-eabi-gcc qemu-system-arm; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (make deps installs it)" >&2; exit 1; }
done

strict=(-std=c99 -Wall -Wextra -Werror -pedantic)
fail() { echo "FAIL: $*" >&2; exit 1; }

# The model's C plus the harness, for the host.
host_check() {
  local dir=$1
  local line=""
  for cc in gcc clang; do
    "$cc" "${strict[@]}" -O2 -I "$dir" "$dir/model.c" "$dir/pare_runtime.c" "$here/mcu/harness.c" -o "$dir/host_$cc"
    line=$("$dir/host_$cc") || fail "$dir: host ($cc) outputs differ from pare: $line"
    echo "$dir host $cc: $line" >&2
  done
  gcc -std=c99 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -DPARE_HARNESS_ARENA -I "$dir" \
    "$dir/model.c" "$dir/pare_runtime.c" "$here/mcu/harness.c" -o "$dir/host_asan"
  local arena
  arena=$("$dir/host_asan" | tail -1) || fail "$dir: the planned arena does not hold: $arena"
  echo "$dir $arena" >&2
  echo "$line" | sed 's/.*checksum //'
}

# The same for a Cortex-M under QEMU; prints the checksum.
mcu_check() {
  local dir=$1 cpu=$2 board=$3
  local flags=(-mcpu="$cpu" -mthumb)
  [ "$cpu" = cortex-m4 ] && flags+=(-mfpu=fpv4-sp-d16 -mfloat-abi=hard)
  local elf="$dir/$cpu.elf"
  arm-none-eabi-gcc "${strict[@]}" "${flags[@]}" -Os -DPARE_MODEL_NO_FLOAT -I "$dir" -c "$dir/model.c" -o "$dir/model_$cpu.o"
  arm-none-eabi-gcc "${strict[@]}" "${flags[@]}" -Os -I "$dir" -c "$dir/pare_runtime.c" -o "$dir/runtime_$cpu.o"
  if [ "$cpu" = cortex-m0plus ]; then
    # Integer-only: no soft-float routine may be called by the model.
    if arm-none-eabi-nm -u "$dir/model_$cpu.o" "$dir/runtime_$cpu.o" | grep -E '__aeabi_[fdi]2|__aeabi_[fd](add|sub|mul|div|cmp)|__aeabi_[fd]cmp|[sd]f[23]$'; then
      fail "$dir: the M0+ build calls floating-point routines"
    fi
  fi
  arm-none-eabi-gcc "${flags[@]}" -Os --specs=nano.specs --specs=rdimon.specs -I "$dir" \
    "$dir/model_$cpu.o" "$dir/runtime_$cpu.o" "$here/mcu/harness.c" "$here/mcu/startup.c" \
    -Wl,--section-start=.vectors=0x0 -Wl,--defsym=__stack_top=0x20010000 -o "$elf"
  local out rc=0
  out=$(timeout 120 qemu-system-arm -M "$board" -display none -serial none -monitor none -semihosting \
        -kernel "$elf" </dev/null) || rc=$?
  echo "$dir $cpu ($board): $out (rc $rc)" >&2
  [ "$rc" -eq 0 ] || fail "$dir: $cpu in QEMU exited with $rc: $out"
  echo "$out" | sed 's/.*checksum //'
}

export_model() {
  local model=$1 dir=$2
  shift 2
  "$pare" export "$model" --target c -o "$dir" --json "$@" >"$dir.json"
  local arena planned
  arena=$(sed 's/.*"arena_bytes":\([0-9]*\).*/\1/' "$dir.json")
  planned=$(sed -n 's/^#define PARE_MODEL_ARENA_BYTES \([0-9]*\)$/\1/p' "$dir/model.h")
  [ "$arena" = "$planned" ] || fail "$dir: model.h plans $planned arena bytes, pare reported $arena"
}

check_model() {
  local dir=$1
  local host m0 m4
  host=$(host_check "$dir")
  m0=$(mcu_check "$dir" cortex-m0plus mps2-an385)
  m4=$(mcu_check "$dir" cortex-m4 mps2-an386)
  [ "$host" = "$m0" ] && [ "$host" = "$m4" ] || fail "$dir: checksums differ: host $host, M0+ $m0, M4 $m4"
}

# 1. A Fashion-MNIST MLP, pruned so that its first layer goes out as CSR.
cat >mlp.json <<'EOF'
{"name": "mlp", "input": [784], "layers": [{"type": "linear", "out": 32}, {"type": "relu"},
 {"type": "linear", "out": 10}]}
EOF
"$pare" train --model mlp.json --data fashion-mnist --epochs 1 --batch 60 --optimizer adam --lr 1e-3 \
  --normalize --max-steps 300 --out mlp --quiet >/dev/null
"$pare" prune --from mlp/model.bin --data fashion-mnist --criterion magnitude --sparsity 0.8 \
  --out mlp_pruned --quiet >/dev/null
"$pare" compress mlp_pruned/model.bin -o mlp.pare --int8 --calibrate --data fashion-mnist \
  --calibration-samples 500 >/dev/null
export_model mlp.pare mlp_c --data fashion-mnist --test-vectors 40 --calibration-samples 500
grep -q "pare_csr_s8(" mlp_c/model.c || fail "the pruned MLP's first layer is not exported as CSR"
check_model mlp_c

# 1b. The same MLP with 3-bit shared weights: codes into an int8 table, decoded on the fly.
"$pare" compress mlp_pruned/model.bin -o mlp_shared.pare --share-bits 3 --calibrate --data fashion-mnist \
  --calibration-samples 500 >/dev/null
export_model mlp_shared.pare mlp_shared_c --data fashion-mnist --test-vectors 40 --calibration-samples 500
grep -q "_codes_s8(" mlp_shared_c/model.c || fail "the shared-weight MLP is not exported as codes"
check_model mlp_shared_c

# 2. A small CNN: zero padding, stride, max and average pooling.
cat >cnn.json <<'EOF'
{"name": "cnn", "input": [1, 28, 28], "layers": [
 {"type": "conv2d", "out": 4, "kernel": 3, "pad": 1}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
 {"type": "conv2d", "out": 8, "kernel": 3, "stride": 2}, {"type": "relu"}, {"type": "avgpool", "kernel": 2},
 {"type": "flatten"}, {"type": "linear", "out": 10}]}
EOF
"$pare" train --model cnn.json --data fashion-mnist --epochs 1 --batch 60 --optimizer adam --lr 2e-3 \
  --normalize --max-steps 150 --out cnn --quiet >/dev/null
"$pare" compress cnn/model.bin -o cnn.pare --int8 --calibrate --data fashion-mnist --calibration-samples 300 >/dev/null
export_model cnn.pare cnn_c --data fashion-mnist --test-vectors 12 --calibration-samples 300
check_model cnn_c

# 3. The Game of Life net (n = 1), circular padding on a 32x32 torus.
"$pare" train --model life --data life --life-steps 1 --width 2 --examples 400 --test-examples 50 \
  --epochs 2 --batch 8 --lr 1e-2 --out life --quiet >/dev/null
"$pare" compress life/model.bin -o life.pare --int8 --calibrate --data life --life-steps 1 --width 2 \
  --examples 100 --test-examples 10 --calibration-samples 50 >/dev/null
export_model life.pare life_c --data life --life-steps 1 --width 2 --examples 100 --test-examples 10 \
  --test-vectors 4 --calibration-samples 50
check_model life_c

# Deterministic: the same model gives the same bytes.
export_model mlp.pare mlp_again --data fashion-mnist --test-vectors 40 --calibration-samples 500
for f in model.h model.c pare_runtime.h pare_runtime.c pare_test_vectors.h; do
  cmp -s "mlp_c/$f" "mlp_again/$f" || fail "exporting twice gave different $f"
done
echo "PASS: four models, host (gcc, clang, ASan) = Cortex-M0+ = Cortex-M4 in QEMU = pare, bit for bit"
