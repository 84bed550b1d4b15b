"""``distnet train --check`` is the run's own validation (distnet.jobs.job.check_job): every refusal
the run makes before training is found by ``--check``, with the same message, and the run refuses it
before any worker starts; an unwritable run directory is one of them; an error at an evaluation
keeps the step's checkpoint."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.data import ArrayDataset
from distnet.runner import exit_status
from distnet.jobs.cli import main
from distnet.training.hook import Hook
from distnet.training.trainer import Trainer

from mpi_util import find_mpiexec, mpi_env

JOB = """\
name = "check"
seed = 0

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 10

[optimizer]
name = "adam"
learning_rate = 0.01

[data]
name = "fashion_mnist"
train_samples = 300
test_samples = 100
validation = 50

[train]
batch_size = 50
steps = 4
eval_every = 2
log_every = 1

[checkpoint]
every = 2
"""

#: Every refusal the run makes of a job that parses key by key: (--set overrides, a fragment of
#: the one-line message).  Rules across keys, rules that need the data, the model on the data,
#: the run directory.
REFUSALS = [
    # An EMA metric needs [ema] (the message names [ema], not [data] validation).
    (["train.early_stopping.metric=ema_val_loss"],
     "train.early_stopping.metric: Expect: an [ema] section (the 'ema_val_loss' metric evaluates the EMA"),
    (["checkpoint.keep_best=ema_val_accuracy"],
     "checkpoint.keep_best: Expect: an [ema] section (the 'ema_val_accuracy' metric"),
    # keep_best needs checkpoints.
    (["checkpoint.keep_best=val_loss", "checkpoint.every=0"],
     "checkpoint.keep_best: Expect: checkpoints on (the best one is kept beside them) Actual: they are off "
     "(checkpoint.every = 0)"),
    (["checkpoint.keep_best=val_loss", 'checkpoint.dir=""', "checkpoint.every=0"],
     "checkpoint.keep_best: Expect: checkpoints on"),
    # val_* metrics need a validation split, and evaluations to see them.
    # ("-key": the job without that key's line)
    (["checkpoint.keep_best=val_loss", "-validation"], "checkpoint.keep_best: Expect: [data] validation"),
    (["train.early_stopping.patience=2", "-validation"], "train.early_stopping: Expect: [data] validation"),
    (["train.early_stopping.patience=2", "-eval_every"], "train.early_stopping: Expect: train.eval_every"),
    # Rules that need the data.
    (["data.validation=300"], "data.validation: Expect: fewer samples than the training data's 300 Actual: 300"),
    (["train.batch_size=260"], "train.batch_size: Expect: at most the 250 training samples left after [data] "
                               "validation holds 50 out Actual: 260"),
    (["model.layers.1.units=7"], "model.layers[1].units: the last layer gives one logit per class"),
    (["loss.type=mean_squared_error"], "loss.type: mean_squared_error is a regression loss"),
    (["data.name=tabular_binary", "model.layers.1.units=2", "data.augment_flip=true"],
     "data.augment_padding/augment_flip: Expect: image data"),
    # The model on the data's samples (a 2-D convolution on rows of 8 numbers).
    (["data.name=tabular_binary", 'model.layers.0={type = "conv2d", filters = 2, kernel_size = 3}',
      "model.layers.1.units=2"], "model: Expect: layers that take the data's samples of shape (8,)"),
    # The strategy's options, as the strategy checks them.
    (['dist.strategy={overlap = true, shared_memory = true}'],
     "dist.strategy: shared_memory=True with overlap=True, compression='none': Expect: neither"),
    (['dist.strategy={type = "zero1", shared_memory = true, compression = "float16"}'],
     "dist.strategy: shared_memory=True with compression: Expect: one of them"),
    # The run directory.
    (["run_dir={file}/run"], "run directory {file}/run: Expect: a directory distnet can create and write in "
                             "Actual: {file} is a file, not a directory"),
    (["checkpoint.dir={file}/ckpt"], "checkpoint directory {file}/ckpt: Expect: a directory distnet can create"),
]


@pytest.fixture
def job(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text(JOB)
    (tmp_path / "a_file").write_text("not a directory\n")
    return path


def _args(job, sets, run_dir):
    file = str(job.parent / "a_file")
    dropped = tuple(item[1:] + " =" for item in sets if item.startswith("-"))
    if dropped:
        job = job.with_name("variant.toml")
        job.write_text("".join(line for line in JOB.splitlines(True) if not line.startswith(dropped)))
    argv = ["train", str(job), "--progress", "none"]
    for item in (s for s in sets if not s.startswith("-")):
        argv += ["--set", item.replace("{file}", file)]
    if not any(s.startswith("run_dir=") for s in sets):
        argv += ["--run-dir", str(run_dir)]
    return argv


def _error(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("distnet: error: ")]
    return code, lines, out


@pytest.mark.parametrize("sets, fragment", REFUSALS, ids=[" ".join(s) for s, _ in REFUSALS])
def test_check_finds_every_refusal_of_the_run(capsys, monkeypatch, job, tmp_path, sets, fragment):
    import distnet.runner.launcher

    fragment = fragment.replace("{file}", str(tmp_path / "a_file"))
    run_dir = tmp_path / "run"
    code, checked, out = _error(capsys, _args(job, sets, run_dir) + ["--check"])
    assert code == exit_status.BAD_INPUT and out == ""
    assert len(checked) == 1 and fragment in checked[0], checked
    assert not run_dir.exists()                      # --check leaves nothing behind
    # The run refuses the same, with the same line, before training: nothing in the run directory.
    code, ran, _ = _error(capsys, _args(job, sets, run_dir))
    assert code == exit_status.BAD_INPUT and ran == checked
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "checkpoints").exists()
    # With -n 2, the launcher refuses it before any worker starts.
    launched = []
    monkeypatch.setattr(distnet.runner.launcher, "launch_job", lambda *a: launched.append(a))
    code, launching, _ = _error(capsys, _args(job, sets, run_dir) + ["-n", "2"])
    assert code == exit_status.BAD_INPUT and launching == checked and launched == []


def test_the_job_passes_check_and_runs(capsys, job, tmp_path):
    """The job of the table is good as it is: each refusal comes from its overrides."""
    run_dir = tmp_path / "run"
    assert main(_args(job, [], run_dir) + ["--check"]) == exit_status.OK
    assert not run_dir.exists()
    assert main(_args(job, [], run_dir)) == exit_status.OK
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["ckpt-00000002.h5", "ckpt-00000004.h5"]


def test_an_earlier_run_and_resume_refused_by_check_too(capsys, job, tmp_path):
    run_dir = tmp_path / "run"
    code, checked, _ = _error(capsys, _args(job, [], run_dir) + ["--check", "--resume"])
    assert code == exit_status.BAD_INPUT and "--resume: no checkpoint in" in checked[0]
    assert main(_args(job, [], run_dir)) == exit_status.OK
    capsys.readouterr()
    code, checked, _ = _error(capsys, _args(job, [], run_dir) + ["--check"])
    assert code == exit_status.BAD_INPUT and f"run directory {run_dir} holds checkpoints of an earlier run" \
        in checked[0]
    code, ran, _ = _error(capsys, _args(job, [], run_dir))
    assert code == exit_status.BAD_INPUT and ran == checked
    assert main(_args(job, [], run_dir) + ["--check", "--overwrite"]) == exit_status.OK


def test_world_size_refused_by_check(capsys, job, tmp_path):
    code, checked, _ = _error(capsys, _args(job, ["train.batch_size=2"], tmp_path / "run") + ["--check", "-n", "3"])
    assert code == exit_status.BAD_INPUT and "train.batch_size" in checked[0] and "3" in checked[0]
    # Shared memory needs two workers: refused for one, by --check as by the run, and passed for -n 2.
    sets = ['dist.strategy={type = "zero1", shared_memory = true}']
    code, checked, _ = _error(capsys, _args(job, sets, tmp_path / "run") + ["--check"])
    assert code == exit_status.BAD_INPUT and checked == [
        f"distnet: error: {job}: dist.strategy: shared_memory=True: Expect: an MPI job of 2 or more ranks on one "
        "machine Actual: 1 rank(s)"]
    code, ran, _ = _error(capsys, _args(job, sets, tmp_path / "run"))
    assert code == exit_status.BAD_INPUT and ran == checked
    assert main(_args(job, sets, tmp_path / "run") + ["--check", "-n", "2"]) == exit_status.OK
    # The replicated strategy's shared sum needs exactly two: refused for 3 before the job starts.
    sets = ['dist.strategy={type = "replicated", shared_memory = true}']
    code, checked, _ = _error(capsys, _args(job, sets, tmp_path / "run") + ["--check", "-n", "3"])
    assert code == exit_status.BAD_INPUT and checked == [
        f"distnet: error: {job}: dist.strategy: shared_memory=True: Expect: an MPI job of 2 ranks on one machine "
        "Actual: 3 rank(s)"]
    assert main(_args(job, sets, tmp_path / "run") + ["--check", "-n", "2"]) == exit_status.OK


# -- an unwritable run directory ------------------------------------------------------------------

def _read_only_mount_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt && ! touch /mnt/x"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _in_read_only_dir(tmp_path, argv, timeout=240):
    """Run ``argv`` in a private mount namespace where ``tmp_path/ro`` is a read-only file system
    (what root cannot write either: permission bits do not stop root)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    script = f"mount -t tmpfs -o ro tmpfs {ro} && exec \"$@\""
    env = mpi_env({"PYTHONPATH": os.path.dirname(os.path.dirname(distnet.__file__))})
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)


