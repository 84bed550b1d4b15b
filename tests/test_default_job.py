"""The built-in default job (``distnet train`` without a job file) as a first demo: what it keeps on disk."""
from __future__ import annotations

import subprocess
import sys

from distnet.jobs.config import load_job


def test_the_default_job_keeps_only_its_newest_checkpoint():
    # A first run should not leave 5 x 103 MB behind: the demo keeps one checkpoint, which is all
    # --resume needs; a job file (or --set checkpoint.max_to_keep=N) keeps more.
    assert load_job(None).checkpoint.max_to_keep == 1
    assert load_job(None, ["checkpoint.max_to_keep=3"]).checkpoint.max_to_keep == 3


def test_a_default_run_leaves_one_checkpoint_file(tmp_path):
    # Three checkpoints are written (steps 1, 2, 3); only the newest stays.
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "distnet", "train", "--run-dir", str(run_dir), "--progress", "none",
         "--set", "train.steps=3", "--set", "checkpoint.every=1", "--set", "train.eval_every=1000",
         "--set", "data.train_samples=300", "--set", "data.test_samples=50"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.suffix == ".h5")
    assert files == ["ckpt-00000003.h5"], files
