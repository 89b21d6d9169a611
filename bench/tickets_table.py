#!/usr/bin/env python3
"""Tables for docs/tickets.md from the runs bench/tickets.sh wrote.

Usage: python3 bench/tickets_table.py runs/tickets
Accuracies are final test accuracies (after the last epoch), averaged over
seeds (with the spread when there is more than one); costs are training FLOPs
of the weight layers at the densities each step really had, and training
seconds (the loop, evaluation excluded), summed over every round a method
needed.
"""
import glob
import json
import os
import statistics
import sys


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def fit_log(path):
    """(final accuracy, sparsity, flops, dense flops, train seconds) of a fit() run."""
    lines = read_jsonl(path)
    end = [l for l in lines if l.get("event") == "end"]
    if not end:
        return None
    secs = sum(l.get("train_seconds", 0) for l in lines if l.get("event") == "epoch")
    e = end[-1]
    return dict(acc=e["test_accuracy"], sparsity=e.get("sparsity", 0), flops=e.get("flops", 0),
                dense_flops=e.get("dense_flops", 0), seconds=secs)


def mean_sd(v):
    if not v:
        return "-"
    m = 100 * statistics.mean(v)
    if len(v) == 1:
        return "%.2f %%" % m
    return "%.2f ± %.2f %%" % (m, 100 * statistics.stdev(v))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/tickets"
    seeds = sorted(glob.glob(os.path.join(out, "seed*")))
    if not seeds:
        sys.exit("no seed*/ directories in %s" % out)
    dense, imp = [], []
    methods = {}  # (method, target) -> list of dicts
    for sd in seeds:
        d = fit_log(os.path.join(sd, "dense", "log.jsonl"))
        if d:
            dense.append(d)
        rj = os.path.join(sd, "imp", "results.json")
        if os.path.exists(rj):
            with open(rj) as f:
                imp.append(json.load(f)["runs"])
        for path in glob.glob(os.path.join(sd, "*-0.*")):
            name = os.path.basename(path)
            method, target = name.rsplit("-", 1)
            res = os.path.join(path, "result.json")
            if os.path.exists(res):
                with open(res) as f:
                    r = json.load(f)
                secs = r.get("prune_seconds", 0)
                lg = fit_log(os.path.join(path, "log.jsonl"))
                if lg:
                    secs += lg["seconds"]
                methods.setdefault((method, target), []).append(
                    dict(acc=r["test_accuracy"], sparsity=r["sparsity"], flops=r.get("flops", 0),
                         seconds=secs))
            else:
                lg = fit_log(os.path.join(path, "log.jsonl"))
                if lg:
                    methods.setdefault((method, target), []).append(lg)

    dense_acc = statistics.mean(d["acc"] for d in dense) if dense else None
    print("Seeds: %d (%s). Dense LeNet-300-100: %s test accuracy, %.1f GFLOP, %.1f s of training.\n"
          % (len(seeds), ", ".join(os.path.basename(s) for s in seeds), mean_sd([d["acc"] for d in dense]),
             statistics.mean(d["flops"] for d in dense) / 1e9 if dense else 0,
             statistics.mean(d["seconds"] for d in dense) if dense else 0))

    # IMP rounds.
    if imp:
        print("### Iterative magnitude pruning, rewind to init (20 % per round, output layer 10 %)\n")
        print("| round | weights left | ticket | random reinit (same mask) | random mask (same layer sparsity) "
              "| cumulative GFLOP | cumulative s |")
        print("|---|---|---|---|---|---|---|")
        rounds = sorted({r["round"] for runs in imp for r in runs})
        for rd in rounds:
            def col(kind, key="test_accuracy"):
                return [r[key] for runs in imp for r in runs if r["round"] == rd and r["kind"] == kind]
            dens = col("ticket", "density")
            print("| %d | %.2f %% | %s | %s | %s | %.0f | %.1f |" % (
                rd, 100 * statistics.mean(dens), mean_sd(col("ticket")), mean_sd(col("reinit")),
                mean_sd(col("random")), statistics.mean(col("ticket", "cumulative_flops")) / 1e9,
                statistics.mean(col("ticket", "cumulative_seconds"))))
        print()

    def imp_at(target):
        """The first IMP round at or past the target sparsity, per seed."""
        got = []
        for runs in imp:
            t = [r for r in runs if r["kind"] == "ticket" and r["sparsity"] >= float(target) - 1e-9]
            if t:
                got.append(min(t, key=lambda r: r["round"]))
        return got

    targets = sorted({t for _, t in methods}, key=float)
    for target in targets:
        print("### %g %% sparsity\n" % (100 * float(target)))
        print("| method | sparsity reached | test accuracy | vs dense | training GFLOP (dense would be) | training s |")
        print("|---|---|---|---|---|---|")
        rows = []
        it = imp_at(target)
        if it:
            rows.append(("IMP, rewind to init (rounds 0..%d)" % it[0]["round"],
                         [dict(acc=r["test_accuracy"], sparsity=r["sparsity"], flops=r["cumulative_flops"],
                               seconds=r["cumulative_seconds"]) for r in it]))
        names = {"snip": "SNIP (at init)", "grasp": "GraSP (at init)", "synflow": "SynFlow (at init, 100 iterations)",
                 "random": "random (at init)", "magnitude": "magnitude (at init)",
                 "gmp": "gradual magnitude (Zhu & Gupta)", "set": "SET (ERK)", "rigl": "RigL (ERK)",
                 "rigl2x": "RigL (ERK), twice the epochs"}
        for key in ["snip", "grasp", "synflow", "random", "magnitude", "gmp", "set", "rigl", "rigl2x"]:
            if (key, target) in methods:
                rows.append((names[key], methods[(key, target)]))
        dense_flops = statistics.mean(d["dense_flops"] for d in dense) if dense else 0
        for name, rs in rows:
            acc = [r["acc"] for r in rs]
            delta = "%+.2f" % (100 * (statistics.mean(acc) - dense_acc)) if dense_acc is not None else "-"
            print("| %s | %.2f %% | %s | %s | %.0f (%.0f) | %.1f |" % (
                name, 100 * statistics.mean(r["sparsity"] for r in rs), mean_sd(acc), delta,
                statistics.mean(r["flops"] for r in rs) / 1e9, dense_flops / 1e9,
                statistics.mean(r["seconds"] for r in rs)))
        print()

    # The checks, measured.
    if imp and dense_acc is not None:
        print("### Checks\n")
        def ticket_at_most(density):
            got = []
            for runs in imp:
                t = [r for r in runs if r["kind"] == "ticket" and r["density"] <= density + 1e-9]
                if t:
                    first = min(t, key=lambda r: r["round"])
                    reinit = [r for r in runs if r["round"] == first["round"] and r["kind"] == "reinit"]
                    got.append((first, reinit[0] if reinit else None))
            return got
        for density, margin in ((0.107, -0.3), (0.036, -1.0)):
            g = ticket_at_most(density)
            if not g:
                print("- no ticket at <= %.1f %% of the weights yet" % (100 * density))
                continue
            acc = statistics.mean(t["test_accuracy"] for t, _ in g)
            ok = acc - dense_acc >= margin / 100
            print("- ticket at %.2f %% of the weights (round %d): %.2f %% vs dense %.2f %% (%+.2f points; "
                  "needs >= %+.1f): %s" % (100 * g[0][0]["density"], g[0][0]["round"], 100 * acc, 100 * dense_acc,
                                           100 * (acc - dense_acc), margin, "met" if ok else "NOT met"))
            if density == 0.036 and all(r for _, r in g):
                racc = statistics.mean(r["test_accuracy"] for _, r in g)
                print("- random reinit at that mask: %.2f %% (%.2f points below the ticket; needs >= 1.5): %s"
                      % (100 * racc, 100 * (acc - racc), "met" if acc - racc >= 0.015 else "NOT met"))
        for key, label in (("rigl", "RigL"), ("rigl2x", "RigL with twice the epochs")):
            rig = methods.get((key, "0.9"))
            if rig:
                acc = statistics.mean(r["acc"] for r in rig)
                print("- %s at 90 %%: %.2f %% vs dense %.2f %% (%+.2f points; needs >= -1.0): %s"
                      % (label, 100 * acc, 100 * dense_acc, 100 * (acc - dense_acc),
                         "met" if acc - dense_acc >= -0.01 else "NOT met"))


if __name__ == "__main__":
    main()
