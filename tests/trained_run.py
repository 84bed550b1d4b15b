"""A small conv net trained for a few steps by ``distnet train``, shared by the
predict and export tests (real checkpoint files of a real run)."""
from __future__ import annotations

from pathlib import Path

from distnet.runner import exit_status
from distnet.jobs.cli import main

SMALL_CONV_JOB = """\
name = "small_conv"
seed = 2

[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 5
padding = "same"
activation = "relu"

[[model.layers]]
type = "max_pool2d"
pool_size = 2

[[model.layers]]
type = "dropout"
rate = 0.25

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 10

[optimizer]
name = "adam"
learning_rate = 0.003

[ema]
decay = 0.9

[data]
name = "fashion_mnist"
train_samples = 500
test_samples = 200

[train]
batch_size = 50
steps = 6
"""


def train_small_conv(directory: Path) -> Path:
    """Train the job into ``directory / "run"`` and return that run directory."""
    job = directory / "small_conv.toml"
    job.write_text(SMALL_CONV_JOB)
    run_dir = directory / "run"
    code = main(["train", str(job), "--run-dir", str(run_dir), "--progress", "none"])
    assert code == exit_status.OK
    return run_dir
