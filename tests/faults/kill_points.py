#!/usr/bin/env python3
"""Fault injection for pare (issue #10, docs/reliability.md).

For each of four phases it runs the uninterrupted reference once, then for
each kill point (seeded, so the same --seed draws the same points): starts
the run, kills it with SIGKILL, checks that no file in the run directory is
torn or lost, resumes the run until it completes, and compares the final
model bits and results with the reference.

  train     `pare train` with --checkpoint-every 20, killed at a random time
  write     the same run, killed inside the n-th checkpoint write by the
            PARE_FAULT_KILL_IN_WRITE hook (base/file.h): half of the temp
            file written, or the temp file complete but not renamed, or
            between keeping the old checkpoint as checkpoint.prev.bin and
            renaming the new one in
  ticket    `pare ticket` (IMP, 3 pruning rounds), killed at a random time
  life      `pare life` (a sweep of 4 tiny runs on 2 threads, one of which
            solves the task and stops early), killed at a random time

Then two scenarios that are not kill points:
  full-disk  the file size limit (RLIMIT_FSIZE, SIGXFSZ ignored, so write()
             fails with EFBIG) stops a checkpoint write: one "pare: error:"
             line naming the file and the cause, the previous checkpoint
             intact, and --resume without the limit ends bit-identical
  fallback   checkpoint.bin damaged (a flipped byte, cut short, emptied):
             --resume says so on stderr and in the run log, resumes from
             checkpoint.prev.bin and ends bit-identical; both damaged: one
             clear error; checkpoint.bin deleted: the run starts over

Python 3 standard library only. Exit status 0 when every point passed.
  tests/faults/kill_points.py --pare build/pare --points 20      (CI)
  tests/faults/kill_points.py --pare build/pare --points 120     (make test-faults)
"""

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

PHASES = ["train", "write", "ticket", "life"]
TEMP_RE = re.compile(r"\.tmp\.\d+$")
ENV = dict(os.environ, PARE_SPARSE_CROSSOVER="0.3", OPENBLAS_NUM_THREADS="1")
ENV.pop("PARE_FAULT_KILL_IN_WRITE", None)


# ---- the files pare writes, and whether they are whole ----

def parse_archive(data):
    """The checkpoint/model container (docs/checkpoint.md): (meta, {name: bytes}); raises ValueError."""
    if len(data) < 24 or data[:8] != b"PARECKPT":
        raise ValueError("bad magic or too short (%d bytes)" % len(data))
    (version,) = struct.unpack_from("<I", data, 8)
    if version != 1:
        raise ValueError("version %d" % version)
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise ValueError("CRC mismatch")
    (hlen,) = struct.unpack_from("<Q", data, 12)
    if hlen > len(data) - 24:
        raise ValueError("header length exceeds the file")
    header = json.loads(data[20:20 + hlen])
    start, end = 20 + hlen, len(data) - 4
    tensors = {}
    for t in header["tensors"]:
        a, b = start + t["offset"], start + t["offset"] + t["bytes"]
        if b > end:
            raise ValueError("tensor %s outside the file" % t["name"])
        tensors[t["name"]] = data[a:b]
    return header["meta"], tensors


