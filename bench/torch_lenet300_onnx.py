#!/usr/bin/env python3
"""Trains LeNet-300-100 in PyTorch and exports it as ONNX for `pare import` (bench/onnx_import.sh).

784-300-100-10 with ReLU, Adam (lr 1.2e-3, batch 60, a fresh shuffle each epoch), softmax cross-entropy, on
Fashion-MNIST read from Debian's dataset-fashion-mnist (IDX .gz files, --data-dir). Pixels are scaled to [0, 1]
as v / 255 in float32, exactly as pare's `--data fashion-mnist` loader does (src/data/idx.cc), and nothing else:
no normalization inside or outside the model, so the exported graph is Gemm/Relu only and pare feeds it the same
inputs. The model takes (N, 784); pare reshapes its (N, 1, 28, 28) images to the model's [784] input.

Writes OUT/model.onnx (torch.onnx.export, opset --opset, symbolic batch), OUT/torch_logits.npy (float32
(10000, 10), the test set in file order) and prints one JSON line:
{"torch": ..., "epochs": ..., "test_accuracy": ..., "train_seconds": ...}.

Works with Debian's torch 1.13 (/usr/bin/python3).
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

DEFAULT_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx_gz(path, header_bytes):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header_bytes)


def load(data_dir):
    def images(name):
        a = read_idx_gz(os.path.join(data_dir, name), 16).reshape(-1, 784)
        return torch.from_numpy(a.astype(np.float32) / np.float32(255.0))  # float32 v / 255: pare's bits

    def labels(name):
        return torch.from_numpy(read_idx_gz(os.path.join(data_dir, name), 8).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1.2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--data-dir", default=os.environ.get("FMNIST_DIR", DEFAULT_FMNIST_DIR))
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    xtr, ytr, xte, yte = load(a.data_dir)
    assert xtr.shape == (60000, 784) and xte.shape == (10000, 784), (xtr.shape, xte.shape)

    net = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    loss_fn = nn.CrossEntropyLoss()
    start = time.time()
    for epoch in range(1, a.epochs + 1):
        net.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), a.batch):
            idx = perm[i:i + a.batch]
            opt.zero_grad()
            loss_fn(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch}/{a.epochs}: test accuracy {100 * acc:.2f}%", file=sys.stderr, flush=True)
    seconds = time.time() - start

    net.eval()
    with torch.no_grad():
        logits = net(xte)
    acc = (logits.argmax(1) == yte).float().mean().item()
    np.save(os.path.join(a.out, "torch_logits.npy"), logits.numpy().astype(np.float32))
    torch.onnx.export(net, xte[:2], os.path.join(a.out, "model.onnx"), opset_version=a.opset,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    print(json.dumps({"torch": torch.__version__, "epochs": a.epochs, "seed": a.seed, "opset": a.opset,
                      "test_accuracy": acc, "train_seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
