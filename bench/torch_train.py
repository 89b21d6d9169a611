#!/usr/bin/env python3
"""PyTorch side of pare's side-by-side training benchmark (CPU only).

Models
  lenet300  784-300-100-10, ReLU, softmax cross-entropy      (Fashion-MNIST)
  lenet5    conv5x5 1->6 pad 2, ReLU, maxpool 2; conv5x5 6->16, ReLU,
            maxpool 2; fc 400-120-84-10 ReLU                  (Fashion-MNIST)
  life      Springer & Kenyon minimal Game of Life net: per step conv3x3
            (circular padding) in->2m + ReLU, conv1x1 2m->m + ReLU; then
            conv1x1 m->1, BCEWithLogitsLoss (in = 1 for the first step, m after)

Fashion-MNIST is read from the idx .gz files with gzip + numpy (FMNIST_DIR or
--data-dir, default Debian's dataset-fashion-mnist location), scaled to [0, 1]
without normalisation and kept in RAM as float32 tensors. Adam lr 1.2e-3,
batch 60, a fresh shuffle each epoch. Life: 32x32 toroidal boards, density
~ U(0, 1) per board, generated with numpy before training (not timed), kept as
float32 tensors; batch 8, Adam lr 1e-3; one epoch = one pass over --boards.

Per epoch the training loop is timed (shuffle + batch indexing + forward +
backward + optimizer step; evaluation excluded). stdout gets one JSON object
per epoch ({"event": "epoch", ...}) and a final summary line
({"event": "summary", "model", "torch", "threads", "epoch_seconds",
"best_epoch_seconds", "samples_per_second", "test_accuracy",
"peak_rss_bytes", ...}). samples_per_second in the summary is taken from the
best (shortest) epoch. For life, samples are boards and test_accuracy is the
cell accuracy on --test-boards fresh boards.

Set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (and MKL_NUM_THREADS) in the
environment as well as --threads: torch.set_num_threads does not limit a
pthread OpenBLAS. Works with Debian's torch 1.13 (/usr/bin/python3) and
current PyPI torch.
"""

import argparse
import gzip
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


def peak_rss_bytes():
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


# ---------------------------------------------------------------- data

def read_idx_gz(path, header_bytes):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=header_bytes)


def load_fashion_mnist(data_dir):
    def images(name):
        a = read_idx_gz(os.path.join(data_dir, name), 16)
        t = torch.from_numpy(a.copy()).view(-1, 1, 28, 28)
        return t.to(torch.float32).div_(255.0)  # no float64 temporaries

    def labels(name):
        a = read_idx_gz(os.path.join(data_dir, name), 8)
        return torch.from_numpy(a.astype(np.int64))

    xtr = images("train-images-idx3-ubyte.gz")
    ytr = labels("train-labels-idx1-ubyte.gz")
    xte = images("t10k-images-idx3-ubyte.gz")
    yte = labels("t10k-labels-idx1-ubyte.gz")
    assert xtr.shape[0] == ytr.shape[0] == 60000, xtr.shape
    assert xte.shape[0] == yte.shape[0] == 10000, xte.shape
    return xtr, ytr, xte, yte


