"""Loads a pare safetensors export into PyTorch and checks it (see safetensors_torch.sh).

Usage: safetensors_torch.py FILE.safetensors TEST.csv PARE_ACCURACY
"""
import csv
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def main() -> int:
    path, test_csv, pare_accuracy = sys.argv[1], sys.argv[2], float(sys.argv[3])
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    spec = json.loads(meta["pare_spec"])
    # Masks: U8 0/1 of the weight's shape; the masked weights are exactly 0.
    for name, t in tensors.items():
        if name.endswith(".mask"):
            w = tensors[name[: -len(".mask")]]
            assert t.dtype == torch.uint8 and t.shape == w.shape, name
            assert torch.all(w[t == 0] == 0), f"{name}: pruned weights are not 0"
            assert 0 < int(t.sum()) < t.numel(), f"{name}: not a partial mask"
    layers, index, width = [], 0, spec["input"][0]
    for layer in spec["layers"]:
        index += 1
        if layer["type"] == "linear":
            lin = torch.nn.Linear(width, layer["out"], bias=layer.get("bias", True))
            lin.load_state_dict({"weight": tensors[f"linear{index}.weight"],
                                 "bias": tensors[f"linear{index}.bias"]})
            layers.append(lin)
            width = layer["out"]
        elif layer["type"] == "relu":
            layers.append(torch.nn.ReLU())
        else:
            raise SystemExit(f"unexpected layer {layer['type']}")
    net = torch.nn.Sequential(*layers).eval()
    rows = list(csv.DictReader(open(test_csv)))
    x = torch.tensor([[float(r["x"]), float(r["y"])] for r in rows], dtype=torch.float32)
    y = torch.tensor([int(r["label"]) for r in rows])
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    print(f"torch {torch.__version__}: accuracy {acc:.4f}, pare {pare_accuracy:.4f}")
    # The same float network: the same predictions up to an argmax tie.
    if abs(acc - pare_accuracy) > 1.0 / len(rows) + 1e-9:
        print("FAIL: accuracies differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
