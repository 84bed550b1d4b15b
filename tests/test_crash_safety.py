"""Crash safety under fire: SIGKILL a training job at random moments, also in
the middle of a checkpoint write; after every kill the checkpoint directory
holds a loadable checkpoint, and resuming completes the run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from distnet.checkpoint import CheckpointManager, load

JOB = """
name = "crash"
seed = 1
run_dir = "{run_dir}"

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 384
activation = "relu"

[[model.layers]]
type = "dense"
units = 10

[optimizer]
name = "adam"
learning_rate = 0.001

[ema]
decay = 0.99

[data]
name = "fashion_mnist"

[train]
batch_size = 50
steps = {steps}
eval_every = 1000

[checkpoint]
every = 1
max_to_keep = 2
"""


def _start(job, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "distnet", "train", str(job), "--progress", "none"]
    if resume:
        cmd.append("--resume")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS="1",
                                                             OPENBLAS_NUM_THREADS="1"))


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    steps = 150
    run_dir = tmp_path / "run"
    job = tmp_path / "job.toml"
    job.write_text(JOB.format(run_dir=run_dir, steps=steps))
    ckpt_dir = run_dir / "checkpoints"
    rng = random.Random(20261122)
    kills = mid_write = 0
    steps_seen = []
    for attempt in range(6):
        proc = _start(job, resume=attempt > 0)
        # Let it load and write a few checkpoints, then kill it at a random moment.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt_dir.is_dir() and any(p.suffix == ".h5" for p in ckpt_dir.iterdir()):
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break  # finished before the kill
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        kills += 1
        leftovers = [p.name for p in ckpt_dir.iterdir() if ".tmp" in p.name]
        mid_write += bool(leftovers)
        latest = CheckpointManager(ckpt_dir, is_writer=False).latest()
        assert latest is not None, f"no checkpoint after kill {kills}"
        state = load(latest)  # loads and verifies the digest
        steps_seen.append(state.step)
    proc = _start(job, resume=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    final = load(CheckpointManager(ckpt_dir, is_writer=False).latest())
    assert final.step == steps
    assert not [p for p in ckpt_dir.iterdir() if ".tmp" in p.name], "stale temporary files were not removed"
    print(f"{kills} SIGKILLs ({mid_write} left a half-written temporary file); "
          f"checkpoint steps after each kill: {steps_seen}; resumed to step {final.step}")
    assert kills >= 3
    assert steps_seen == sorted(steps_seen)  # never went back
