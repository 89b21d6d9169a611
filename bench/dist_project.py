#!/usr/bin/env python3
"""Summarises bench/dist.sh's runs and projects them to 8 and 32 ranks.

usage: dist_project.py RUNS_DIR REPEATS LIFE_K1_SECONDS LIFE_K2_SECONDS

The projections and their assumptions (docs/distributed.md):

LeNet-300-100 (weak scaling: one 30-sample shard per rank, --shards K, so
the global batch is 30 K and an epoch has 60,000 / (30 K) steps). With one
shard per rank the exchange is the rank-ordered allreduce (reduce-scatter
and allgather, in n chunks of 65,536 floats). A step costs
    c                               compute of one shard on one thread (measured:
                                    the one-process --shards 2 run minus its
                                    exchange)
  + x2                              packing, summing and unpacking, as measured
                                    in the 2-rank run's exchange (its transfer
                                    through shared memory included: an upper
                                    bound for the local work)
  + 2 n (K - 1) a                   two collectives per chunk, each K - 1
                                    messages of latency a
  + 2 (K - 1) / K x 4 w / b         the bytes each rank sends and receives in a
                                    reduce-scatter and an allgather of w floats
for two networks: 10 Gbit/s Ethernet (a = 30 us, b = 1.25 GB/s) and a
100 Gbit/s fabric (a = 3 us, b = 12 GB/s). The baseline is one process
computing one shard per step with no exchange (2,000 steps of c). It leaves
out contention (several ranks per link) and overlap of the exchange with
the backward pass (not built).

Life sweep: the runs are independent, handed out in order to whichever
worker is free (dynamic assignment), so the sweep takes the makespan of list
scheduling of the measured run times on K workers.
"""
import json
import os
import statistics
import sys


def read_log(path):
    epoch, end = None, None
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if j.get("event") == "epoch":
                epoch = j
            if j.get("event") == "end":
                end = j
    return epoch, end


def lenet(runs, repeats, kind):
    seconds, exchange, steps, floats = [], [], 0, 0
    for r in range(1, repeats + 1):
        epoch, end = read_log(os.path.join(runs, f"{kind}_{r}", "log.jsonl"))
        seconds.append(epoch["train_seconds"])
        exchange.append(end.get("exchange_seconds", 0.0))
        steps = end["steps"]
        floats = end.get("floats_sent", 0.0)
    return statistics.median(seconds), statistics.median(exchange), steps, floats


def makespan(durations, workers):
    free = [0.0] * workers
    for d in durations:  # in order, to the first free worker
        i = min(range(workers), key=lambda k: free[k])
        free[i] += d
    return max(free)


def main():
    runs, repeats = sys.argv[1], int(sys.argv[2])
    life_k1, life_k2 = float(sys.argv[3]), float(sys.argv[4])
    out = {}
    usual = lenet(runs, repeats, "usual")
    shards = lenet(runs, repeats, "shards")
    k2 = lenet(runs, repeats, "k2")
    print(f"LeNet-300-100, one epoch (median of {repeats}): training loop seconds, exchange share")
    for name, (sec, ex, steps, _) in (("1 process, usual step, 2 threads", usual),
                                      ("1 process, --shards 2, 2 threads", shards),
                                      ("2 ranks x 1 thread, --shards 2", k2)):
        print(f"  {name:36s} {sec:7.2f} s   exchange {ex:6.2f} s ({100 * ex / sec:4.1f} %)")
    print(f"  speed-up of 2 ranks over 1 process: {usual[0] / k2[0]:.2f}x (usual step), "
          f"{shards[0] / k2[0]:.2f}x (same shards, same bits)")
    steps = k2[2]
    w = (k2[3] / steps) - 1  # floats per row (one row per rank per step), minus the loss
    chunks = -(-int(w + 1) // 65536)
    c = (shards[0] - shards[1]) / steps  # one 30-sample shard on one thread
    x2 = k2[1] / steps
    print(f"  model: w = {w:.0f} floats per row, c = {1e3 * c:.3f} ms per shard, x2 = {1e3 * x2:.3f} ms, "
          f"{chunks} chunks")
    proj = {}
    base = 60000 / 30 * c
    for link, a, b in (("10 GbE", 30e-6, 1.25e9), ("100 Gb/s fabric", 3e-6, 12e9)):
        for k in (2, 8, 32):
            x = x2 + 2 * chunks * (k - 1) * a + 2 * (k - 1) / k * 4 * w / b
            step = c + x
            epoch = 60000 / (30 * k) * step
            proj[f"{link} K={k}"] = {"epoch_seconds": epoch, "exchange_share": x / step, "speedup": base / epoch}
            print(f"  projected, {link:16s} K = {k:2d}: epoch {epoch:6.2f} s, exchange {100 * x / step:4.1f} % of a step, "
                  f"speed-up {base / epoch:5.2f}x over one rank ({base:.2f} s)")
    out["lenet"] = {"usual": usual, "shards2": shards, "k2": k2, "projection": proj}

    print(f"Life sweep n = 1, m = 1..4, 16 seeds: 1 process (2 runs at a time) {life_k1:.1f} s, "
          f"2 ranks (1 run each at a time) {life_k2:.1f} s: speed-up {life_k1 / life_k2:.2f}x")
    with open(os.path.join(runs, "life_k1", "results.json")) as f:
        life = json.load(f)
    durations = [r["seconds"] for r in life["runs"]]
    total = sum(durations)
    print(f"  {len(durations)} runs, {total:.1f} s of run time (longest {max(durations):.1f} s)")
    life_proj = {}
    for k in (1, 2, 8, 32):
        m = makespan(durations, k)
        life_proj[k] = {"makespan": m, "speedup": total / m}
        print(f"  projected K = {k:2d} workers: {m:7.1f} s, speed-up {total / m:5.2f}x")
    out["life"] = {"k1_seconds": life_k1, "k2_seconds": life_k2, "run_seconds": durations, "projection": life_proj}
    with open(os.path.join(runs, "dist.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
