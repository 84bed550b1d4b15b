"""BatchNorm layers beyond one call: synchronized over real ranks with
synchronize_batch_norm (the Trainer's loss convention), and a job with batch
normalization stopped and resumed is bitwise the job that ran through
(its moving statistics are checkpointed with the weights)."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

import distnet
from distnet.layers import AvgPool2D, BatchNorm, Conv2D, Dense, Flatten
from distnet.model.models import Sequential
from mpi_util import run_script


def one_process():
    model = Sequential([Conv2D(3, 3, padding="same"), BatchNorm(momentum=0.5), AvgPool2D(2), Flatten(), Dense(5),
                        BatchNorm(), Dense(4)], input_shape=(4, 4, 2), dtype=np.float64, seed=3)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 10, 4, 4, 2)) * 2 + 0.5
    y = np.eye(4)[rng.integers(0, 4, (3, 10))]
    for step in range(3):
        out = model(x[step], training=True)
        loss = distnet.reduce_sum(distnet.nn.softmax_cross_entropy_with_logits(labels=y[step], logits=out)) / 10.0
        grads = distnet.gradients(loss, model.trainable_variables)
    return np.concatenate([g.reshape(-1) for g in grads]), {v.name.replace("/", "__"): v.numpy()
                                                           for v in model.variables if not v.trainable}


@pytest.mark.parametrize("nprocs", [2, 3])
def test_synchronized_layers_on_ranks_equal_one_process(tmp_path, nprocs):
    got = run_script("batch_norm_layer_sync.py", tmp_path, f"layers{nprocs}", nprocs=nprocs, timeout=120)
    grads, moving = one_process()
    np.testing.assert_allclose(got["grads"], grads, rtol=1e-9, atol=1e-12)
    assert sorted(moving) == sorted(k for k in got if k != "grads") and len(moving) == 4
    for k, v in moving.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-12, err_msg=k)


JOB = """
seed = 0
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
padding = "same"
use_bias = false
[[model.layers]]
type = "batch_norm"
momentum = 0.9
[[model.layers]]
type = "avg_pool2d"
[[model.layers]]
type = "global_avg_pool2d"
[[model.layers]]
type = "dense"
units = 10
[optimizer]
name = "adam"
learning_rate = 0.01
[train]
batch_size = 50
steps = 12
[checkpoint]
every = 6
"""


def train(tmp_path, run, *extra):
    job = tmp_path / "bn.toml"
    job.write_text(JOB)
    proc = subprocess.run([sys.executable, "-m", "distnet", "train", str(job), "--run-dir", str(tmp_path / run),
                           "--progress", "none", *extra], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def params(path):
    out = {}
    with h5py.File(path, "r") as f:
        f["params"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset)
                               else None)
    return out


def test_a_job_with_batch_norm_resumes_bitwise(tmp_path):
    train(tmp_path, "through")
    train(tmp_path, "resumed", "--set", "train.steps=6")
    train(tmp_path, "resumed", "--resume")
    a = params(tmp_path / "through" / "checkpoints" / "ckpt-00000012.h5")
    b = params(tmp_path / "resumed" / "checkpoints" / "ckpt-00000012.h5")
    assert "batch_normalization/moving_variance" in a and sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    six = params(tmp_path / "through" / "checkpoints" / "ckpt-00000006.h5")
    assert not np.array_equal(six["batch_normalization/moving_mean"], a["batch_normalization/moving_mean"])


def test_a_job_on_two_workers_equals_one(tmp_path):
    """`distnet train -n 2` (the job's default strategy: ZeRO-1 through shared memory) with
    micro-batches trains the 1-worker model: the statistics are synchronized by default."""
    train(tmp_path, "one", "--set", "train.micro_batches=3")
    train(tmp_path, "two", "--set", "train.micro_batches=3", "-n", "2")
    a = params(tmp_path / "one" / "checkpoints" / "ckpt-00000012.h5")
    b = params(tmp_path / "two" / "checkpoints" / "ckpt-00000012.h5")
    assert sorted(a) == sorted(b) and "batch_normalization/moving_mean" in a
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)   # float32 rounding
