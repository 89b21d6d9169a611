#!/bin/bash
# Scaling over MPI ranks on this machine (issue #9; docs/distributed.md):
#   1. LeNet-300-100, one epoch of Fashion-MNIST (Adam, batch 60):
#      - one process, the usual step (2 threads);
#      - one process, --shards 2 (2 threads, one shard each);
#      - mpirun -np 2, --shards 2 (1 thread per rank): the same bits as the line above.
#      Seconds of the training loop per epoch (median of REPEATS), the
#      exchange's share of rank 0's loop, and the projection to 8 and 32 ranks.
#   2. A Life sweep (n = 1, m = 1..4, 16 seeds each; the recipe with --epochs
#      EPOCHS): one process running 2 runs at a time, and mpirun -np 2 with one
#      run per rank at a time. Wall seconds, and the projection from the
#      measured run times (bench/dist_project.py).
# Prints plain lines and writes OUT/dist.json.
#
# usage: bash bench/dist.sh [OUT] [REPEATS] [EPOCHS]   (default bench/results/dist 3 100)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${1:-$root/bench/results/dist}
repeats=${2:-3}
life_epochs=${3:-100}
pare=$root/build/pare
[ -x "$pare" ] || { echo "build pare first: make build (or cmake --build build)"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { np=$1; shift; mpirun --oversubscribe --bind-to none -np "$np" "$@"; }
mkdir -p "$out"
rm -rf "$out"/runs
mkdir -p "$out"/runs

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "mpirun: $(mpirun --version 2>&1 | head -1)"

lenet="--model lenet300 --epochs 1 --quiet"
for r in $(seq 1 "$repeats"); do
  "$pare" train $lenet --out "$out/runs/usual_$r" > /dev/null
  "$pare" train $lenet --shards 2 --out "$out/runs/shards_$r" > /dev/null
  mpi 2 "$pare" train $lenet --shards 2 --out "$out/runs/k2_$r" > /dev/null
  echo "lenet repeat $r/$repeats done"
done

life="--steps 1 --widths 1,2,3,4 --seeds 16 --epochs $life_epochs --quiet"
now() { python3 -c 'import time; print(time.monotonic())'; }
start=$(now)
"$pare" life $life --jobs 2 --out "$out/runs/life_k1" > /dev/null
life_k1=$(python3 -c "print($(now) - $start)")
start=$(now)
mpi 2 "$pare" life $life --out "$out/runs/life_k2" > /dev/null
life_k2=$(python3 -c "print($(now) - $start)")

python3 "$here/dist_project.py" "$out/runs" "$repeats" "$life_k1" "$life_k2" | tee "$out/dist.txt"
cp "$out/runs/dist.json" "$out/dist.json" 2>/dev/null || true
