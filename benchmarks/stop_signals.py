"""Stop a real multi-worker job with signals at random moments, many times, and count what happened.

Each repeat runs ``distnet train examples/jobs/mlp.toml -n N`` (through the
launcher, as a user would), waits until training has begun, sleeps a random
time and delivers one kind of signal:

* ``launcher-int`` / ``launcher-term``: SIGINT / SIGTERM to the launcher;
* ``rank-term``: SIGTERM to one rank, chosen at random;
* ``group-int``: SIGINT to the launcher's process group and to every rank's
  at once (each rank then gets it twice: directly and forwarded by mpiexec),
  as a scheduler that signals every task of a job does;
* ``launcher-kill``: SIGKILL to the launcher (its job must not outlive it);
* ``startup-int``: SIGINT to the launcher before the first step.

It then checks: the exit status (130 / 143; for ``launcher-kill`` only that
no process is left), that the newest checkpoint is at the last logged step
with the data position of the next unseen sample, that metrics.jsonl ends
with an ``end`` record, that no process of the job is left (by pid: the
job's processes are collected while it runs), and that no traceback was
printed.  Prints one line per repeat and the counts.

    python benchmarks/stop_signals.py --kind launcher-int --repeats 20 -n 2

Not a test (it takes minutes); tests/test_stop.py runs a few repeats of each kind.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("launcher-int", "launcher-term", "rank-term", "group-int", "launcher-kill", "startup-int")
EXPECTED = {"launcher-int": 130, "launcher-term": 143, "rank-term": 143, "group-int": 130,
            "startup-int": 130, "launcher-kill": None}


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(c) for c in f.read().split()]
                for k in kids:
                    if k not in out:
                        out.add(k)
                        todo.append(k)
        except (OSError, ValueError):
            continue
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return -1


def read_records(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def expected_position(step: int, num_samples: int, batch: int) -> tuple[int, int]:
    """(epoch, position) after ``step`` steps from the start (the sampler's rule)."""
    epoch, pos = 0, 0
    for _ in range(step):
        pos += min(batch, num_samples - pos)
        if pos >= num_samples:
            epoch, pos = epoch + 1, 0
    return epoch, pos


def one_run(kind: str, workers: int, python: str, seed: int, workdir: Path, extra: list[str]) -> tuple[str, str]:
    rng = random.Random(seed)
    run_dir = workdir / f"run{seed}"
    argv = [python, "-m", "distnet", "train", str(ROOT / "examples/jobs/mlp.toml"), "-n", str(workers),
            "--run-dir", str(run_dir), "--progress", "none", "--set", "train.epochs=4", *extra]
    err_path = workdir / f"stderr{seed}.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(workdir))
    pids: set[int] = set()
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        pids |= descendants(proc.pid)
        if kind == "startup-int":
            if any("hydra_pmi_proxy" in cmdline(parent(p)) for p in pids):
                time.sleep(rng.uniform(0.0, 0.8))
                started = True
                break
        elif any(r.get("kind") == "step" for r in read_records(metrics)):
            started = True
            break
        time.sleep(0.02)
    if not started:
        proc.kill()
        return "no-start", f"rc={proc.poll()}"
    if kind != "startup-int":
        t_end = time.monotonic() + rng.uniform(0.0, 2.0)
        while time.monotonic() < t_end:
            pids |= descendants(proc.pid)
            time.sleep(0.02)
    pids |= descendants(proc.pid)
    ranks = [p for p in pids if "hydra_pmi_proxy" in cmdline(parent(p))]
    if kind == "launcher-int":
        proc.send_signal(signal.SIGINT)
    elif kind == "startup-int":
        proc.send_signal(signal.SIGINT)
    elif kind == "launcher-term":
        proc.send_signal(signal.SIGTERM)
    elif kind == "launcher-kill":
        proc.send_signal(signal.SIGKILL)
    elif kind == "rank-term":
        if not ranks:
            proc.kill()
            return "no-rank", ""
        os.kill(rng.choice(ranks), signal.SIGTERM)
    elif kind == "group-int":
        # The launcher's process group and each rank's (hydra gives every rank
        # its own), at once: each rank gets it twice, directly and from mpiexec.
        # hydra's proxies are left alone: a proxy that gets SIGINT ends its ranks.
        for p in [proc.pid, *ranks]:
            try:
                os.killpg(os.getpgid(p), signal.SIGINT)
            except ProcessLookupError:
                pass
    t0 = time.monotonic()
    try:
        rc = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        rc = None
    waited = time.monotonic() - t0
    # Any process of the job still alive a few seconds later?
    left_deadline = time.monotonic() + (15 if kind == "launcher-kill" else 5)
    while time.monotonic() < left_deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left + ([proc.pid] if rc is None else []):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stderr = err_path.read_text(errors="replace")
    if rc is None:
        return "hang", f"no exit within 90 s; {stderr[-300:]!r}"
    if left:
        return "left-over", f"rc={rc}, {len(left)} process(es) alive"
    if kind == "launcher-kill":
        return "ok", f"{waited:.1f} s"
    if rc != EXPECTED[kind]:
        return f"exit-{rc}", stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""
    if "Traceback" in stderr:
        return "traceback", stderr[stderr.index("Traceback"):][-600:]
    records = read_records(metrics)
    if kind == "startup-int" and not any(r.get("kind") == "step" for r in records):
        return "ok", f"before training, {waited:.1f} s"
    ends = [r for r in records if r.get("kind") == "end"]
    if not ends:
        return "no-end-record", stderr[-600:]
    steps = [r["step"] for r in records if r.get("kind") == "step"]
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.h5"))
    if not ckpts:
        return "no-checkpoint", ""
    sys.path.insert(0, str(ROOT))
    from distnet.checkpoint import load

    state = load(ckpts[-1])
    if state.step != steps[-1]:
        return "wrong-step", f"checkpoint step {state.step}, last logged step {steps[-1]}"
    want = expected_position(state.step, _train_size(state), 100)
    if (state.epoch, state.position) != want:
        return "wrong-position", f"step {state.step}: (epoch, position) {(state.epoch, state.position)}, want {want}"
    return "ok", f"step {state.step}, {waited:.1f} s"


def _train_size(state) -> int:
    sys.path.insert(0, str(ROOT))
    from distnet.config import parse_job
    from distnet.job import load_data

    return len(load_data(parse_job(state.config_text, "checkpoint"))[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=KINDS + ("all",), default="all")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("-n", "--workers", type=int, default=2)
    ap.add_argument("--python", default=sys.executable, help="the interpreter whose distnet runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra --set for the job")
    args = ap.parse_args()
    extra = [x for item in args.extra for x in ("--set", item)]
    kinds = KINDS if args.kind == "all" else (args.kind,)
    for kind in kinds:
        counts: Counter = Counter()
        with tempfile.TemporaryDirectory(prefix="distnet-stop-") as tmp:
            for i in range(args.repeats):
                outcome, detail = one_run(kind, args.workers, args.python, args.seed * 1000 + i, Path(tmp), extra)
                counts[outcome] += 1
                print(f"{kind} -n {args.workers} #{i + 1}: {outcome} {detail}", flush=True)
        print(f"== {kind} -n {args.workers}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
              + f" (of {args.repeats})", flush=True)


if __name__ == "__main__":
    main()
