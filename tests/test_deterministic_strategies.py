"""Deterministic mode under every strategy: N workers, and a resume on another N, equal 1 worker bit for bit.

tests/mpi_scripts/deterministic_strategies.py trains a conv net with dropout, augmentation
(crop and flip), an L2 regularizer, Adam with per-variable and global-norm clipping, an EMA and periodic
evaluation (with and without the EMA), under several strategies in one launch.  Every
array of the final checkpoint state (weights, Adam slots, EMA shadows), every logged
step loss and every evaluation number must have the bits of one plain process.
"""
from __future__ import annotations

import numpy as np
import pytest
from mpi_util import differ_from_replicated as _differ, run_script

SCRIPT = "deterministic_strategies.py"
# one machine: hierarchical is ZeRO-1 through shared memory plus its cross-machine step (here a no-op)
STRATEGIES = "replicated,zero1,zero1shm,hierarchical"


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    got = run_script(SCRIPT, tmp_path_factory.mktemp("det"), "one")
    assert len(got["replicated:losses"]) == 10 and np.all(np.isfinite(got["replicated:losses"]))
    # weights, two Adam slots and EMA shadows of 6 variables; 3 evaluations x (loss, accuracy) x (plain, EMA)
    assert sum(k.startswith("replicated:param/") for k in got) == 6
    assert sum(k.startswith("replicated:slot/") for k in got) == 12
    assert sum(k.startswith("replicated:ema/") for k in got) == 6
    assert got["replicated:evals"].shape == (12,)
    assert got["replicated:skipped"].size == 0
    return got


@pytest.mark.mpi
def test_2_to_6_workers_under_every_strategy_equal_1_worker_bitwise(one, tmp_path):
    # 14 samples per step in 5 pieces of 3 (the last of 2): uneven on 2, 3, 4; ranks without
    # pieces on 6; a partial last batch of 8 samples.  On 3 ranks micro_batches=3 is given
    # too: pieces replace micro-batches, so it changes nothing.
    for n in (2, 3, 4, 5, 6):
        extra = ("--micro", 3) if n == 3 else ()
        got = run_script(SCRIPT, tmp_path, f"n{n}", "--strategies", STRATEGIES, *extra, nprocs=n, timeout=300)
        assert len(got) == 4 * 28, sorted(got)
        differ = _differ(one, got)
        assert not differ, f"{n} workers: differ from 1 worker: {differ}"


@pytest.mark.mpi
def test_non_finite_steps_are_skipped_alike_on_any_number_of_workers(tmp_path):
    # Sample 7 reads as NaNs: the steps whose batch holds it have a non-finite reduced gradient
    # (the exact sum keeps it visible) and are skipped on every rank; the rest as on 1 worker.
    one = run_script(SCRIPT, tmp_path, "nan1", "--nan-sample", 7)
    assert one["replicated:skipped"].size >= 2 and len(one["replicated:losses"]) == 10 + one["replicated:skipped"].size
    got = run_script(SCRIPT, tmp_path, "nan3", "--nan-sample", 7, "--strategies", "replicated,zero1,zero1shm",
                     nprocs=3, timeout=300)
    differ = _differ(one, got)
    assert not differ, f"3 workers with a NaN sample: differ from 1 worker: {differ}"


@pytest.mark.mpi
def test_the_comparison_sees_the_default_mode_differ(one, tmp_path):
    # The same check on the default mode's 2-worker run finds differences: the test above can fail.
    got = run_script(SCRIPT, tmp_path, "default2", "--strategies", "zero1", "--default", nprocs=2, timeout=300)
    assert _differ(one, got), "the default mode on 2 workers gave the bits of deterministic mode on 1"


