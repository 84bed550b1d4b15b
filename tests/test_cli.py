"""The ``distnet`` command: help, exit codes, one-line errors, eval/inspect/plot/data, train."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib

import numpy as np
import pytest

import distnet
from distnet.runner import exit_status
from distnet.jobs.cli import main
from distnet.jobs.config import parse_job

TINY_JOB = """\
name = "tiny"
seed = 1

[[model.layers]]
type = "flatten"

[[model.layers]]
type = "dense"
units = 10

[optimizer]
name = "adam"
learning_rate = 0.01

[ema]
decay = 0.9

[data]
name = "fashion_mnist"
train_samples = 300
test_samples = 100

[train]
batch_size = 50
steps = 4
eval_every = 2
log_every = 1
"""


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- version and help -------------------------------------------------------------

def test_version_in_process(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == exit_status.OK and out.strip() == f"distnet {distnet.__version__}"


def test_version_as_module_subprocess():
    proc = subprocess.run([sys.executable, "-m", "distnet", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"distnet {distnet.__version__}"


def test_the_command_line_starts_without_numpy_or_mpi():
    """`distnet train` installs its signal handlers before the slow imports: the
    package and the CLI module load neither numpy nor mpi4py."""
    code = "import sys, distnet.jobs.cli; print(sorted(m for m in ('numpy', 'mpi4py', 'h5py') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_every_top_level_name_resolves():
    """The package's names load on first use: each one in __all__ is there, an unknown one is an AttributeError."""
    for name in distnet.__all__:
        assert getattr(distnet, name) is not None, name
    assert {"Trainer", "matmul", "optimizers", "distributed", "Variable", "gradients"} <= set(distnet.__all__)
    assert distnet.matmul is distnet.ops.matmul and distnet.Trainer is distnet.training.trainer.Trainer
    assert set(distnet.__all__) <= set(dir(distnet))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        distnet.no_such_name  # noqa: B018 (the attribute access is what raises)
    namespace: dict = {}
    exec("from distnet import *", namespace)
    assert namespace["reduce_sum"] is distnet.reduce_sum and namespace["Sequential"] is distnet.Sequential


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["predict"], ["export"], ["inspect"],
                                     ["plot"], ["data"],
                                     ["data", "fetch"], ["data", "convert"]], ids=" ".join)
