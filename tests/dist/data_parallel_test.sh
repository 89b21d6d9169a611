#!/bin/sh
# Data-parallel training (train/data_parallel.h) under mpiexec against one
# process, on LeNet-300-100 and Fashion-MNIST, one epoch each:
#   - with --shards 4, one process (2 threads and 1), 2 ranks and 4 ranks end
#     with the same bits (tolerance 0: the shard-ordered sum makes them equal);
#   - a run stopped by --max-steps with 2 ranks and resumed with 4 ends with
#     the same bits too (checkpoints do not depend on the rank count);
#   - a pruned model trains with its masks kept exact, the same bits on 1 and 2
#     ranks, and RigL (mask updates from the summed gradients, dense gradients
#     on its grow steps) gives the same masks and weights on 1 and 2 ranks;
#   - without --shards, 2 ranks repeat their own bits;
#   - rank 0 alone writes the run log (one "start" event, "ranks": 2).
#
# usage: data_parallel_test.sh PARE COMPARE_MODELS MPIEXEC
set -eu
pare=$1
compare=$2
mpiexec=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpi() { np=$1; shift; "$mpiexec" --allow-run-as-root --oversubscribe --bind-to none -n "$np" "$@"; }
same() { echo "compare $1 $2:"; "$compare" "$work/$1/model.bin" "$work/$2/model.bin" 0; }
epoch="--model lenet300 --epochs 1 --quiet --shards 4"

"$pare" train $epoch --out "$work/k1"
"$pare" train $epoch --threads 1 --out "$work/k1t1"
mpi 2 "$pare" train $epoch --out "$work/k2"
mpi 4 "$pare" train $epoch --out "$work/k4"
same k1 k1t1
same k1 k2
same k1 k4

# Stopped mid-epoch on 2 ranks, finished on 4.
mpi 2 "$pare" train $epoch --max-steps 400 --out "$work/resumed"
mpi 4 "$pare" train $epoch --resume --out "$work/resumed"
same k1 resumed
grep -q '"event":"resume"' "$work/resumed/log.jsonl"

# Rank 0 alone writes: one start event, and it says 2 ranks.
starts=$(grep -c '"event":"start"' "$work/k2/log.jsonl")
[ "$starts" -eq 1 ] || { echo "k2/log.jsonl has $starts start events"; exit 1; }
grep -q '"ranks":2' "$work/k2/log.jsonl" || { echo "k2/log.jsonl does not record 2 ranks"; exit 1; }

# A pruned network: masks stay exact (compare_models checks pruned entries are 0).
"$pare" prune --model lenet300 --criterion magnitude --sparsity 0.9 --quiet --out "$work/pruned"
"$pare" train --from "$work/pruned/model.bin" --epochs 1 --quiet --shards 4 --out "$work/p1"
mpi 2 "$pare" train --from "$work/pruned/model.bin" --epochs 1 --quiet --shards 4 --out "$work/p2"
same p1 p2

# RigL: masks move with the summed gradients.
rigl="--model lenet300 --epochs 1 --max-steps 300 --quiet --shards 4 --sparse-training rigl --sparsity 0.9 --update-interval 50"
"$pare" train $rigl --out "$work/r1"
mpi 2 "$pare" train $rigl --out "$work/r2"
same r1 r2

# Without --shards (2 ranks x 1 thread: 2 shards), a rank count repeats itself.
mpi 2 "$pare" train --model lenet300 --epochs 1 --max-steps 300 --quiet --out "$work/d2a"
mpi 2 "$pare" train --model lenet300 --epochs 1 --max-steps 300 --quiet --out "$work/d2b"
same d2a d2b
echo "data-parallel: all runs agree"
