#!/usr/bin/env python3
"""PyTorch side of issue #5's linear-layer figure (bench/sparse_linear.sh).

One (size x size) linear layer y = x W^T (inference: torch.no_grad, no bias)
with random unstructured sparsity, batch-major x: (B, in), per sparsity and
batch:
  dense   the masked weight as a dense tensor, timed through every dense path
          that gives the same product: F.linear(x, w), x @ w_t (w_t the
          contiguous transpose, made once), and for B = 1 torch.mv(w, x[0]);
          the fastest is "dense_ms" (PyTorch's best dense path).
  csr     w.to_sparse_csr() (made once: load time), torch.sparse.mm(w_csr, x.t())
          (falls back to w_csr @ x.t() where sparse.mm rejects CSR); the
          (out, B) result is returned as its transposed view, not copied.
  coo     w.to_sparse() (coalesced COO), torch.sparse.mm(w_coo, x.t()).
Weights and inputs ~ U(-1, 1), mask ~ Bernoulli(1 - sparsity), fixed seed (a
torch generator: the same distribution as pare's side, not the same numbers).

Timing: warm-up, then the variants of a cell run in alternation until each
has run ~--seconds (at least 10 rounds, so a variant slower than
--seconds / 10 runs 10 times), each call timed alone
(time.perf_counter); medians are reported. stdout gets one JSON object per
cell; progress goes to stderr.

Set OMP_NUM_THREADS, MKL_NUM_THREADS and OPENBLAS_NUM_THREADS to --threads as
well: torch.set_num_threads does not limit a pthread OpenBLAS (Debian's torch
uses one for its dense products). Works with Debian's torch 1.13
(/usr/bin/python3) and current PyPI torch.
"""

import argparse
import json
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def time_variants(variants, seconds):
    """variants: dict name -> callable. Returns dict name -> list of seconds."""
    once = {}
    for name, fn in variants.items():
        for _ in range(3):
            fn()
        t = time.perf_counter()
        fn()
        once[name] = max(time.perf_counter() - t, 1e-7)
    slowest = max(once.values())
    rounds = int(min(max(seconds / slowest, 10), 1e5))
    per_round = seconds / rounds
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            calls = int(min(max(per_round / once[name], 1), 1000))
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return times, rounds


def sparse_mm_fn(w_sp, xt):
    """torch.sparse.mm(w_sp, xt) if this torch supports it for w_sp's layout, else w_sp @ xt."""
    try:
        torch.sparse.mm(w_sp, xt)
        return lambda: torch.sparse.mm(w_sp, xt).t()
    except (RuntimeError, NotImplementedError, TypeError):
        w_sp @ xt
        return lambda: (w_sp @ xt).t()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--sparsities", default="0.9,0.95")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-coo", action="store_true", help="skip the COO path")
    args = ap.parse_args()

    warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
    torch.set_num_threads(args.threads)
    n = args.size
    log(f"torch_sparse_linear: torch {torch.__version__}, {n}x{n}, "
        f"threads {torch.get_num_threads()}")
    g = torch.Generator().manual_seed(args.seed)
    w_full = torch.rand(n, n, generator=g) * 2 - 1
    batches = [int(b) for b in args.batches.split(",")]
    x_all = torch.rand(max(batches), n, generator=g) * 2 - 1

    with torch.no_grad():
        for sparsity in [float(s) for s in args.sparsities.split(",")]:
            gm = torch.Generator().manual_seed(args.seed * 1000003 + round(sparsity * 1e6))
            mask = (torch.rand(n, n, generator=gm) >= sparsity).float()
            w = (w_full * mask).contiguous()
            w_t = w.t().contiguous()
            t0 = time.perf_counter()
            w_csr = w.to_sparse_csr()
            csr_prep = time.perf_counter() - t0
            nnz = int(w_csr.values().numel())
            w_coo = None
            if not args.no_coo:
                t0 = time.perf_counter()
                w_coo = w.to_sparse().coalesce()
                coo_prep = time.perf_counter() - t0
            log(f"sparsity {sparsity:.4f}: nnz {nnz} (density {nnz / (n * n):.4f}), "
                f"to_sparse_csr {csr_prep * 1e3:.1f} ms")

            for b in batches:
                x = x_all[:b].contiguous()
                xt = x.t()
                dense = {"linear": lambda: F.linear(x, w), "matmul_wt": lambda: x @ w_t}
                if b == 1:
                    x0 = x[0]
                    dense["mv"] = lambda: torch.mv(w, x0)
                variants = dict(dense)
                errors = {}
                for name, w_sp in (("csr", w_csr), ("coo", w_coo)):
                    if w_sp is None:
                        continue
                    try:
                        variants[name] = sparse_mm_fn(w_sp, xt)
                    except Exception as e:  # an unsupported layout in this torch
                        errors[name] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                        log(f"  {name} unavailable: {errors[name]}")

                ref = F.linear(x, w).double()
                scale = ref.abs().max().item()
                rel_err = {}
                for name, fn in variants.items():
                    y = fn().reshape(b, n).double()
                    rel_err[name] = (y - ref).abs().max().item() / (scale or 1.0)

                times, rounds = time_variants(variants, args.seconds)
                med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
                best = min(dense, key=lambda k: med[k])
                out = {
                    "side": "torch", "torch": torch.__version__, "rows": n, "cols": n,
                    "sparsity": sparsity, "density": nnz / (n * n), "nnz": nnz, "batch": b,
                    "threads": torch.get_num_threads(),
                    "dense_ms": med[best], "dense_variant": best,
                    "csr_ms": med.get("csr"), "coo_ms": med.get("coo"),
                    "csr_vs_dense": med["csr"] / med[best] if "csr" in med else None,
                    "rounds": rounds, "variants_ms": med, "max_rel_err": rel_err,
                    "csr_prep_ms": csr_prep * 1e3,
                    "coo_prep_ms": coo_prep * 1e3 if w_coo is not None else None,
                    "errors": errors,
                }
                print(json.dumps(out), flush=True)
                log(f"  batch {b:3d}: dense {med[best]:.3f} ms ({best}), "
                    + ", ".join(f"{k} {med[k]:.3f} ms" for k in ("csr", "coo") if k in med))


if __name__ == "__main__":
    main()