def test_every_help_is_useful(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == exit_status.OK
    assert out.startswith("usage: distnet")
    assert "example" in out  # an example of use in every --help
    assert len(out.splitlines()) >= 8


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == exit_status.OK and "train" in out and "eval" in out and "inspect" in out


@pytest.mark.parametrize("argv", [["bogus"], ["train", "--no-such-option"], ["eval"],
                                  ["train", "-n", "two"], ["data", "fetch", "mnist"],
                                  ["predict", "runs/x"], ["export", "runs/x"],
                                  ["export", "runs/x", "-o", "m.onnx", "--format", "tflite"]])
def test_argument_errors_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == exit_status.BAD_INPUT
    assert "error:" in err and "Traceback" not in err


# -- train: validation before anything starts ----------------------------------------

def test_bad_job_file_is_one_line_exit_2(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB.replace("learning_rate = 0.01", "learning_rate = -0.01"))
    code, out, err = run(capsys, "train", str(job))
    assert code == exit_status.BAD_INPUT
    assert err == f"distnet: error: {job}:13: optimizer.learning_rate: Expect: > 0 Actual: -0.01\n"
    assert out == ""


def test_bad_override_exit_2(capsys):
    code, _, err = run(capsys, "train", "--set", "optimizer.learnig_rate=0.1", "--check")
    assert code == exit_status.BAD_INPUT
    assert "did you mean 'learning_rate'" in err and err.count("\n") == 1


def test_check_prints_the_effective_job(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB)
    code, out, _ = run(capsys, "train", str(job), "--check", "--set", "train.steps=9",
                       "--run-dir", str(tmp_path / "r"))
    assert code == exit_status.OK
    raw = tomllib.loads(out)
    assert raw["train"]["steps"] == 9 and raw["run_dir"] == str(tmp_path / "r")
    assert parse_job(out).optimizer.learning_rate == 0.01


def _fake_launch(monkeypatch, launched: list, code: int = 0) -> None:
    import distnet.runner.launcher
    import distnet.runner.reachable

    def fake(args, settings):
        launched.append((list(args), vars(settings)))
        return distnet.runner.launcher.LaunchOutcome(code=code, raw=code)

    monkeypatch.setattr(distnet.runner.launcher, "launch_job", fake)
    # The hostfiles here name machines that do not exist: no worker starts, so none is asked
    # (tests/test_launch_messages.py tests the asking).
    monkeypatch.setattr(distnet.runner.reachable, "check_hosts_reachable", lambda hosts, **options: None)


def test_world_size_checked_before_launch(capsys, monkeypatch):
    launched = []
    _fake_launch(monkeypatch, launched)
    code, _, err = run(capsys, "train", "--set", "train.batch_size=3", "-n", "4")
    assert code == exit_status.BAD_INPUT
    assert "Expect: a global batch of at least the number of ranks (4) = 4 Actual: 3" in err
    assert launched == []


def test_hostfile_slots_checked_before_launch(capsys, monkeypatch, tmp_path):
    launched = []
    _fake_launch(monkeypatch, launched)
    hosts = tmp_path / "hosts"
    hosts.write_text("node1:2\nnode2 slots=2\n")
    code, _, err = run(capsys, "train", "--set", "train.batch_size=3", "--hostfile", str(hosts))
    assert code == exit_status.BAD_INPUT and "number of ranks (4)" in err
    code, _, err = run(capsys, "train", "--set", "train.batch_size=3", "--hostfile", str(hosts), "-n", "3")
    assert code == exit_status.OK, err
    assert (launched[0][1]["num_workers"], launched[0][1]["hostfile"]) == (3, str(hosts))
    hosts.write_text("node1:zero\n")
    code, _, err = run(capsys, "train", "--hostfile", str(hosts))
    assert code == exit_status.BAD_INPUT and f"{hosts}:1" in err
    assert len(launched) == 1


def test_launch_reinvokes_train_with_the_same_job(capsys, monkeypatch, tmp_path):
    launched = []
    _fake_launch(monkeypatch, launched)
    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB)
    # --resume with no checkpoint to resume: refused before any worker starts, as the run refuses it
    code, _, err = run(capsys, "train", str(job), "-n", "2", "--resume", "--run-dir", str(tmp_path / "out"))
    assert code == exit_status.BAD_INPUT and "--resume: no checkpoint in" in err and launched == []
    code, _, _ = run(capsys, "train", str(job), "-n", "2", "--set", "train.steps=6", "--resume-if-any",
                     "--run-dir", "out")
    assert code == exit_status.OK
    args, kwargs = launched[0]
    assert args == ["train", str(job), "--set", "train.steps=6", "--run-dir", "out", "--progress", "plain",
                    "--resume-if-any"]
    assert (kwargs["num_workers"], kwargs["hostfile"]) == (2, None)
    # The workers start quietly on a signal until distnet train installs its handlers.
    assert kwargs["entry"][0] == "-c" and "from distnet.jobs.cli import main" in kwargs["entry"][1]


@pytest.mark.parametrize("exc, code", [(KeyboardInterrupt(), exit_status.SIGINT),
                                       (distnet.DistributedError("rank 1 stalled at step 7"), exit_status.FAILED),
                                       (distnet.DataError("train.h5: labels out of range"), exit_status.BAD_INPUT)])
def test_exit_codes_of_train_failures(capsys, monkeypatch, exc, code):
    import distnet.jobs.job

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(distnet.jobs.job, "run_train", fail)
    # Not this machine's BLAS advice (distnet.distributed.init gives it before training): the failure alone.
    monkeypatch.setattr("distnet.distributed.threads.blas_kernel_advice", lambda: None)
    got, _, err = run(capsys, "train", "--set", "train.steps=1")
    assert got == code
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    if code != exit_status.SIGINT:
        assert str(exc) in err


