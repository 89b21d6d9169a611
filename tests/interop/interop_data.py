"""Synthetic data shared by the interop tests' Python helpers (onnx_ort.py, onnx_torch_import.py).

The helpers import it from their own directory:
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
"""
import numpy as np


def bar_images(rng, n):
    """n 1x8x8 images of a bar, horizontal (0), vertical (1) or diagonal (2), at a random offset, plus noise:
    (x float32 (n, 1, 8, 8), y int32 (n,)), drawn from the numpy Generator rng."""
    x = (0.2 * rng.normal(size=(n, 1, 8, 8))).astype(np.float32)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    for i in range(n):
        k = rng.integers(1, 7)
        if y[i] == 0:
            x[i, 0, k, 1:7] += 1.0
        elif y[i] == 1:
            x[i, 0, 1:7, k] += 1.0
        else:
            for j in range(8):
                x[i, 0, j, (j + k) % 8] += 1.0
    return x, y


def save_xy(prefix, x, y):
    """Writes x and y as PREFIX_x.npy and PREFIX_y.npy (pare's --data and --labels)."""
    np.save(f"{prefix}_x.npy", x)
    np.save(f"{prefix}_y.npy", y)
