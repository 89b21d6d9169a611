#!/usr/bin/env python3
"""PyTorch side of issue #5's IMP comparison: iterative magnitude pruning of
LeNet-300-100 on Fashion-MNIST with torch.nn.utils.prune (CPU only).

The recipe of `pare ticket` in docs/tickets.md: Adam 1.2e-3, batch 60, cosine
decay of the learning rate to 0 over each round's steps, inputs standardised
with the training split's mean and standard deviation (one value each, as
pare's --normalize), E epochs per round, a fresh shuffle each epoch, a fresh
Adam each round. Round 0 trains the dense net; before round r (1..R) each
Linear weight is pruned with prune.l1_unstructured by the trained weights'
magnitude, 20 % of its remaining weights (10 % for the output layer), and the
survivors (and the biases) are rewound to their initial values (Frankle &
Carbin 2019; the open_lth loop). The pruned layers run as torch.nn.utils.prune
runs them: weight = weight_orig * weight_mask recomputed before each forward,
dense products.

Fashion-MNIST is read from the idx .gz files as bench/torch_train.py does
(FMNIST_DIR or --data-dir). Per round the training loop is timed (shuffle +
batch indexing + forward + backward + optimizer step; evaluation excluded, as
pare's train_seconds) and, separately, the pruning + rewinding. stdout gets
one JSON object per round ({"event": "round", ...}) and a summary
({"event": "summary", "total_train_seconds", "total_seconds", ...});
total_seconds = training + pruning + evaluation of every round, data loading
excluded.

Set OMP_NUM_THREADS / MKL_NUM_THREADS as well as --threads.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import DEFAULT_FMNIST_DIR, LeNet300, eval_classifier, load_fashion_mnist  # noqa: E402


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def density(model):
    kept = total = 0
    per_layer = {}
    for name, m in model.named_children():
        w = m.weight  # pruned: the masked tensor the forward uses
        mask = getattr(m, "weight_mask", None)
        k = int(mask.sum()) if mask is not None else w.numel()
        per_layer[name] = round(k / w.numel(), 6)
        kept += k
        total += w.numel()
    return kept / total, per_layer


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="pruning rounds after the dense round 0")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per round")
    ap.add_argument("--rate", type=float, default=0.2, help="fraction of a hidden layer's remaining weights pruned per round")
    ap.add_argument("--output-rate", type=float, default=0.1, help="the same for the output layer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1.2e-3)
    ap.add_argument("--data-dir", default=os.environ.get("FMNIST_DIR", DEFAULT_FMNIST_DIR))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t_load = time.perf_counter()
    xtr, ytr, xte, yte = load_fashion_mnist(args.data_dir)
    mean, std = xtr.mean().item(), xtr.std(unbiased=False).item()
    xtr = ((xtr - mean) / std).reshape(-1, 784).contiguous()
    xte = ((xte - mean) / std).reshape(-1, 784).contiguous()
    log("torch_imp: data ready in %.2f s (mean %.4f std %.4f)" % (time.perf_counter() - t_load, mean, std))

    model = LeNet300()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    layers = [model.fc1, model.fc2, model.fc3]
    rates = [args.rate, args.rate, args.output_rate]
    n = xtr.shape[0]
    steps_per_round = args.epochs * math.ceil(n / args.batch)

    total_train = total_prune = 0.0
    t_all = time.perf_counter()
    for r in range(args.rounds + 1):
        t_round = time.perf_counter()
        prune_seconds = 0.0
        if r > 0:
            t0 = time.perf_counter()
            for m, rate in zip(layers, rates):
                # Pruned by the trained weights' magnitude; a weight already
                # pruned stays pruned (the container prunes among the survivors).
                prune.l1_unstructured(m, "weight", amount=rate)
            with torch.no_grad():  # rewind to the initial weights
                for name, m in zip(("fc1", "fc2", "fc3"), layers):
                    m.weight_orig.copy_(init[name + ".weight"])
                    m.bias.copy_(init[name + ".bias"])
            prune_seconds = time.perf_counter() - t0
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        step = 0
        train_seconds = 0.0
        acc = None
        loss_sum = 0.0
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            perm = torch.randperm(n)
            for i in range(0, n, args.batch):
                for g in opt.param_groups:
                    g["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / steps_per_round)))
                idx = perm[i:i + args.batch]
                opt.zero_grad()
                loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
                loss.backward()
                opt.step()
                loss_sum += loss.item()
                step += 1
            train_seconds += time.perf_counter() - t0
            acc = eval_classifier(model, xte, yte)
        d, per_layer = density(model)
        total_train += train_seconds
        total_prune += prune_seconds
        emit({"event": "round", "round": r, "density": round(d, 6), "layers": per_layer,
              "test_accuracy": round(acc, 6), "train_loss": round(loss_sum / step, 6),
              "train_seconds": round(train_seconds, 4), "prune_seconds": round(prune_seconds, 4),
              "seconds": round(time.perf_counter() - t_round, 4), "steps": step})
    total = time.perf_counter() - t_all
    emit({"event": "summary", "torch": torch.__version__, "threads": args.threads,
          "torch_get_num_threads": torch.get_num_threads(), "rounds": args.rounds,
          "epochs": args.epochs, "total_train_seconds": round(total_train, 4),
          "total_prune_seconds": round(total_prune, 4), "total_seconds": round(total, 4),
          "final_test_accuracy": round(acc, 6), "final_density": round(d, 6),
          "python": platform.python_version(), "executable": sys.executable,
          "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}})


if __name__ == "__main__":
    main()