def life_step_np(b):
    """One Game of Life step on a batch of toroidal boards (N, H, W) uint8."""
    n = sum(np.roll(np.roll(b, dy, axis=1), dx, axis=2)
            for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
    return ((n == 3) | ((b == 1) & (n == 2))).astype(np.uint8)


def make_life_boards(count, size, steps, seed, chunk=4096):
    """Boards with per-board density ~ U(0,1); returns float32 (x, y) of
    shape (count, 1, size, size). Generated in chunks so the numpy
    temporaries stay small next to the float tensors (peak RSS)."""
    rng = np.random.default_rng(seed)
    x = torch.empty(count, 1, size, size, dtype=torch.float32)
    y = torch.empty(count, 1, size, size, dtype=torch.float32)
    for s in range(0, count, chunk):
        n = min(chunk, count - s)
        d = rng.random(n, dtype=np.float32)[:, None, None]
        b = (rng.random((n, size, size), dtype=np.float32) < d).astype(np.uint8)
        t = b
        for _ in range(steps):
            t = life_step_np(t)
        x[s:s + n, 0] = torch.from_numpy(b)
        y[s:s + n, 0] = torch.from_numpy(t)
    return x, y


# ---------------------------------------------------------------- models

class LeNet300(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, 10)

    def forward(self, x):
        x = x.reshape(x.shape[0], 784)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.reshape(x.shape[0], 400)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LifeNet(nn.Module):
    def __init__(self, m, steps):
        super().__init__()
        layers = []
        cin = 1
        for _ in range(steps):
            layers += [nn.Conv2d(cin, 2 * m, 3, padding=1, padding_mode="circular"),
                       nn.ReLU(),
                       nn.Conv2d(2 * m, m, 1),
                       nn.ReLU()]
            cin = m
        layers.append(nn.Conv2d(m, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)  # logits


# ---------------------------------------------------------------- train

@torch.no_grad()
def eval_classifier(model, x, y, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    model.train()
    return correct / x.shape[0]


@torch.no_grad()
def eval_life(model, x, y, batch=500):
    model.eval()
    cells_ok = 0
    boards_ok = 0
    for i in range(0, x.shape[0], batch):
        pred = (model(x[i:i + batch]) > 0).to(torch.float32)
        ok = pred == y[i:i + batch]
        cells_ok += int(ok.sum())
        boards_ok += int(ok.flatten(1).all(1).sum())
    model.train()
    return cells_ok / y.numel(), boards_ok / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=["lenet300", "lenet5", "life"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=None,
                    help="default 60 (Fashion-MNIST) / 8 (life)")
    ap.add_argument("--lr", type=float, default=None,
                    help="default 1.2e-3 (Fashion-MNIST) / 1e-3 (life)")
    ap.add_argument("--data-dir", default=os.environ.get("FMNIST_DIR", DEFAULT_FMNIST_DIR))
    ap.add_argument("--m", type=int, default=1, help="life: width m")
    ap.add_argument("--steps", type=int, default=1, help="life: Game of Life steps")
    ap.add_argument("--boards", type=int, default=80000, help="life: training boards per epoch")
    ap.add_argument("--test-boards", type=int, default=1000, help="life: fresh evaluation boards")
    ap.add_argument("--size", type=int, default=32, help="life: board side")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    life = args.model == "life"
    batch = args.batch or (8 if life else 60)
    lr = args.lr or (1e-3 if life else 1.2e-3)

    t_load = time.perf_counter()
    if life:
        xtr, ytr = make_life_boards(args.boards, args.size, args.steps, args.seed)
        xte, yte = make_life_boards(args.test_boards, args.size, args.steps, args.seed + 1_000_003)
        model = LifeNet(args.m, args.steps)
        loss_fn = nn.BCEWithLogitsLoss()
    else:
        xtr, ytr, xte, yte = load_fashion_mnist(args.data_dir)
        model = LeNet300() if args.model == "lenet300" else LeNet5()
        loss_fn = nn.CrossEntropyLoss()
    data_bytes = sum(t.numel() * t.element_size() for t in (xtr, ytr, xte, yte))
    log("torch_train: %s data ready in %.2f s (%d train samples, %.1f MB as tensors)"
        % (args.model, time.perf_counter() - t_load, xtr.shape[0], data_bytes / 1e6))

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = xtr.shape[0]
    params = sum(p.numel() for p in model.parameters())

    epoch_seconds = []
    test_acc = None
    extra = {}
    for epoch in range(1, args.epochs + 1):
        loss_sum = 0.0
        steps = 0
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            xb = xtr[idx]
            yb = ytr[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            steps += 1
        secs = time.perf_counter() - t0
        epoch_seconds.append(secs)

        rec = {"event": "epoch", "model": args.model, "epoch": epoch,
               "train_seconds": round(secs, 4),
               "samples_per_second": round(n / secs, 1),
               "train_loss": round(loss_sum / steps, 6)}
        if life:
            cell_acc, board_acc = eval_life(model, xte, yte)
            test_acc = cell_acc
            rec["boards_per_second"] = rec["samples_per_second"]
            rec["test_accuracy"] = round(cell_acc, 6)
            rec["test_boards_correct"] = round(board_acc, 6)
            extra["test_boards_correct"] = rec["test_boards_correct"]
        else:
            test_acc = eval_classifier(model, xte, yte)
            rec["test_accuracy"] = round(test_acc, 6)
        extra["final_train_loss"] = rec["train_loss"]
        emit(rec)

    best = min(epoch_seconds)
    summary = {
        "event": "summary",
        "model": args.model,
        "torch": torch.__version__,
        "threads": args.threads,
        "epoch_seconds": [round(s, 4) for s in epoch_seconds],
        "best_epoch_seconds": round(best, 4),
        "samples_per_second": round(n / best, 1),
        "test_accuracy": round(test_acc, 6) if test_acc is not None else None,
        "peak_rss_bytes": peak_rss_bytes(),
        "samples_per_epoch": n,
        "batch": batch,
        "lr": lr,
        "params": params,
        "seed": args.seed,
        "data_bytes": data_bytes,
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch_get_num_threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k) for k in
                ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    if life:
        summary.update({"m": args.m, "steps": args.steps, "boards": n,
                        "boards_per_second": summary["samples_per_second"]})
    summary.update(extra)
    emit(summary)


if __name__ == "__main__":
    main()
