"""Helper of onnx_torch_import.sh: torch (Debian's python3-torch 1.13) models exported with torch.onnx.export.

Usage:
  onnx_torch_import.py make OUT_DIR
      trains each model of MODELS briefly on synthetic data and writes, per model and opset,
      OUT_DIR/<model>_op<opset>.onnx, plus per data set OUT_DIR/<data>_{train,test}_{x,y}.npy and per model
      OUT_DIR/<model>.torch_out.npy (torch's logits on the test inputs, before any softmax);
      prints the ops each export holds. Also writes OUT_DIR/bad_leakyrelu.onnx (an op pare does not import).
  onnx_torch_import.py compare TORCH_OUT.npy PARE_OUT.npy
      max |pare - torch| <= 1e-4 and the same shape, or exit 1 with the numbers.
"""
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_data import bar_images, save_xy  # noqa: E402

TOL = 1e-4
OPSETS = (13, 14)


def models():
    import torch
    import torch.nn as nn

    class MatMulMLP(nn.Module):
        """x @ W + b written out: torch exports MatMul + Add instead of Gemm."""

        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(12, 20) * 0.3)
            self.b1 = nn.Parameter(torch.randn(20) * 0.1)
            self.w2 = nn.Parameter(torch.randn(20, 4) * 0.3)
            self.b2 = nn.Parameter(torch.randn(4) * 0.1)

        def forward(self, x):
            return torch.relu(x @ self.w1 + self.b1) @ self.w2 + self.b2

    def mlp():
        return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 16), nn.ReLU(),
                             nn.Linear(16, 4))

    def cnn():
        # (1,8,8) -> conv (4,8,8) -> maxpool (4,4,4) -> conv (8,4,4) -> avgpool (8,2,2) -> 32 -> 16 -> 3
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))

    class ViewCNN(nn.Module):
        """A strided conv without bias, tanh, sigmoid, and x.view(x.size(0), -1) instead of nn.Flatten: with a
        symbolic batch torch writes that as Shape, Gather, Unsqueeze, Concat and Reshape."""

        def __init__(self):
            super().__init__()
            # (1,8,8) -> conv stride 2 (6,4,4) -> conv (8,4,4) -> maxpool (8,2,2) -> 32 -> 3
            self.c1 = nn.Conv2d(1, 6, 3, stride=2, padding=1, bias=False)
            self.c2 = nn.Conv2d(6, 8, 3, padding=1)
            self.fc = nn.Linear(32, 3)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.sigmoid(self.c2(torch.tanh(self.c1(x)))), 2)
            return self.fc(x.view(x.size(0), -1))

    def cnn_bn():
        # BatchNorm2d after a conv: torch.onnx.export of the eval-mode net folds it into the Conv's weights.
        return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(96, 3))

    # name: (data set, constructor or the name of a net trained before, the exported module around it or None)
    return {
        "mlp": ("vec", mlp, None),
        "mlp_matmul": ("vec", MatMulMLP, None),
        # The trained mlp with a Softmax at the end: pare drops it, so its outputs are still the logits.
        "mlp_softmax": ("vec", "mlp", lambda m: nn.Sequential(m, nn.Softmax(dim=1))),
        "cnn": ("img", cnn, None),
        "cnn_view": ("img", ViewCNN, None),
        "cnn_bn": ("img", cnn_bn, None),
    }


def make_data(out):
    rng = np.random.default_rng(11)
    w = rng.normal(size=(12, 4))
    for split, n in (("train", 600), ("test", 200)):
        x = rng.normal(size=(n, 12)).astype(np.float32)
        y = np.argmax(x @ w, axis=1).astype(np.int32)
        save_xy(f"{out}/vec_{split}", x, y)
    for split, n in (("train", 480), ("test", 160)):
        x, y = bar_images(rng, n)
        save_xy(f"{out}/img_{split}", x, y)


def export(module, x, path, opset):
    import torch
    torch.onnx.export(module, x, path, opset_version=opset, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)