@pytest.mark.mpi
@pytest.mark.parametrize("first, then", [(2, 3), (4, 1)])
def test_stopped_and_resumed_on_another_number_of_workers_equals_1_uninterrupted(one, tmp_path, first, then):
    ckpt = tmp_path / "ckpt"
    strategies = "replicated,zero1"
    run_script(SCRIPT, tmp_path, "first", "--strategies", strategies, "--ckpt", ckpt, "--steps", 5,
               nprocs=first, timeout=300)
    got = run_script(SCRIPT, tmp_path, "rest", "--strategies", strategies, "--ckpt", ckpt, "--resume",
                     nprocs=then if then > 1 else None, timeout=300)
    for s in strategies.split(","):
        # the 5 steps after the resume, the evaluations at steps 8 and 10, the final state
        assert got[f"{s}:losses"].tobytes() == one["replicated:losses"][5:].tobytes(), s
        assert got[f"{s}:evals"].tobytes() == one["replicated:evals"][4:].tobytes(), s
        keys = [k for k in got if k.startswith(f"{s}:") and k.split(":", 1)[1] not in ("losses", "evals", "skipped")]
        assert len(keys) == 25
        differ = _differ(one, got, keys)
        assert not differ, f"{first} -> {then} workers: differ from 1 uninterrupted worker: {differ}"


@pytest.mark.parametrize("task", ["classes", "values"])
def test_evaluation_from_pieces_equals_the_plain_evaluation_of_one_process(task):
    # The pieces are the plain loop's batches, summed in the same order: the same bits
    # (the MPI test above checks that they are the same on 2 to 6 workers).
    import distnet
    from distnet import layers
    from distnet.model import losses
    from distnet.training.deterministic import evaluate_pieces
    from distnet.training.evaluation import Metric, evaluate

    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 3, 2)).astype(np.float32)
    labels = rng.integers(0, 4, len(x)) if task == "classes" else x[:, 0, 0] * 2
    model = distnet.Sequential([layers.Flatten(), layers.Dense(4 if task == "classes" else 1)],
                               input_shape=(3, 2, 1), seed=1)

    class Data:
        def __len__(self):
            return len(x)

        def read(self, idx):
            return x[idx], labels[idx]

    loss = losses.get("sparse_softmax_cross_entropy" if task == "classes" else "mean_squared_error",
                      class_labels=True)
    metric = Metric("accuracy" if task == "classes" else "mae")
    for batch in (1, 5, 37, 50):
        want = evaluate(model, Data(), loss, batch_size=batch, metric=metric)
        got = evaluate_pieces(model, Data(), loss, comm=None, batch_size=batch, metric=metric)
        assert got == want and got["samples"] == 37, (batch, got, want)


# -- the job key, the command-line switch, --check and `distnet compare` --------------------

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
SHORT = ["--set", "train.steps=6", "--set", "train.batch_size=30", "--set", "train.eval_every=3",
         "--set", "data.train_samples=200", "--set", "data.test_samples=70", "--set", "train.eval_batch_size=20",
         "--progress", "none"]


def _distnet(*args, timeout=300):
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "distnet", *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:   # a hang is a failure: end the launcher and its workers
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"distnet {args} did not finish in {timeout} s\n{out}\n{err}")
    return proc.returncode, out + err


def _logged(run_dir):
    import json

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["loss"] for r in rows if r["kind"] == "step"]
    evals = [(r["test_loss"], r["test_accuracy"], r["ema_test_loss"], r["ema_test_accuracy"])
             for r in rows if r["kind"] == "eval"]
    return steps, evals