def check_file(path, name=None):
    """None when the file is whole (as a file called `name`, default its own), else why not."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        name = name or os.path.basename(path)
        if name.endswith(".bin"):
            parse_archive(data)
        elif name.endswith(".jsonl"):
            if data and not data.endswith(b"\n"):
                return "last line not ended"
            for line in data.decode().splitlines():
                json.loads(line)
        elif name.endswith(".json"):
            json.loads(data)
        elif name.endswith(".md"):
            if not data.endswith(b"\n"):
                return "not ended by a newline"
        else:
            return "unknown file"
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        return str(e)
    return None


def check_tree(root):
    """Every file under root: torn ones (with why), lost ones, temp files left by a kill."""
    torn, lost, temps = [], [], []
    for d, _, files in os.walk(root):
        names = set(files)
        for n in files:
            p = os.path.join(d, n)
            if TEMP_RE.search(n):
                temps.append(p)
                continue
            why = check_file(p)
            if why:
                torn.append("%s: %s" % (os.path.relpath(p, root), why))
        # A run directory never loses its newest checkpoint, nor the log a
        # checkpoint was written after.
        if "checkpoint.prev.bin" in names and "checkpoint.bin" not in names:
            lost.append(os.path.relpath(os.path.join(d, "checkpoint.bin"), root))
        if ("checkpoint.bin" in names or "model.bin" in names) and "log.jsonl" not in names:
            lost.append(os.path.relpath(os.path.join(d, "log.jsonl"), root))
    return torn, lost, temps


# ---- what a finished run is, for comparison ----

def model_digest(path):
    with open(path, "rb") as f:
        _, tensors = parse_archive(f.read())
    return {k: hashlib.sha256(v).hexdigest()[:16] for k, v in sorted(tensors.items())
            if k.startswith(("param/", "mask/"))}


def log_events(path, keep):
    out = []
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if j.get("event") in keep:
                out.append({k: j.get(k) for k in keep[j["event"]]})
    return out


EPOCH_KEYS = ["epoch", "step", "train_loss", "sparsity", "test_loss", "test_accuracy", "test_exact"]
END_KEYS = ["steps", "test_accuracy", "test_loss", "sparsity", "flops", "dense_flops", "executed_flops"]


def fingerprint(phase, run):
    """The bits that must not depend on where the run was killed."""
    fp = {}
    for d, _, files in sorted(os.walk(run)):
        rel = os.path.relpath(d, run)
        for n in sorted(files):
            if n == "model.bin" or n.startswith("weights_step"):
                fp["%s/%s" % (rel, n)] = model_digest(os.path.join(d, n))
            elif n == "log.jsonl" and "checkpoint.bin" in files:  # a fit() run log
                fp["%s/log" % rel] = log_events(os.path.join(d, n), {"epoch": EPOCH_KEYS, "end": END_KEYS})
            elif n == "result.json":
                with open(os.path.join(d, n)) as f:
                    j = json.load(f)
                for k in ("seconds", "train_seconds", "cost", "cumulative_cost", "cumulative_seconds", "skipped"):
                    j.pop(k, None)
                fp["%s/result" % rel] = j
    if phase == "ticket" or phase == "life":
        with open(os.path.join(run, "results.json")) as f:
            j = json.load(f)
        if phase == "ticket":
            fp["results"] = [{k: r[k] for k in ("round", "kind", "density", "test_accuracy", "test_loss", "steps")}
                             for r in j["runs"]]
        else:
            fp["results"] = [{k: c[k] for k in ("n", "m", "runs", "successes")} for c in j["cells"]]
    return fp


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return "%s/%s: only in one" % (path, k)
            d = diff(a[k], b[k], "%s/%s" % (path, k))
            if d:
                return d
        return None
    if a != b:
        return "%s: %r != %r" % (path, a, b)
    return None


# ---- the phases ----

class Setup:
    def __init__(self, work, pare):
        self.work, self.pare = work, pare
        rng = random.Random(7)
        rows = ["x,y,label"]
        for _ in range(self.TRAIN_ROWS):
            x, y = rng.uniform(-1, 1), rng.uniform(-1, 1)
            rows.append("%.6f,%.6f,%d" % (x, y, 1 if x * y > 0 else 0))
        self.csv = os.path.join(work, "data.csv")
        with open(self.csv, "w") as f:
            f.write("\n".join(rows) + "\n")
        self.spec = os.path.join(work, "mlp.json")
        with open(self.spec, "w") as f:
            json.dump({"name": "mlp", "input": [2], "layers": [
                {"type": "linear", "out": 256}, {"type": "relu"},
                {"type": "linear", "out": 256}, {"type": "relu"},
                {"type": "linear", "out": 2}]}, f)

    # pare train: 4 epochs of 150 steps, a checkpoint (1 MB) every 20 steps.
    TRAIN_EPOCHS, TRAIN_BATCH, TRAIN_EVERY, TRAIN_ROWS = 4, 16, 20, 2400

    def command(self, phase, run, resume=False):
        common = ["--model", self.spec, "--data", self.csv, "--test", self.csv, "--threads", "1", "--quiet"]
        if phase in ("train", "write"):
            cmd = [self.pare, "train"] + common + [
                "--epochs", str(self.TRAIN_EPOCHS), "--batch", str(self.TRAIN_BATCH), "--optimizer", "adam",
                "--lr", "0.003", "--checkpoint-every", str(self.TRAIN_EVERY), "--seed", "3", "--out", run]
            return cmd + (["--resume"] if resume else [])
        if phase == "ticket":  # resuming is running the same command again
            return [self.pare, "ticket"] + common + [
                "--epochs", "2", "--batch", "32", "--rounds", "3", "--rate", "0.4", "--checkpoint-every", "20",
                "--seed", "5", "--out", run]
        if phase == "life":
            return [self.pare, "life", "--steps", "1", "--widths", "1,2", "--seeds", "2", "--examples", "4096",
                    "--test-examples", "64", "--epochs", "6", "--board-size", "8", "--batch", "8", "--lr", "0.01",
                    "--jobs", "2", "--out", run, "--quiet"]
        raise ValueError(phase)

    def checkpoint_writes(self):
        """How many checkpoints the train run writes (fit's rule: every TRAIN_EVERY steps but
        not at an epoch's last batch, and at the end of each epoch)."""
        batches = -(-self.TRAIN_ROWS // self.TRAIN_BATCH)
        n, step = 0, 0
        for _ in range(self.TRAIN_EPOCHS):
            for b in range(batches):
                step += 1
                n += step % self.TRAIN_EVERY == 0 and b + 1 < batches
            n += 1
        return n

    def file_writes(self):
        """Every write of the train run: its checkpoints, six run-log rewrites (start, four
        epochs, end) and model.bin."""
        return self.checkpoint_writes() + self.TRAIN_EPOCHS + 2 + 1


def hook_counts(setup):
    """That the hook counts writes as the driver does: the last write kills, one past it does not."""
    problems = []
    for n, match in ((setup.checkpoint_writes(), ":checkpoint.next"), (setup.file_writes(), "")):
        for hook, want in (("%d:partial%s" % (n, match), -signal.SIGKILL), ("%d:partial%s" % (n + 1, match), 0)):
            run = os.path.join(setup.work, "hook_count")
            shutil.rmtree(run, ignore_errors=True)
            p = run_to_end(setup.command("train", run), env=dict(ENV, PARE_FAULT_KILL_IN_WRITE=hook))
            if p.returncode != want:
                problems.append("PARE_FAULT_KILL_IN_WRITE=%s: exit %d, expected %d" % (hook, p.returncode, want))
    return problems


def run_to_end(cmd, timeout=300, env=ENV, **kw):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=timeout, text=True, **kw)
    return p


def kill_at(cmd, seconds, env=ENV):
    """Starts cmd and SIGKILLs it after `seconds`; returns (killed, returncode)."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        p.wait(timeout=seconds)
        p.stderr.read()
        return False, p.returncode
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.read()
        return True, p.returncode


def reference(setup, phase):
    run = os.path.join(setup.work, "ref_" + phase)
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.monotonic()
    p = run_to_end(setup.command(phase, run))
    seconds = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit("reference %s failed (%d): %s" % (phase, p.returncode, p.stderr))
    return run, seconds, fingerprint(phase, run)


def one_point(setup, phase, k, rng, ref_seconds, ref_fp, verbose):
    """One kill point: kill, check the files, resume to the end, compare. Returns a record."""
    run = os.path.join(setup.work, "%s_%03d" % (phase, k))
    shutil.rmtree(run, ignore_errors=True)
    rec = {"phase": phase, "point": k}
    finished = False  # the run completed before a kill meant for it
    t0 = time.monotonic()
    if phase == "write":
        if k % 4 != 3:  # inside a checkpoint write
            n = rng.randint(1, setup.checkpoint_writes())
            where = rng.choice(["partial", "synced", "rotated"])
            rec["kill"] = "checkpoint write %d, %s" % (n, where)
            hook = "%d:%s:checkpoint.next" % (n, where)
        else:  # inside any write: the run log, model.bin or a checkpoint
            n = rng.randint(1, setup.file_writes())
            where = rng.choice(["partial", "synced"])
            rec["kill"] = "file write %d, %s" % (n, where)
            hook = "%d:%s" % (n, where)
        env = dict(ENV, PARE_FAULT_KILL_IN_WRITE=hook)
        p = subprocess.run(setup.command(phase, run), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=env, timeout=300)
        killed = p.returncode == -signal.SIGKILL
        if killed:
            rec["inside_write"] = write_evidence(run, where)
            rec["state"] = killed_in(phase, run)
        torn, lost, temps = check_tree(run) if os.path.isdir(run) else ([], [], [])
    else:
        # Every other point kills the resumed run too, at a random time of its own.
        killed, torn, lost, temps, kills = False, [], [], [], []
        for resume in ([False, True] if k % 2 else [False]):
            for attempt in range(6):  # a run that ended before its kill time is tried again, earlier
                at = rng.uniform(0.03, 0.97) * ref_seconds * (0.7 ** attempt)
                if not resume:
                    shutil.rmtree(run, ignore_errors=True)
                hit, rc = kill_at(setup.command(phase, run, resume=resume), at)
                if hit:
                    kills.append("%s at %.3f s" % ("resume" if resume else "run", at))
                    break
                if resume:  # the resumed run finished first: nothing left to kill
                    finished = rc == 0
                    break
            killed = hit if not resume else killed
            if not resume:
                first_state = killed_in(phase, run)
            if os.path.isdir(run):
                t, l, tm = check_tree(run)
                torn, lost, temps = torn + t, lost + l, temps + tm
        rec["kill"] = ", ".join(kills)
        rec["state"] = first_state
    rec["killed"] = killed
    rec.update(torn=torn, lost=lost, temps_after_kill=len(temps))
    rec["kills"] = len(kills) if phase != "write" else int(killed)
    # Resume until done (one resume finishes: nothing kills it).
    p = run_to_end(setup.command(phase, run, resume=True)) if not finished else \
        subprocess.CompletedProcess([], 0, "", "")
    rec["resume_rc"] = p.returncode
    if p.returncode != 0:
        rec["error"] = p.stderr.strip()[-500:]
    else:
        torn2, lost2, temps2 = check_tree(run)
        rec["torn"] += torn2
        rec["lost"] += lost2
        rec["temps_left"] = [os.path.relpath(t, run) for t in temps2]
        rec["mismatch"] = diff(ref_fp, fingerprint(phase, run))
    rec["seconds"] = time.monotonic() - t0
    rec["passed"] = (killed and p.returncode == 0 and not rec["torn"] and not rec["lost"] and
                     rec.get("mismatch") is None and rec.get("inside_write", True) is True)
    if verbose or not rec["passed"]:
        print("  %s %3d %-32s %s%s" % (phase, k, rec.get("kill", "not killed"),
                                        "ok" if rec["passed"] else "FAILED ",
                                        "" if rec["passed"] else json.dumps(
                                            {x: rec.get(x) for x in ("torn", "lost", "mismatch", "error",
                                                                     "inside_write", "killed")})), flush=True)
    if rec["passed"] and not rec.get("temps_left"):
        shutil.rmtree(run, ignore_errors=True)
    return rec


def killed_in(phase, run):
    """Where the first kill left the run: its last checkpoint's step, the ticket round in
    progress, or how many life runs were done."""
    if not os.path.isdir(run):
        return "before the run directory"
    if phase in ("train", "write"):
        p = os.path.join(run, "checkpoint.bin")
        return "step %d" % parse_archive(open(p, "rb").read())[0]["step"] if os.path.exists(p) else "step 0"
    if phase == "ticket":
        rounds = sorted(int(d[6:]) for d in os.listdir(run) if d.startswith("round_"))
        return "round %d" % rounds[-1] if rounds else "before round 0"
    done = sum(1 for d, _, f in os.walk(run) if "result.json" in f)
    return "%d of 4 runs done" % done


def write_evidence(run, where):
    """That the hook killed pare where it says: True, or what is off."""
    files = os.listdir(run)
    tmps = [f for f in files if TEMP_RE.search(f)]
    if where in ("partial", "synced"):
        if len(tmps) != 1:
            return "expected one temp file, found %s" % files
        whole = check_file(os.path.join(run, tmps[0]), TEMP_RE.sub("", tmps[0])) is None
        if whole != (where == "synced"):
            return "the temp file %s is %s" % (tmps[0], "whole" if whole else "torn")
        return True
    if "checkpoint.next.bin" not in files:
        return "no checkpoint.next.bin after a kill between the renames: %s" % files
    if "checkpoint.prev.bin" in files:
        with open(os.path.join(run, "checkpoint.bin"), "rb") as a, open(os.path.join(run, "checkpoint.prev.bin"), "rb") as b:
            if a.read() != b.read():
                return "checkpoint.prev.bin is not the checkpoint it keeps"
    return True


# ---- scenarios ----

def check_failed_write(setup, run, p, cause, ref_fp, rec):
    """What both full-disk scenarios check after the run that hit the limit:
    exit 1 with one 'pare: error:' line naming the checkpoint, `cause` and the
    checkpoint kept; no torn, lost or temp files; checkpoint.bin is the step
    the message names; and --resume ends bit-identical to the reference.
    Fills rec (stderr, rc, kept_step, resume_rc, problems, passed)."""
    lines = p.stderr.strip().splitlines()
    rec.update({"rc": p.returncode, "stderr": p.stderr.strip()})
    problems = []
    if p.returncode != 1 or len(lines) != 1 or not lines[0].startswith("pare: error: "):
        problems.append("expected exit 1 and one 'pare: error:' line")
    for frag in ("checkpoint.bin", cause, "is kept"):
        if frag not in p.stderr:
            problems.append("stderr lacks %r" % frag)
    torn, lost, temps = check_tree(run)
    if torn or lost or temps:
        problems.append("files: torn %s lost %s temps %s" % (torn, lost, temps))
    with open(os.path.join(run, "checkpoint.bin"), "rb") as f:
        rec["kept_step"] = parse_archive(f.read())[0]["step"]
    m = re.search(r"checkpoint of step (\d+) is kept", p.stderr)
    if not m or int(m.group(1)) != rec["kept_step"]:
        problems.append("the step the message says is kept is not checkpoint.bin's (%s)" % rec["kept_step"])
    r = run_to_end(setup.command("train", run, resume=True))
    rec["resume_rc"] = r.returncode
    if r.returncode != 0:
        problems.append("resume failed: " + r.stderr)
    else:
        d = diff(ref_fp, fingerprint("train", run))
        if d:
            problems.append("resumed run differs: " + d)
    rec["problems"] = problems
    rec["passed"] = not problems
    return rec


def full_disk(setup, ref_run, ref_fp):
    """A checkpoint write over the file size limit: a clear error, the last good checkpoint kept."""
    run = os.path.join(setup.work, "full_disk")
    # A checkpoint holds the run log so far, so each epoch's log line makes
    # the later ones larger by its length. The limit: half a line under the
    # final checkpoint, so that one fails and the one before it (a line
    # shorter) fits, whatever the digits of the timings in the log.
    with open(os.path.join(ref_run, "log.jsonl")) as f:
        epoch_line = [l for l in f if '"event":"epoch"' in l][-1]
    limit = os.path.getsize(os.path.join(ref_run, "checkpoint.bin")) - len(epoch_line) // 2
    shutil.rmtree(run, ignore_errors=True)

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = run_to_end(setup.command("train", run), preexec_fn=limited)
    out = check_failed_write(setup, run, p, "File too large", ref_fp, {"limit_bytes": limit})
    problems = out["problems"]
    print("  full disk (RLIMIT_FSIZE %d bytes): %s" % (limit, "ok" if not problems else "FAILED %s" % problems))
    print("    " + out["stderr"])
    return out


def full_tmpfs(setup, ref_run, ref_fp):
    """The same on a full filesystem: a tmpfs in a private mount namespace (unshare -rm) with
    room for two checkpoints and the log but not for writing a third beside them (ENOSPC)."""
    kib = int(2.5 * os.path.getsize(os.path.join(ref_run, "checkpoint.bin")) / 1024)
    mnt, out = os.path.join(setup.work, "tmpfs"), os.path.join(setup.work, "tmpfs_run")
    os.makedirs(mnt, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    script = ('mnt=$1; out=$2; shift 2; mount -t tmpfs -o size=%dk pare-faults "$mnt" || exit 97; '
              '"$@"; rc=$?; cp -a "$mnt/run" "$out"; exit $rc' % kib)
    try:
        p = run_to_end(["unshare", "-rm", "sh", "-c", script, "sh", mnt, out] +
                       setup.command("train", os.path.join(mnt, "run")))
    except FileNotFoundError:
        p = None
    if p is None or p.returncode == 97 or (p.returncode != 0 and not os.path.isdir(out)):
        print("  full tmpfs: skipped (cannot mount a tmpfs here: %s)" % (p.stderr.strip() if p else "no unshare"))
        return {"skipped": True, "passed": True}
    out_rec = check_failed_write(setup, out, p, "No space left on device", ref_fp, {"tmpfs_bytes": kib * 1024})
    problems = out_rec["problems"]
    print("  full tmpfs (%d KiB): %s" % (kib, "ok" if not problems else "FAILED %s" % problems))
    print("    " + out_rec["stderr"])
    return out_rec


def damage(path, how):
    with open(path, "rb") as f:
        data = f.read()
    if how == "flipped byte":
        i = len(data) // 2
        data = data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]
    elif how == "cut short":
        data = data[:len(data) * 2 // 3]
    elif how == "emptied":
        data = b""
    elif how == "deleted":
        os.remove(path)
        return
    with open(path, "wb") as f:
        f.write(data)


def fallback(setup, ref_fp):
    """A damaged checkpoint.bin: the resumed run says so and falls back to checkpoint.prev.bin."""
    results = []
    base = os.path.join(setup.work, "fallback_base")
    shutil.rmtree(base, ignore_errors=True)
    # Stop mid-run (--max-steps 250: two checkpoints on disk), then damage the newest.
    p = run_to_end(setup.command("train", base) + ["--max-steps", "250"])
    if p.returncode != 0:
        sys.exit("fallback base run failed: " + p.stderr)
    for how in ("flipped byte", "cut short", "emptied", "deleted", "both damaged"):
        run = os.path.join(setup.work, "fallback")
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(base, run)
        with open(os.path.join(run, "checkpoint.prev.bin"), "rb") as f:
            prev_step = parse_archive(f.read())[0]["step"]
        damage(os.path.join(run, "checkpoint.bin"), "flipped byte" if how == "both damaged" else how)
        if how == "both damaged":
            damage(os.path.join(run, "checkpoint.prev.bin"), "cut short")
        r = run_to_end(setup.command("train", run, resume=True))
        problems = []
        if how == "both damaged":
            lines = r.stderr.strip().splitlines()
            if r.returncode != 1 or len(lines) != 1 or not lines[0].startswith("pare: error: "):
                problems.append("expected exit 1 and one 'pare: error:' line")
            for frag in ("checkpoint.bin is damaged", "checkpoint.prev.bin is damaged too"):
                if frag not in r.stderr:
                    problems.append("stderr lacks %r" % frag)
        elif how == "deleted":  # not a crash's doing (the newest is never missing): the run starts over
            if r.returncode != 0:
                problems.append("the fresh start failed: " + r.stderr)
            elif "resuming from" in r.stderr:
                problems.append("fell back instead of starting over: " + r.stderr)
            else:
                d = diff(ref_fp, fingerprint("train", run))
                if d:
                    problems.append("the fresh run differs: " + d)
        else:
            said = [l for l in r.stderr.splitlines() if "resuming from" in l]
            if r.returncode != 0:
                problems.append("resume failed: " + r.stderr)
            elif len(said) != 1 or "checkpoint.bin is damaged (" not in said[0] or \
                    "checkpoint.prev.bin at step %d" % prev_step not in said[0]:
                problems.append("stderr does not say it falls back: %r" % r.stderr)
            else:
                events = log_events(os.path.join(run, "log.jsonl"), {"checkpoint_fallback": ["step", "damage"]})
                if len(events) != 1 or events[0]["step"] != prev_step:
                    problems.append("run log: %s" % events)
                d = diff(ref_fp, fingerprint("train", run))
                if d:
                    problems.append("resumed run differs: " + d)
        line = (r.stderr.strip().splitlines() or [""])[-1] if how == "both damaged" else \
            next((l for l in r.stderr.splitlines() if "resuming from" in l), "(started over)")
        results.append({"damage": how, "passed": not problems, "problems": problems, "stderr": line})
        print("  fallback, checkpoint.bin %s: %s" % (how, "ok" if not problems else "FAILED %s" % problems))
        print("    " + line)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pare", required=True, help="the pare binary")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir, removed when all pass)")
    ap.add_argument("--points", type=int, default=20, help="kill points in all, split evenly over the phases")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--seed", type=int, default=1, help="draws the kill points")
    ap.add_argument("--no-scenarios", action="store_true", help="skip the full-disk and fallback scenarios")
    ap.add_argument("--json", help="write the counts and every point's record here")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    phases = args.phases.split(",")
    import tempfile
    work = args.work or tempfile.mkdtemp(prefix="pare-faults-")
    os.makedirs(work, exist_ok=True)
    setup = Setup(work, os.path.abspath(args.pare))
    rng = random.Random(args.seed)
    per = [args.points // len(phases) + (i < args.points % len(phases)) for i in range(len(phases))]
    summary, records = {}, []
    t_all = time.monotonic()
    refs = {}
    for phase, count in zip(phases, per):
        ref_phase = "train" if phase == "write" else phase
        if ref_phase not in refs:
            refs[ref_phase] = reference(setup, ref_phase)
        ref_run, ref_seconds, ref_fp = refs[ref_phase]
        print("%s: reference %.2f s; %d kill points" % (phase, ref_seconds, count), flush=True)
        if phase == "write":
            problems = hook_counts(setup)
            if problems:
                sys.exit("the write counts are off (change Setup.checkpoint_writes/file_writes): %s" % problems)
        t0 = time.monotonic()
        recs = [one_point(setup, phase, k, rng, ref_seconds, ref_fp, args.verbose) for k in range(count)]
        records += recs
        summary[phase] = {
            "points": count,
            "killed": sum(r["killed"] for r in recs),
            "kills": sum(r["kills"] for r in recs),
            "passed": sum(r["passed"] for r in recs),
            "torn_files": sum(len(r["torn"]) for r in recs),
            "lost_files": sum(len(r["lost"]) for r in recs),
            "bit_identical": sum(r.get("mismatch", "x") is None for r in recs),
            "temp_files_after_kill": sum(r["temps_after_kill"] for r in recs),
            "temp_files_left": sum(len(r.get("temps_left", [])) for r in recs),
            "reference_seconds": round(ref_seconds, 2),
            "seconds_per_point": round((time.monotonic() - t0) / max(1, count), 2),
            "killed_in": sorted(set(r.get("state", "") for r in recs)),
        }
        s = summary[phase]
        print("%s: %d/%d passed (SIGKILLs %d, torn %d, lost %d, bit-identical %d, temp files after kill %d, left %d)"
              % (phase, s["passed"], count, s["kills"], s["torn_files"], s["lost_files"], s["bit_identical"],
                 s["temp_files_after_kill"], s["temp_files_left"]), flush=True)
    scenarios = {}
    if not args.no_scenarios:
        if "train" not in refs:
            refs["train"] = reference(setup, "train")
        scenarios["full_disk"] = full_disk(setup, refs["train"][0], refs["train"][2])
        scenarios["full_tmpfs"] = full_tmpfs(setup, refs["train"][0], refs["train"][2])
        scenarios["fallback"] = fallback(setup, refs["train"][2])
    total = sum(s["points"] for s in summary.values())
    passed = sum(s["passed"] for s in summary.values())
    scenarios_ok = all(x["passed"] for x in [scenarios.get("full_disk", {"passed": True}),
                                             scenarios.get("full_tmpfs", {"passed": True})] +
                       scenarios.get("fallback", []))
    print("%d/%d kill points passed in %.0f s%s" % (passed, total, time.monotonic() - t_all,
                                                   "" if not scenarios else "; scenarios " +
                                                   ("passed" if scenarios_ok else "FAILED")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": args.seed, "summary": summary, "scenarios": scenarios, "points": records}, f, indent=1)
    ok = passed == total and scenarios_ok
    if ok and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        print("the failed runs are in " + work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