# Root ignores permission bits, so only a read-only file system refuses root's writes, and making
# one takes a private mount namespace (CAP_SYS_ADMIN; CI runs as root and has it). Where none can
# be made, the next test checks the same refusal through a file standing where the directory goes.
@pytest.mark.skipif(not _read_only_mount_works(), reason="no private read-only mount here (unshare -m, mount)")
@pytest.mark.parametrize("how", ["check", "one process", "launcher -n 2", "mpiexec -n 2"])
def test_read_only_run_dir_one_line_exit_2(job, tmp_path, how):
    train = [sys.executable, "-m", "distnet", "train", str(job), "--run-dir", "ro/run", "--progress", "none"]
    argv = {"check": train + ["--check"], "one process": train, "launcher -n 2": train + ["-n", "2"],
            # The workers themselves (no launcher before them): they agree and end with status 2.
            "mpiexec -n 2": [find_mpiexec() or "mpiexec", "-n", "2", *train]}[how]
    res = _in_read_only_dir(tmp_path, argv)
    assert res.returncode == exit_status.BAD_INPUT, res.stdout + res.stderr
    expected = ("distnet: error: run directory ro/run: Expect: a directory distnet can create and write in "
                "Actual: Read-only file system; choose another (--run-dir DIR)")
    assert res.stderr.strip().splitlines() == [expected], res.stderr
    assert "MPI_Abort" not in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_run_dir_under_a_file_one_line_exit_2_with_mpiexec(job, tmp_path):
    """The same where no read-only mount can be made: a regular file where a directory must be."""
    mpiexec = find_mpiexec()
    if mpiexec is None:   # mpich is a dependency: its absence is a broken install, not a reason to skip
        pytest.fail("no mpiexec beside the Python executable nor on PATH: Expect: `pip install mpich`")
    (tmp_path / "a_file").write_text("x")
    env = mpi_env({"PYTHONPATH": os.path.dirname(os.path.dirname(distnet.__file__))})
    res = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "distnet", "train", str(job), "--run-dir",
                          "a_file/run", "--progress", "none"], capture_output=True, text=True, timeout=240,
                         cwd=tmp_path, env=env)
    assert res.returncode == exit_status.BAD_INPUT, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        "distnet: error: run directory a_file/run: Expect: a directory distnet can create and write in Actual: "
        "a_file is a file, not a directory; choose another (--run-dir DIR)"], res.stderr


