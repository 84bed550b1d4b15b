"""Stop a real multi-worker ``distnet train`` with a signal at a random moment, and check what it left.

Used by tests/test_stop.py (a few repeats) and benchmarks/stop_signals.py
(many).  The job's processes are found by walking ``/proc`` from the
process started here (hydra gives every rank its own process group and
session, so a group or session id does not find them); after the job ends,
none of them may be alive.  Nothing here looks processes up by name.

Kinds of signal:

* ``launcher-int`` / ``launcher-term``: SIGINT / SIGTERM to the launcher
  (``distnet train -n N``), or to mpiexec itself with ``via="mpiexec"``;
* ``rank-term``: SIGTERM to one rank, chosen at random;
* ``group-int``: SIGINT to the process group of the launcher (or mpiexec)
  and of every rank at once: each rank gets it twice, directly and passed
  on by mpiexec (a scheduler that signals every task of a job does this);
* ``all-term``: SIGTERM to the launcher, mpiexec and every rank at once, as
  a SLURM preemption or ``scancel --full`` does (mpiexec must not get it
  twice: the launcher holds its copy back when mpiexec has one);
* ``launcher-kill``: SIGKILL to the launcher: its job must end with it;
* ``startup-int``: SIGINT to the launcher as soon as the ranks exist.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {"launcher-int": 130, "launcher-term": 143, "rank-term": 143, "group-int": 130,
            "all-term": 143, "startup-int": 130, "launcher-kill": None}
KINDS = tuple(EXPECTED)


# -- processes (Linux /proc) ----------------------------------------------------
def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid``."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    for k in (int(c) for c in f.read().split()):
                        if k not in out:
                            out.add(k)
                            todo.append(k)
        except (OSError, ValueError):
            continue
    return out


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    st = _stat(pid)
    return bool(st) and st[0] != "Z"


def parent(pid: int) -> int:
    st = _stat(pid)
    return int(st[1]) if st else -1


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ranks_of(pids) -> list[int]:
    """The job's ranks: the children of hydra's proxies."""
    return sorted(p for p in pids if "hydra_pmi_proxy" in cmdline(parent(p)))


# -- metrics and checkpoints ----------------------------------------------------
def records(run_dir: Path) -> list[dict]:
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass   # a line being written
    return out


def step_losses(run_dir: Path) -> dict[int, float]:
    """step -> loss of the last record of each step (a restart repeats steps)."""
    return {r["step"]: r["loss"] for r in records(run_dir) if r.get("kind") == "step"}


def expected_position(step: int, num_samples: int, batch: int) -> tuple[int, int]:
    """(epoch, position) after ``step`` steps from the start: the next unseen sample."""
    epoch, pos = 0, 0
    for _ in range(step):
        pos += min(batch, num_samples - pos)
        if pos >= num_samples:
            epoch, pos = epoch + 1, 0
    return epoch, pos


def newest_checkpoint(run_dir: Path):
    from distnet.checkpoint import load

    found = sorted((Path(run_dir) / "checkpoints").glob("ckpt-*.h5"))
    return (found[-1], load(found[-1])) if found else (None, None)


# -- one stopped run ---------------------------------------------------------------
@dataclass
class StoppedRun:
    kind: str
    returncode: int | None     # None: no exit within the timeout (killed)
    stderr: str
    seconds: float             # from the signal to the exit
    left: list = field(default_factory=list)   # processes of the job alive after it ended
    started: bool = True


def train_command(job: Path, run_dir: Path, workers: int, *extra: str, via: str = "launcher") -> list[str]:
    tail = ["train", str(job), "--run-dir", str(run_dir), "--progress", "none", *extra]
    if via == "single":
        return [sys.executable, "-m", "distnet", *tail]
    if via == "launcher":
        return [sys.executable, "-m", "distnet", tail[0], tail[1], "-n", str(workers), *tail[2:]]
    from mpi_util import find_mpiexec

    return [find_mpiexec(), "-n", str(workers), sys.executable, "-m", "distnet", *tail]


def run_and_signal(kind: str, job: Path, run_dir: Path, workers: int, rng: random.Random, *extra: str,
                   via: str = "launcher", max_delay: float = 0.3, timeout: float = 90.0,
                   env: dict | None = None, min_delay: float = 0.0, early: bool = False) -> StoppedRun:
    """Start the job, wait until it trains (or, for ``startup-int``, until its ranks
    exist; with ``early``, not at all), sleep ``min_delay`` to ``max_delay`` s,
    deliver ``kind``, wait for the end.

    A signal in the first tenth of a second or so of a process, while Python
    itself starts (before any of distnet's code runs), is Python's to report:
    it prints a KeyboardInterrupt; ``startup-int`` runs give ``min_delay`` for that."""
    err_path = Path(run_dir).with_name(Path(run_dir).name + ".stderr")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(train_command(job, run_dir, workers, *extra, via=via), stdout=subprocess.DEVNULL,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        pids |= descendants(proc.pid)
        if kind == "startup-int" and (early or len(ranks_of(pids)) == workers or via == "single"):
            started = True
            break
        if kind != "startup-int" and any(r.get("kind") == "step" for r in records(run_dir)):
            started = True
            break
        time.sleep(0.01)
    if started:
        end = time.monotonic() + rng.uniform(min_delay, max(min_delay, max_delay))
        while time.monotonic() < end:
            pids |= descendants(proc.pid)
            time.sleep(0.01)
        pids |= descendants(proc.pid)
        ranks = ranks_of(pids)
        if kind in ("launcher-int", "startup-int"):
            proc.send_signal(signal.SIGINT)
        elif kind == "launcher-term":
            proc.send_signal(signal.SIGTERM)
        elif kind == "launcher-kill":
            proc.send_signal(signal.SIGKILL)
        elif kind == "rank-term":
            os.kill(rng.choice(ranks), signal.SIGTERM)
        elif kind == "all-term":
            mpiexec = [p for p in pids if cmdline(p).split()[:1] and cmdline(p).split()[0].endswith("mpiexec")]
            for p in [proc.pid, *mpiexec, *ranks]:
                try:
                    os.kill(p, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        elif kind == "group-int":
            for p in [proc.pid, *ranks]:
                try:
                    os.killpg(os.getpgid(p), signal.SIGINT)
                except ProcessLookupError:
                    pass
        else:
            raise ValueError(f"unknown kind {kind!r}")
    t0 = time.monotonic()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.monotonic() - t0
    # launcher-kill: the ranks must end within seconds of the launcher.
    patience = time.monotonic() + (15.0 if kind == "launcher-kill" else 5.0)
    while time.monotonic() < patience and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left + ([proc.pid] if code is None else []):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if code is None:
        proc.wait()
    return StoppedRun(kind, code, err_path.read_text(errors="replace"), seconds, left, started)


def check_stopped(run: StoppedRun, run_dir: Path, num_samples: int, batch: int) -> tuple[str, str]:
    """``("ok", detail)`` when the stopped job is as promised, else what went wrong."""
    if not run.started:
        return "no-start", run.stderr[-400:]
    if run.returncode is None:
        return "hang", run.stderr[-400:]
    if run.left:
        return "left-over", f"exit {run.returncode}; alive: {[cmdline(p)[:80] for p in run.left]}"
    if run.kind == "launcher-kill":
        return "ok", f"ended with the launcher ({run.seconds:.1f} s)"
    if run.returncode != EXPECTED[run.kind]:
        lines = run.stderr.strip().splitlines()
        return f"exit-{run.returncode}", lines[-1][:300] if lines else ""
    if "Traceback" in run.stderr:
        return "traceback", run.stderr[run.stderr.index("Traceback"):][:600]
    recs = records(run_dir)
    steps = [r["step"] for r in recs if r.get("kind") == "step"]
    if run.kind == "startup-int" and not steps:
        return "ok", "stopped before training"
    if not recs or recs[-1].get("kind") != "end" or recs[-1].get("status") != "interrupted":
        return "no-end-record", (recs[-1] if recs else "no metrics")
    path, state = newest_checkpoint(run_dir)
    if state is None:
        return "no-checkpoint", ""
    if state.step != steps[-1]:
        return "wrong-step", f"checkpoint at step {state.step}, last logged step {steps[-1]}"
    want = expected_position(state.step, num_samples, batch)
    if (state.epoch, state.position) != want:
        return "wrong-position", f"step {state.step}: (epoch, position) {(state.epoch, state.position)}, want {want}"
    return "ok", f"stopped after step {state.step} in {run.seconds:.1f} s"
