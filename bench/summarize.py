#!/usr/bin/env python3
"""Helper of bench/run_train.sh (standard library only).

  summarize.py run MANIFEST --model M --side S [--threads T] [--env K=V ...]
                   [--pare-dir DIR] [--samples N] [--timeout S]
                   --stdout FILE --stderr FILE -- COMMAND...
      Runs COMMAND (a single argument is run with `bash -c`) with the extra
      environment, captures stdout / stderr, measures wall time and the peak
      RSS of the child (getrusage RUSAGE_CHILDREN), appends one JSON record to
      MANIFEST and prints a one-line status.

  summarize.py report MANIFEST [--md FILE] [--title TEXT] [--note TEXT ...]
      Reads every run of MANIFEST, keeps for each (model, side) the run with
      the shortest best epoch (i.e. the best thread setting), prints the
      side-by-side table and writes it, with all runs and the exact commands,
      as Markdown to FILE.

Sides: "pare" (results from DIR/log.jsonl: {"event":"epoch",...,
"train_seconds","samples_per_second","test_accuracy"} lines and a final
{"event":"end",...,"peak_rss_bytes"}; the JSON lines on its stdout are used
when log.jsonl is missing), "torch-pypi" and "torch-debian" (the summary
line of bench/torch_train.py).
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time

SIDES = ("pare", "torch-pypi", "torch-debian")
MODEL_ORDER = ("lenet300", "lenet5", "life1", "life8")


# ---------------------------------------------------------------- run

def cmd_run(a):
    env = dict(os.environ)
    env_set = {}
    for kv in a.env or []:
        k, _, v = kv.partition("=")
        env[k] = v
        env_set[k] = v
    cmd = a.command
    if not cmd:
        sys.exit("summarize.py run: no command")
    argv = ["bash", "-c", cmd[0]] if len(cmd) == 1 else cmd
    shown = cmd[0] if len(cmd) == 1 else " ".join(shlex.quote(c) for c in cmd)
    if env_set:
        shown = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in env_set.items()) + " " + shown

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rc = None
    status = "ok"
    with open(a.stdout, "wb") as out, open(a.stderr, "wb") as err:
        try:
            p = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
            try:
                rc = p.wait(timeout=a.timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = -9
                status = "timeout after %d s" % a.timeout
        except OSError as e:  # e.g. interpreter missing
            err.write(("summarize.py run: %s\n" % e).encode())
            rc = 127
    wall = time.perf_counter() - t0
    if rc != 0 and status == "ok":
        status = "exit code %d" % rc
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

    rec = {"model": a.model, "side": a.side, "threads": a.threads, "cmd": shown,
           "rc": rc, "status": status, "wall_seconds": round(wall, 3),
           "child_maxrss_bytes": rss, "stdout": a.stdout, "stderr": a.stderr,
           "pare_dir": a.pare_dir, "samples": a.samples,
           "loadavg_before": [round(x, 2) for x in load_before],
           "started": datetime.datetime.now().isoformat(timespec="seconds")}
    with open(a.manifest, "a") as f:
        f.write(json.dumps(rec) + "\n")

    r = parse_run(rec)
    if r["ok"]:
        msg = "%.3f s/epoch best of %d, %s samples/s, acc %s, peak RSS %s" % (
            r["best"], len(r["epochs"]), fmt_rate(r["sps"]), fmt_acc(r["acc"]),
            fmt_mb(r["rss"]))
    else:
        msg = "FAILED: " + r["why"]
    print("  %-8s %-12s %-5s %s" % (a.model, a.side,
                                    "T=%s" % a.threads if a.threads else "",
                                    msg), flush=True)


# ---------------------------------------------------------------- parsing

def json_lines(path):
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [l.rstrip() for l in f if l.strip()]
        return " | ".join(lines[-n:])
    except OSError:
        return ""


def parse_run(rec):
    """-> dict(ok, why, version, epochs, best, sps, acc, rss, threads)."""
    r = {"ok": False, "why": "", "version": None, "epochs": [], "best": None,
         "sps": None, "acc": None, "rss": None, "threads": rec.get("threads"),
         "rec": rec}
    if rec["side"] == "pare":
        lines = []
        src = None
        if rec.get("pare_dir"):
            src = os.path.join(rec["pare_dir"], "log.jsonl")
            lines = json_lines(src)
        if not any(l.get("event") == "epoch" for l in lines):
            src = rec["stdout"]
            lines = json_lines(src)
        epochs = [l for l in lines if l.get("event") == "epoch" and
                  isinstance(l.get("train_seconds"), (int, float))]
        end = [l for l in lines if l.get("event") == "end"]
        if rec["rc"] != 0 or not epochs:
            why = rec["status"] if rec["rc"] != 0 else "no epoch lines in log.jsonl or stdout"
            t = tail(rec["stderr"]) or tail(rec["stdout"])
            r["why"] = why + (": " + t[:300] if t else "")
            return r
        secs = [float(l["train_seconds"]) for l in epochs]
        bi = min(range(len(secs)), key=secs.__getitem__)
        sps = epochs[bi].get("samples_per_second")
        if sps is None and rec.get("samples"):
            sps = rec["samples"] / secs[bi]
        rss = None
        for l in end:
            if l.get("peak_rss_bytes"):
                rss = int(l["peak_rss_bytes"])
        r.update(ok=True, version=(end[-1].get("version") if end else None),
                 epochs=secs, best=secs[bi], sps=sps,
                 acc=epochs[-1].get("test_accuracy"),
                 rss=rss or rec.get("child_maxrss_bytes"),
                 rss_src="log" if rss else "getrusage")
        start = [l for l in lines if l.get("event") == "start"]
        for l in start + end:
            if l.get("threads"):
                r["threads"] = l["threads"]
        if not r["threads"]:
            w = rec["cmd"].split()
            if "--threads" in w and w.index("--threads") + 1 < len(w):
                r["threads"] = w[w.index("--threads") + 1]
        return r

    summ = [l for l in json_lines(rec["stdout"]) if l.get("event") == "summary"]
    if rec["rc"] != 0 or not summ:
        why = rec["status"] if rec["rc"] != 0 else "no summary line"
        t = tail(rec["stderr"])
        r["why"] = why + (": " + t[:300] if t else "")
        return r
    s = summ[-1]
    r.update(ok=True, version=s["torch"], epochs=s["epoch_seconds"],
             best=s["best_epoch_seconds"], sps=s["samples_per_second"],
             acc=s.get("test_accuracy"), rss=s["peak_rss_bytes"],
             threads=s["threads"], summary=s)
    return r


# ---------------------------------------------------------------- formatting

def fmt_s(x):
    return "—" if x is None else ("%.3f" % x if x < 10 else "%.2f" % x)


def fmt_rate(x):
    if x is None:
        return "—"
    return "%.0f" % x if x < 1e4 else "%.1f k" % (x / 1e3)


def fmt_acc(x):
    return "—" if x is None else "%.2f %%" % (100 * x)


def fmt_mb(x):
    return "—" if not x else "%.0f MB" % (x / 1e6)


def model_label(model):
    if model.startswith("life"):
        return "life m=%s" % model[4:]
    return {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5"}.get(model, model)


def render(rows, header, markdown):
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "| " + " | ".join("---" for _ in header) + " |"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
         for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w[i]) for i, c in enumerate(cells)).rstrip()
    return "\n".join([line(header), line(["-" * x for x in w])] + [line(r) for r in rows])


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    cpu = l.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = "?"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True).stdout.strip():
            rev += " (+ uncommitted changes)"
    except (OSError, subprocess.CalledProcessError):
        pass
    return cpu, os.cpu_count(), rev, platform.platform()


def cmd_report(a):
    recs = json_lines(a.manifest)
    runs = [parse_run(r) for r in recs]
    by = {}
    for r in runs:
        by.setdefault((r["rec"]["model"], r["rec"]["side"]), []).append(r)

    def best(model, side):
        ok = [r for r in by.get((model, side), []) if r["ok"]]
        return min(ok, key=lambda r: r["best"]) if ok else None

    def version(side):
        vs = [r["version"] for r in runs if r["rec"]["side"] == side and r["ok"]]
        return vs[0] if vs else None

    vp, vd = version("torch-pypi"), version("torch-debian")
    lab_p = "torch %s (PyPI)" % vp if vp else "torch (PyPI)"
    lab_d = "torch 1.13 (Debian%s)" % (", " + vd if vd else "")
    models = sorted({r["rec"]["model"] for r in runs},
                    key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else 99, m))

    header = ["model", "pare s/epoch", lab_p + " s/epoch", lab_d + " s/epoch",
              "speed-up: faster torch time ÷ pare time", "peak RSS pare / torch (ratio)",
              "boards/s pare / PyPI / 1.13"]
    rows, failures = [], []
    for m in models:
        p, tp, td = best(m, "pare"), best(m, "torch-pypi"), best(m, "torch-debian")
        torch_best = min([r for r in (tp, td) if r], key=lambda r: r["best"], default=None)

        def cell(r, side):
            if r is None:
                tried = by.get((m, side))
                if tried:
                    failures.append((m, side, tried[-1]["why"]))
                    return "failed" if side != "pare" else "pare failed"
                return "not run"
            t = " (T=%s)" % r["threads"] if r["threads"] else ""
            return fmt_s(r["best"]) + t

        ratio = "—"
        if p and torch_best:
            ratio = "%.2fx" % (torch_best["best"] / p["best"])
        rss = "%s / %s" % (fmt_mb(p["rss"]) if p else "—",
                           fmt_mb(torch_best["rss"]) if torch_best else "—")
        if p and torch_best and p["rss"] and torch_best["rss"]:
            rss += " (%.2f)" % (p["rss"] / torch_best["rss"])
        bps = "—"
        if m.startswith("life"):
            bps = " / ".join(fmt_rate(r["sps"]) if r else "—" for r in (p, tp, td))
        rows.append([model_label(m), cell(p, "pare"), cell(tp, "torch-pypi"),
                     cell(td, "torch-debian"), ratio, rss, bps])

    # every run
    drows = []
    for r in runs:
        rec = r["rec"]
        env = " ".join(c for c in rec["cmd"].split() if "_NUM_THREADS=" in c)
        drows.append([model_label(rec["model"]), rec["side"], r["version"] or "—",
                      str(r["threads"] or "—"), env or "—",
                      ", ".join(fmt_s(x) for x in r["epochs"]) or "—",
                      fmt_s(r["best"]), fmt_rate(r["sps"]), fmt_acc(r["acc"]),
                      fmt_mb(r["rss"]), "%.2f" % rec["loadavg_before"][0],
                      "ok" if r["ok"] else "FAILED"])
    dheader = ["model", "side", "version", "threads", "thread env", "epoch s",
               "best s", "samples/s", "test acc (last ep)", "peak RSS",
               "load before", "status"]

    notes = list(a.note or [])
    for m, side, why in failures:
        notes.append("%s, %s failed: %s" % (model_label(m), side, why))

    text = [render(rows, header, False)]
    if notes:
        text += [""] + ["note: " + n for n in notes]
    print("\n".join(text))

    if a.md:
        cpu, ncpu, rev, plat = machine_info()
        md = ["# %s" % (a.title or "pare vs PyTorch: training side by side"), "",
              "- date: %s" % datetime.datetime.now().isoformat(timespec="seconds"),
              "- machine: %s, %s logical CPUs, %s" % (cpu, ncpu, plat),
              "- pare: git %s" % rev,
              "- torch: %s via `%s`; %s via `%s`" % (
                  vp or "n/a", exe_of(runs, "torch-pypi"), vd or "n/a",
                  exe_of(runs, "torch-debian")),
              "- s/epoch = best (shortest) epoch of the training loop (shuffle + batching + "
              "forward/backward/step, evaluation excluded); torch is run with 1 and 2 threads "
              "(OMP_NUM_THREADS=T, OPENBLAS_NUM_THREADS=1) and the faster setting is shown (T=…)",
              "- speed-up = faster torch s/epoch ÷ pare s/epoch (> 1: pare is faster); peak RSS of "
              "the torch side is that of the faster torch run; for life one epoch = one pass over "
              "the boards and boards/s comes from the best epoch",
              "- peak RSS includes the training data held in memory (torch: float32 tensors, "
              "about 220 MB for Fashion-MNIST, 8 KiB per board (input + target) for life, i.e. 664 MB for 80 000 + 1 000 boards; the PyPI torch wheel is the CUDA build and maps its CUDA libraries, which adds to its RSS)",
              "", render(rows, header, True), ""]
        if notes:
            md += ["Notes:", ""] + ["- " + n for n in notes] + [""]
        md += ["## All runs", "", render(drows, dheader, True), "",
               "## Commands (from the repository root)", "", "```sh"]
        md += [r["rec"]["cmd"] for r in runs]
        md += ["```", ""]
        os.makedirs(os.path.dirname(os.path.abspath(a.md)), exist_ok=True)
        with open(a.md, "w") as f:
            f.write("\n".join(md))
        print("\nwrote " + a.md)


def exe_of(runs, side):
    for r in runs:
        if r["rec"]["side"] == side:
            c = r["rec"]["cmd"].split()
            c = [x for x in c if "=" not in x or x.startswith("-")]
            return c[0] if c else "?"
    return "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("manifest")
    r.add_argument("--model", required=True)
    r.add_argument("--side", required=True, choices=SIDES)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--env", action="append")
    r.add_argument("--pare-dir")
    r.add_argument("--samples", type=int)
    r.add_argument("--timeout", type=int, default=1800)
    r.add_argument("--stdout", required=True)
    r.add_argument("--stderr", required=True)
    p = sub.add_parser("report")
    p.add_argument("manifest")
    p.add_argument("--md")
    p.add_argument("--title")
    p.add_argument("--note", action="append")
    argv = sys.argv[1:]
    command = []
    if "--" in argv:  # everything after the first "--" is the command to run
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    a = ap.parse_args(argv)
    a.command = command
    (cmd_run if a.what == "run" else cmd_report)(a)


if __name__ == "__main__":
    main()