@pytest.mark.mpi
def test_distnet_train_deterministic_on_1_and_3_workers_compare_equal(tmp_path):
    # the MLP job (momentum, a warm-up schedule, weight decay, EMA) through the user's commands
    job = REPO / "examples" / "jobs" / "mlp.toml"
    code, out = _distnet("train", job, "--deterministic", *SHORT, "--run-dir", tmp_path / "one")
    assert code == 0, out
    code, out = _distnet("train", job, "--deterministic", "-n", 3, *SHORT, "--run-dir", tmp_path / "three")
    assert code == 0, out
    code, out = _distnet("train", job, "-n", 2, *SHORT, "--run-dir", tmp_path / "default2")
    assert code == 0, out
    code, out = _distnet("compare", tmp_path / "one", tmp_path / "three")
    assert code == 0 and "bitwise equal: 18 arrays" in out, out
    one, three = _logged(tmp_path / "one"), _logged(tmp_path / "three")
    assert len(one[0]) == 6 and len(one[1]) == 2
    assert one == three   # every step loss and every evaluation number, exactly
    # the default mode on 2 workers is not bitwise the 1-worker run, and compare says so
    code, out = _distnet("compare", tmp_path / "one", tmp_path / "default2")
    assert code == 1 and "differ:" in out and "params/dense/kernel: max |a - b| = " in out, out


def test_check_refuses_what_deterministic_mode_cannot_cover(tmp_path):
    job = REPO / "examples" / "jobs" / "mlp.toml"
    code, out = _distnet("train", job, "--deterministic", "--set", "dist.piece_size=4", "--check")
    assert code == 0 and "deterministic = true" in out and "piece_size = 4" in out, out
    for extra, actual in ((["--set", "dist.strategy.compression=float16"], 'compression = "float16"'),
                          (["--set", "dist.strategy.overlap=true"], "overlap = true"),
                          (["--set", "train.conv_algorithm=auto"], '"auto"')):
        code, out = _distnet("train", job, "--deterministic", *extra, "--check")
        assert code == 2, out
        line = out.strip().splitlines()[-1]
        assert "dist.deterministic: Expect:" in line and "Actual: " in line and actual in line, out
    bn = tmp_path / "bn.toml"
    bn.write_text('[model]\nlayers = [{type = "conv2d", filters = 4, kernel_size = 3}, {type = "batch_norm"}, '
                  '{type = "flatten"}, {type = "dense", units = 10}]\n[dist]\ndeterministic = true\n')
    # batch normalization is covered (per-piece statistics: tests/test_deterministic_batch_norm.py)
    code, out = _distnet("train", bn, "--check")
    assert code == 0 and "deterministic = true" in out, out


def test_compare_states_names_every_difference():
    from distnet.checkpoint.compare import compare_states
    from distnet.checkpoint.state import CheckpointState

    def state(**change):
        params = {"a": np.array([1.0, 2.0, 0.0], np.float32), "b": np.ones((2, 2), np.float32)}
        slots = {"m": {"a": np.zeros(3, np.float32), "b": np.zeros((2, 2), np.float32)}}
        s = CheckpointState(params=params, ema={"a": params["a"].copy()}, step=4, world_size=1,
                            optimizer={"name": "adam", "iterations": 4, "slots": slots, "hyper": {}})
        for k, v in change.items():
            setattr(s, k, v)
        return s

    same, n = compare_states(state(), state(world_size=3, metrics={"samples_per_sec": 9.0}))
    assert same == [] and n == 5   # the world size and the metrics are not compared
    b = state()
    b.params["a"] = np.array([1.0, 2.0, -0.0], np.float32)          # -0.0 is other bits
    b.params["b"] = np.full((2, 2), np.float32(1) + np.float32(2 ** -23))
    del b.ema["a"]
    b.optimizer["slots"]["m"]["b"] = np.zeros(4, np.float32)
    diffs, _ = compare_states(state(), b)
    got = {d.what: d.detail for d in diffs}
    assert got == {"params/a": "max |a - b| = 0 (1 of 3 elements)",
                   "params/b": "max |a - b| = 1.19e-07 (4 of 4 elements)",
                   "ema/a": "only in A",
                   "slots/m/b": "float32[2, 2] vs float32[4]"}, got
    diffs, _ = compare_states(state(), state(step=5, position=30))
    assert {d.what: d.detail for d in diffs} == {"step": "4 vs 5", "position": "0 vs 30"}