def _fields(buf):
    """(field number, wire type, value) of a protobuf message; value is bytes for length-delimited fields."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield num, wire, val


def _varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def ops_of(path):
    """The op types of an ONNX file's graph nodes (ModelProto.graph = 7, GraphProto.node = 1,
    NodeProto.op_type = 4), read without the onnx package, which Debian's torch does not need."""
    data = open(path, "rb").read()
    graph = next(v for n, w, v in _fields(data) if n == 7 and w == 2)
    return [next(v for n, w, v in _fields(node) if n == 4).decode()
            for num, wire, node in _fields(graph) if num == 1 and wire == 2]


# The ops each export must hold (what the test claims to cover).
EXPECTED_OPS = {
    "mlp": {"Gemm", "Relu"},
    "mlp_matmul": {"MatMul", "Add", "Relu"},
    "mlp_softmax": {"Gemm", "Relu", "Softmax"},
    "cnn": {"Conv", "Relu", "MaxPool", "AveragePool", "Flatten", "Gemm"},
    "cnn_view": {"Conv", "Tanh", "Sigmoid", "MaxPool", "Shape", "Gather", "Reshape", "Gemm"},
    "cnn_bn": {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"},
}
# Ops an export must not hold (cnn_bn: the BatchNormalization is folded).
ABSENT_OPS = {"cnn_bn": {"BatchNormalization"}}


def make(out):
    import torch
    import torch.nn as nn
    torch.manual_seed(0)
    make_data(out)
    trained = {}
    for name, (data, ctor, wrap) in models().items():
        if isinstance(ctor, str):
            net = trained[ctor]
        else:
            net = ctor()
            x = torch.from_numpy(np.load(f"{out}/{data}_train_x.npy"))
            y = torch.from_numpy(np.load(f"{out}/{data}_train_y.npy")).long()
            opt = torch.optim.Adam(net.parameters(), lr=0.01)
            net.train()
            for epoch in range(3):
                for i in range(0, len(x), 32):
                    opt.zero_grad()
                    nn.functional.cross_entropy(net(x[i:i + 32]), y[i:i + 32]).backward()
                    opt.step()
            net.eval()
            trained[name] = net
        xt = torch.from_numpy(np.load(f"{out}/{data}_test_x.npy"))
        yt = np.load(f"{out}/{data}_test_y.npy")
        with torch.no_grad():
            logits = net(xt).numpy().astype(np.float32)
        np.save(f"{out}/{name}.torch_out.npy", logits)
        exported = net if wrap is None else wrap(net).eval()
        for opset in OPSETS if wrap is None else OPSETS[:1]:
            path = f"{out}/{name}_op{opset}.onnx"
            export(exported, xt[:2], path, opset)
            ops = ops_of(path)
            print(f"  torch {torch.__version__}: {name} opset {opset}, test accuracy "
                  f"{100 * np.mean(logits.argmax(1) == yt):.1f}%, ops {' '.join(ops)}")
            if not EXPECTED_OPS[name] <= set(ops):
                sys.exit(f"FAIL: {path} lacks {EXPECTED_OPS[name] - set(ops)}: the test does not cover them")
            if ABSENT_OPS.get(name, set()) & set(ops):
                sys.exit(f"FAIL: {path} holds {ABSENT_OPS[name] & set(ops)}: torch did not fold it")
    bad = nn.Sequential(nn.Linear(12, 8), nn.LeakyReLU(0.1), nn.Linear(8, 4)).eval()
    export(bad, torch.zeros(2, 12), f"{out}/bad_leakyrelu.onnx", 13)


def compare(torch_path, pare_path):
    t, p = np.load(torch_path), np.load(pare_path)
    if t.shape != p.shape:
        print(f"FAIL: pare outputs {p.dtype} {p.shape}, torch {t.shape}", file=sys.stderr)
        return 1
    d = np.abs(t.astype(np.float64) - p)
    agree = float(np.mean(t.argmax(1) == p.argmax(1)))
    print(f"  max|pare-torch| {d.max():.3g} (tolerance {TOL:g}), argmax agreement {100 * agree:.2f}%")
    if not d.max() <= TOL:
        print(f"FAIL: {pare_path} differs from {torch_path} by {d.max():.3g} > {TOL:g}", file=sys.stderr)
        return 1
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        return compare(sys.argv[2], sys.argv[3])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