# -- an error at an evaluation keeps the step's checkpoint ----------------------------------------

class KerasNames(Hook):
    """A user's hook reading an evaluation by Keras's old name (``val_acc``): a KeyError at the first
    evaluation, the step a checkpoint is due too."""

    def on_evaluate(self, ctx, result):
        print(result["val_acc"])


def test_error_at_an_evaluation_keeps_the_step_checkpoint(tmp_path):
    from distnet.checkpoint import load

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = (np.eye(3, 4)[y] + 0.1 * rng.standard_normal((120, 4))).astype(np.float32)
    data = ArrayDataset(x, y.astype(np.int64), num_classes=3)
    model = distnet.Sequential([layers.Dense(3)], seed=0)
    trainer = Trainer(model, "sparse_softmax_cross_entropy", "sgd", data, validation_data=data,
                      global_batch_size=20, steps=30, eval_every=10, checkpoint_dir=str(tmp_path / "ckpt"),
                      checkpoint_every=10, hooks=[KerasNames()])
    with pytest.raises(KeyError, match="val_acc"):
        trainer.fit(verbose=0)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["ckpt-00000010.h5"]
    state = load(tmp_path / "ckpt" / "ckpt-00000010.h5")
    assert state.step == 10 and state.metrics["val_loss"] > 0   # the step's evaluation is in it
    for v in model.variables:
        np.testing.assert_array_equal(state.params[v.name], v.numpy())