# -- eval and inspect on a checkpoint written here ----------------------------------

def _reference(weights: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Loss and accuracy of the flatten+dense model, in plain numpy (float64)."""
    logits = x.reshape(len(x), -1).astype(np.float64) @ weights["dense/kernel"] + weights["dense/bias"]
    m = logits.max(axis=1, keepdims=True)
    log_z = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    loss = float(np.mean(log_z - logits[np.arange(len(y)), y]))
    return loss, float(np.mean(np.argmax(logits, axis=1) == y))


@pytest.fixture()
def checkpoint(tmp_path):
    from distnet.checkpoint import CheckpointState, save
    from distnet.jobs.job import load_data

    cfg = parse_job(TINY_JOB, "tiny.toml")
    rng = np.random.default_rng(0)
    params = {"dense/kernel": rng.normal(0, 0.05, (784, 10)).astype(np.float32),
              "dense/bias": rng.normal(0, 0.1, 10).astype(np.float32)}
    ema = {k: (v * 0.5).astype(np.float32) for k, v in params.items()}
    slots = {"m": {k: np.zeros_like(v) for k, v in params.items()},
             "v": {k: np.zeros_like(v) for k, v in params.items()}}
    state = CheckpointState(params=params, ema=ema, step=4, epoch=0, position=200,
                            optimizer={"name": "Adam", "iterations": 4, "slots": slots, "hyper": {}},
                            config_text=cfg.to_toml(), metrics={"loss": 1.25})
    path = tmp_path / "run" / "checkpoints" / "ckpt-00000004.h5"
    path.parent.mkdir(parents=True)
    save(path, state)
    _, test = load_data(cfg)
    x, y = test.read(np.arange(len(test)))
    return path, params, ema, x, y


@pytest.mark.parametrize("use_ema", [False, True])
def test_eval_matches_a_numpy_reference(capsys, checkpoint, use_ema):
    path, params, ema, x, y = checkpoint
    argv = ["eval", str(path.parent.parent), "--json"] + (["--ema"] if use_ema else [])
    code, out, err = run(capsys, *argv)
    assert code == exit_status.OK, err
    result = json.loads(out)
    loss, acc = _reference(ema if use_ema else params, x, y)
    assert result["checkpoint"] == str(path) and result["step"] == 4 and result["samples"] == 100
    assert result["weights"] == ("ema" if use_ema else "trained")
    assert result["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)


def test_eval_text_output_and_overrides(capsys, checkpoint):
    path, params, _, x, y = checkpoint
    code, out, _ = run(capsys, "eval", str(path), "--set", "data.test_samples=40")
    assert code == exit_status.OK
    _, acc = _reference(params, x[:40], y[:40])
    first, data = out.rstrip().splitlines()
    assert first.startswith(f"{path} (step 4, trained weights): test loss ")
    assert first.endswith(f"accuracy {acc:.4f} on 40 samples")
    assert re.fullmatch(r"  data: fashion_mnist.*t10k-images-idx3-ubyte\.gz \(first 40\), 40 samples, "
                        r"sha256 [0-9a-f]{12}", data), data


def test_eval_and_inspect_errors_exit_2(capsys, checkpoint, tmp_path):
    path = checkpoint[0]
    code, _, err = run(capsys, "eval", str(tmp_path / "nothing"))
    assert code == exit_status.BAD_INPUT and "no such checkpoint" in err
    bad = tmp_path / "bad.h5"
    data = bytearray(path.read_bytes())
    bad.write_bytes(bytes(data[: len(data) // 2]))
    code, _, err = run(capsys, "inspect", str(bad))
    assert code == exit_status.BAD_INPUT and "Traceback" not in err and str(bad) in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "eval", str(empty))
    assert code == exit_status.BAD_INPUT and "no checkpoint" in err


def test_inspect_lists_step_variables_optimizer_and_config(capsys, checkpoint):
    path = checkpoint[0]
    code, out, _ = run(capsys, "inspect", str(path.parent))
    assert code == exit_status.OK
    lines = out.splitlines()
    assert lines[0].split() == ["checkpoint", str(path)]
    assert "step            4" in out
    assert "epoch           0 (0-based, the epoch of step 4; resumes at epoch 0, sample 200)" in lines
    assert "  dense/bias    float32[10] ema" in lines
    assert "  dense/kernel  float32[784, 10] ema" in lines
    assert "variables (2, 7,850 parameters)" in out
    assert "optimizer       Adam, 4 iterations, slots: m (2), v (2)" in out
    assert "ema             2 shadow weights" in out
    assert "loss = 1.25" in out
    assert 'name = "tiny"' in out.split("config:")[1]
    code, out, _ = run(capsys, "inspect", str(path), "--no-config")
    assert code == exit_status.OK and "config:" not in out


def test_inspect_speaks_as_metrics_jsonl_and_the_summary_do(capsys, checkpoint, tmp_path):
    from distnet.checkpoint import load, save
    from distnet.data.identity import data_identity
    from distnet.jobs.job import load_data

    state = load(checkpoint[0])
    # After 5 whole epochs: the data resumes at epoch 5, sample 0; the last step was in epoch 4.
    state.step, state.epoch, state.position = 30, 5, 0
    state.metrics = {"test_accuracy": 0.5, "test_ema_accuracy": 0.625, "test_ema_loss": 1.5}
    state.data = data_identity(*load_data(parse_job(state.config_text, "stored")))
    save(tmp_path / "ckpt-00000030.h5", state)
    code, out, _ = run(capsys, "inspect", str(tmp_path / "ckpt-00000030.h5"), "--no-config")
    assert code == exit_status.OK
    lines = out.splitlines()
    assert "epoch           4 (0-based, the epoch of step 30; resumes at epoch 5, sample 0)" in lines
    metrics = lines[lines.index("metrics:") + 1:lines.index("metrics:") + 4]
    assert metrics == ["  ema_test_accuracy = 0.625", "  ema_test_loss = 1.5", "  test_accuracy = 0.5"]
    data = lines[lines.index("data:") + 1:]
    assert data[0].startswith("  test: fashion_mnist") and ", 100 samples, sha256 " in data[0]
    assert data[1].startswith("  train: fashion_mnist") and ", 300 samples, sha256 " in data[1]


def test_inspect_shows_the_convolution_plan(capsys, checkpoint, tmp_path):
    from distnet.checkpoint import load, save

    state = load(checkpoint[0])
    code, out, _ = run(capsys, "inspect", str(checkpoint[0]), "--no-config")
    assert code == exit_status.OK and "convolutions" not in out   # a net without convolutions
    state.conv_algorithms = {"conv2d": "gemm", "conv2d_1": "fft"}
    save(tmp_path / "ckpt-00000004.h5", state)
    code, out, _ = run(capsys, "inspect", str(tmp_path / "ckpt-00000004.h5"), "--no-config")
    assert code == exit_status.OK and "convolutions    conv2d: gemm, conv2d_1: fft" in out.splitlines()


# -- plot and data ------------------------------------------------------------------

def test_plot_command(capsys, tmp_path):
    from distnet.training.metrics import MetricsLogger

    for name in ("a", "b"):
        log = MetricsLogger(tmp_path / name, progress="none")
        for s in range(1, 6):
            log.log_step(step=s, epoch=0, loss=1.0 / s, reg_loss=0.0, lr=0.1, samples_per_sec=10.0)
        log.log_eval(step=5, epoch=0, test_loss=0.5, test_accuracy=0.5)
        log.close()
    code, out, err = run(capsys, "plot", str(tmp_path / "a"))
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        assert code == exit_status.BAD_INPUT and "matplotlib" in err
        return
    assert code == exit_status.OK and out.strip() == f"wrote {tmp_path / 'a' / 'metrics.png'}"
    assert (tmp_path / "a" / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run(capsys, "plot", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "ab.png"))
    assert code == exit_status.OK and (tmp_path / "ab.png").exists()
    code, _, err = run(capsys, "plot", str(tmp_path / "missing"))
    assert code == exit_status.BAD_INPUT and "no metrics file" in err


def test_data_convert(capsys, tmp_path):
    from distnet.data import HDF5Dataset, write_idx

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 12).astype(np.uint8)
    write_idx(tmp_path / "img.idx", images)
    write_idx(tmp_path / "lab.idx", labels)
    old = os.umask(0o022)
    try:
        code, out, err = run(capsys, "data", "convert", str(tmp_path / "img.idx"), str(tmp_path / "lab.idx"),
                             str(tmp_path / "out.h5"), "--num-classes", "10")
    finally:
        os.umask(old)
    assert code == exit_status.OK, err
    # As any file the user creates (0666 less the umask), not a temporary file's private 0600.
    assert stat.S_IMODE(os.stat(tmp_path / "out.h5").st_mode) == 0o644
    ds = HDF5Dataset(tmp_path / "out.h5")
    x, y = ds.read([3, 0])
    np.testing.assert_array_equal(y, labels[[3, 0]])
    np.testing.assert_allclose(x[..., 0], images[[3, 0]] / 255.0, atol=1e-6)
    (tmp_path / "short.idx").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    code, _, err = run(capsys, "data", "convert", str(tmp_path / "img.idx"), str(tmp_path / "short.idx"),
                       str(tmp_path / "x.h5"))
    assert code == exit_status.BAD_INPUT and "short.idx" in err and "Traceback" not in err


# -- end to end ------------------------------------------------------------------------

def test_train_eval_resume_end_to_end(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB)
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", str(job), "--run-dir", str(run_dir), "--progress", "plain")
    assert code == exit_status.OK, err
    from distnet.training.metrics import read_metrics

    recs = read_metrics(run_dir)
    steps = [r for r in recs if r["kind"] == "step"]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["lr"] == 0.01 and r["samples_per_sec"] > 0 for r in steps)
    assert [r["step"] for r in evals][:2] == [2, 4]
    assert all("ema_test_accuracy" in r for r in evals)
    assert recs[-1]["kind"] == "end" and recs[-1]["status"] == "completed"
    assert "test accuracy" in out  # the summary table
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.h5"))
    assert ckpts and ckpts[-1].name == "ckpt-00000004.h5"
    # The summary says what the run leaves on disk.
    size = sum(p.stat().st_size for p in ckpts)
    (row,) = [line for line in out.splitlines() if line.startswith("checkpoints kept")]
    assert row.split()[2:] == [str(len(ckpts)), "file" + ("s," if len(ckpts) > 1 else ","),
                               f"{size / 1e6:.1f}", "MB"]
    assert recs[-1]["checkpoint_files"] == len(ckpts) and recs[-1]["checkpoint_bytes"] == size
    assert (run_dir / "job.toml").exists()

    code, out, _ = run(capsys, "eval", str(run_dir), "--ema", "--json")
    assert code == exit_status.OK
    result = json.loads(out)
    assert result["step"] == 4 and result["weights"] == "ema"
    assert result["accuracy"] == pytest.approx(evals[-1]["ema_test_accuracy"], abs=1e-9)

    code, _, err = run(capsys, "train", str(job), "--run-dir", str(run_dir), "--resume",
                       "--set", "train.steps=6", "--progress", "none")
    assert code == exit_status.OK, err
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_eval_warns_when_its_test_data_is_not_what_training_evaluated_on(capsys, checkpoint):
    from distnet.checkpoint import load, save
    from distnet.data.identity import data_identity
    from distnet.jobs.job import load_data

    path = checkpoint[0]
    code, out, err = run(capsys, "eval", str(path), "--json")
    # A checkpoint that does not say which data its run used: nothing to compare.
    assert code == exit_status.OK and err == "" and json.loads(out)["same_data_as_training"] is None
    state = load(path)
    cfg = parse_job(state.config_text, "stored")
    state.data = data_identity(*load_data(cfg))   # what the trainer stores: 100 test images
    save(path, state)
    code, out, err = run(capsys, "eval", str(path), "--json")
    assert code == exit_status.OK and err == ""
    result = json.loads(out)
    assert result["same_data_as_training"] is True
    assert result["data_digest"] == state.data["test"]["digest"]
    # The first 40 of the same test data, as asked: other samples than training's, but no surprise.
    code, out, err = run(capsys, "eval", str(path), "--json", "--set", "data.test_samples=40")
    assert code == exit_status.OK and err == "" and json.loads(out)["same_data_as_training"] is False
    assert json.loads(out)["samples"] == 40
    # Data that differ from what the run used without being asked for: the job's test data changed.
    digest = state.data["test"]["digest"]
    state.data["test"]["digest"] = "0" * 64        # as if training had seen other images
    save(path, state)
    code, out, err = run(capsys, "eval", str(path), "--json")
    (line,) = err.splitlines()
    assert line.startswith("distnet: warning: evaluating on other data than training used: training "
                           "evaluated on fashion_mnist")
    assert line.endswith(f"this evaluation uses {json.loads(out)['data']}") and digest[:12] in line
    code, out, err = run(capsys, "eval", str(path), "--json", "--set", "data.test_samples=40")
    (line,) = err.splitlines()
    assert line.startswith("distnet: warning: the job's test data is not what training evaluated on: "
                           "training evaluated on fashion_mnist") and "100 samples, sha256 000000000000" in line
    assert line.endswith(f"this evaluation uses {json.loads(out)['data']}") and "(first 40), 40 samples" in line
    code, out, err = run(capsys, "eval", str(path), "--json", "--data", "fashion_mnist")
    assert code == exit_status.OK and err == "" and json.loads(out)["same_data_as_training"] is False


def test_eval_on_the_data_named(capsys, checkpoint, tmp_path):
    """``--data`` evaluates the file or dataset named, whole: a test file whatever its name,
    an IDX pair, a converted HDF5 file, a directory; ``--set data.test_samples`` takes its first N."""
    from distnet.data import load_dataset
    from distnet.data.idx import write_idx

    path, params, _, _, _ = checkpoint
    full = load_dataset("fashion_mnist").test
    x, y = full.read(np.arange(300))
    raw = np.rint(x[..., 0] * 255).astype(np.uint8)             # the images as IDX stores them
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    images = idx_dir / "t10k-images-idx3-ubyte"
    write_idx(images, raw)
    write_idx(idx_dir / "t10k-labels-idx1-ubyte", y.astype(np.uint8))
    h5 = tmp_path / "my-test.h5"
    assert run(capsys, "data", "convert", str(images), str(idx_dir / "t10k-labels-idx1-ubyte"), str(h5))[0] == 0
    named = tmp_path / "fashion-train.h5"                       # named like a training file: still that file
    named.write_bytes(h5.read_bytes())
    loss, acc = _reference(params, x, y)
    for data in (images, h5, named):
        code, out, err = run(capsys, "eval", str(path), "--json", "--data", str(data))
        assert code == exit_status.OK, err
        got = json.loads(out)
        assert got["samples"] == 300 and str(data) in got["data"], got
        assert got["accuracy"] == pytest.approx(acc, abs=1e-12) and got["loss"] == pytest.approx(loss, rel=1e-5)
        assert err == ""                                        # the user named it: nothing to warn about
    code, out, err = run(capsys, "eval", str(path), "--json", "--data", str(h5), "--set", "data.test_samples=120")
    assert code == exit_status.OK and err == "" and json.loads(out)["samples"] == 120
    assert json.loads(out)["accuracy"] == pytest.approx(_reference(params, x[:120], y[:120])[1], abs=1e-12)
    code, out, err = run(capsys, "eval", str(path), "--data", str(idx_dir / "t10k-labels-idx1-ubyte"))
    assert code == exit_status.BAD_INPUT and err.strip().splitlines()[-1] == (
        f"distnet: error: --data {idx_dir / 't10k-labels-idx1-ubyte'}: Expect: an HDF5 file, or an IDX images "
        "file with its labels file beside it Actual: a labels file: name its images file (...-images-idx3-ubyte)")
    code, out, err = run(capsys, "eval", str(path), "--data", str(tmp_path / "nothing.h5"))
    assert code == exit_status.BAD_INPUT and "Actual: nothing at" in err


def test_checkpoints_switched_off_from_the_command_line(capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB + "\n[checkpoint]\nevery = 2\n")
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", str(job), "--run-dir", str(run_dir), "--progress", "plain",
                         "--set", "checkpoint.every=0")
    assert code == exit_status.OK, err
    assert not (run_dir / "checkpoints").exists() and (run_dir / "metrics.jsonl").exists()
    assert [line.split() for line in out.splitlines() if line.startswith("checkpoints")] == [["checkpoints", "off"]]
    # The banner names the data the run used.
    banner = out.splitlines()
    assert banner[0].startswith("distnet: job 'tiny'") and "300 training samples" in banner[0]
    assert re.fullmatch(r"  train data: fashion_mnist.*train-images-idx3-ubyte\.gz \(first 300\), "
                        r"300 samples, sha256 [0-9a-f]{12}", banner[1]), banner[1]
    assert re.fullmatch(r"  test data:  fashion_mnist.*t10k-images-idx3-ubyte\.gz \(first 100\), "
                        r"100 samples, sha256 [0-9a-f]{12}", banner[2]), banner[2]
    code, _, err = run(capsys, "train", str(job), "--run-dir", str(run_dir), "--resume",
                       "--set", "checkpoint.every=0")
    assert code == exit_status.BAD_INPUT
    # (the last line: an environment's BLAS warning may come first)
    assert err.strip().splitlines()[-1] == (f"distnet: error: {job}: --resume needs checkpoints, but "
                                            "checkpoint.every is 0 (off)")


def test_eval_when_the_stored_data_path_is_gone(capsys, checkpoint, tmp_path):
    from distnet.checkpoint import load, save

    path, params, _, x, y = checkpoint
    state = load(path)
    state.config_text = state.config_text.replace('[data]\n', '[data]\npath = "/nonexistent/train.h5"\n')
    moved = tmp_path / "moved.h5"
    save(moved, state)
    code, _, err = run(capsys, "eval", str(moved))
    assert code == exit_status.BAD_INPUT
    assert "stored job configuration is invalid here" in err and "/nonexistent/train.h5" in err
    code, out, err = run(capsys, "eval", str(moved), "--data", "fashion_mnist", "--json")
    assert code == exit_status.OK, err
    from distnet.data import load_dataset

    full = load_dataset("fashion_mnist").test                   # the dataset named, whole
    fx, fy = full.read(np.arange(len(full)))
    assert json.loads(out)["samples"] == len(full)
    assert json.loads(out)["accuracy"] == pytest.approx(_reference(params, fx, fy)[1], abs=1e-12)
    code, out, err = run(capsys, "eval", str(moved), "--data", "fashion_mnist", "--json",
                         "--set", "data.test_samples=100")      # the first 100, as training evaluated
    assert json.loads(out)["accuracy"] == pytest.approx(_reference(params, x, y)[1], abs=1e-12)


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resume_finishes(tmp_path):
    import signal
    import time

    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB.replace("steps = 4", "steps = 100000").replace("eval_every = 2", "eval_every = 100000"))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "distnet", "train", str(job), "--run-dir", str(run_dir),
                             "--progress", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        metrics = run_dir / "metrics.jsonl"
        while time.monotonic() < deadline:  # wait until training is under way
            if metrics.exists() and '"kind":"step"' in metrics.read_text():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exit_status.SIGINT, err
    assert "interrupted" in err and "Traceback" not in err
    from distnet.checkpoint import load
    from distnet.training.metrics import read_metrics

    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.h5"))
    assert ckpts, "no checkpoint saved on Ctrl-C"
    saved = load(ckpts[-1]).step
    recs = read_metrics(run_dir)
    assert recs[-1]["kind"] == "end" and recs[-1]["status"] == "interrupted"
    logged = max(r["step"] for r in recs if r["kind"] == "step")
    # The interrupt may land between an update and its log line: the checkpoint is never behind.
    assert saved >= 1 and logged in (saved - 1, saved)
    assert main(["train", str(job), "--run-dir", str(run_dir), "--resume", "--progress", "none",
                 "--set", f"train.steps={saved + 3}"]) == exit_status.OK
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "step"]
    assert steps == list(range(1, logged + 1)) + list(range(saved + 1, saved + 4))


@pytest.mark.parametrize("point_at", ["file", "directory"])
def test_train_on_an_hdf5_dataset_pair(capsys, tmp_path, point_at):
    from distnet.data import write_hdf5_dataset
    from distnet.training.metrics import read_metrics

    rng = np.random.default_rng(2)
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 60), ("test", 20)):
        write_hdf5_dataset(data / f"toy-{split}.h5", rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
                           rng.integers(0, 3, n), num_classes=3)
    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB.replace("units = 10", "units = 3").replace(
        'name = "fashion_mnist"\ntrain_samples = 300\ntest_samples = 100',
        'path = "data/toy-train.h5"' if point_at == "file" else 'path = "data"'))
    code, _, err = run(capsys, "train", str(job), "--run-dir", str(tmp_path / "run"), "--progress", "none")
    assert code == exit_status.OK, err
    evals = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "eval"]
    assert evals and evals[-1]["test_samples"] == 20
    job.write_text(job.read_text().replace("units = 3", "units = 10"))
    code, _, err = run(capsys, "train", str(job), "--run-dir", str(tmp_path / "run2"))
    assert code == exit_status.BAD_INPUT
    assert "model.layers[1].units: the last layer gives one logit per class: Expect: 3" in err


def test_the_banner_of_a_run_on_converted_files_names_the_hdf5_files(capsys, tmp_path):
    from distnet.data.builtin import EMBEDDED_DIR, split_files

    for split in ("train", "test"):
        images, labels = split_files(EMBEDDED_DIR, split)
        code, _, err = run(capsys, "data", "convert", str(images), str(labels),
                           str(tmp_path / f"fashion-{split}.h5"), "--num-classes", "10")
        assert code == exit_status.OK, err
    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB.replace('name = "fashion_mnist"\n', 'path = "fashion-train.h5"\n'))
    code, out, err = run(capsys, "train", str(job), "--run-dir", str(tmp_path / "run"), "--progress", "plain",
                         "--set", "checkpoint.every=0")
    assert code == exit_status.OK, err
    lines = out.splitlines()
    assert re.fullmatch(re.escape(f"  train data: {tmp_path / 'fashion-train.h5'} (converted from IDX "
                                  "train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz (first 300)), "
                                  "300 samples, sha256 ") + "[0-9a-f]{12}", lines[1]), lines[1]
    assert lines[2].startswith(f"  test data:  {tmp_path / 'fashion-test.h5'} (converted from IDX t10k-images")


def test_data_fetch_from_a_loopback_mirror_with_wrong_files(capsys, tmp_path):
    import functools
    import http.server
    import threading

    from distnet.data.builtin import EMBEDDED_DIR

    # The embedded subset has the official file names but not their content:
    # every checksum must fail, with one clear line and exit code 2.
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep stderr for distnet's own line
            pass

    handler = functools.partial(Quiet, directory=str(EMBEDDED_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        code, _, err = run(capsys, "data", "fetch", "fashion_mnist", "--dest", str(tmp_path / "fm"),
                           "--base-url", url)
    finally:
        server.shutdown()
        server.server_close()
    assert code == exit_status.BAD_INPUT
    assert err.startswith("distnet: error: ") and "Traceback" not in err
    assert "train-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "fm" / "train-images-idx3-ubyte.gz").exists()  # the bad file is deleted
    code, _, err = run(capsys, "data", "fetch", "cifar", "--dest", str(tmp_path / "x"))
    assert code == exit_status.BAD_INPUT and "cifar" in err
