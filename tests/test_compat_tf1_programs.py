"""The seeds' TF1 programs and TF1 tutorial programs (tests/tf1_programs/), run
as written -- ``import distnet.compat.v1 as tf`` -- in one process, and under
``mpiexec -n 2`` / ``-n 3`` with the one-line ``tf.DistributedOptimizer``
wrapper, where they must end with the weights of the one-process run.

The step counts are cut (environment variables of the programs) so that the
whole file runs in a few minutes on two cores.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import distnet.checkpoint
from mpi_util import mpi_env, run_mpi

PROGRAMS = Path(__file__).parent / "tf1_programs"


def run_one(program: str, *args: str, env: dict | None = None, timeout: float = 600) -> str:
    """Run a program in one plain process; fail with its output if it fails."""
    proc = subprocess.run([sys.executable, str(PROGRAMS / program), *args], capture_output=True, text=True,
                          cwd=PROGRAMS, env=mpi_env(env), timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def run_ranks(program: str, n: int, *args: str, env: dict | None = None, timeout: float = 600) -> str:
    """Run a program under ``mpiexec -n n`` with DISTRIBUTED=1."""
    run = run_mpi(str(PROGRAMS / program), n, *args, timeout=timeout, env={"DISTRIBUTED": "1", **(env or {})})
    assert run.returncode == 0, run.describe()
    return run.stdout


def assert_same_weights(a_path, b_path, rtol=1e-5, atol=1e-6) -> None:
    a, b = dict(np.load(a_path)), dict(np.load(b_path))
    assert sorted(a) == sorted(b) and a
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=rtol, atol=atol, err_msg=k)


def numbers(text: str, key: str) -> list:
    """The floats printed after ``key`` on the lines that start with it."""
    out = []
    for line in text.splitlines():
        if line.startswith(key):
            out.append([float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+", line[len(key):])])
    return out


# -- seed 000 ----------------------------------------------------------------------------

def test_seed000_prints_the_seeds_numbers():
    out = run_one("seed000_basics.py")
    lines = out.splitlines()
    assert "init None" in lines and "v 3.0" in lines and "assign 4.0" in lines and "v 4.0" in lines
    assert "reduce_sum axis0 [5 7 9]" in lines and "reduce_sum axis1 [ 6 15]" in lines
    assert "reduce_sum all 21" in lines and "reduce_sum keep_dims [[6], [15]]" in lines
    assert "reduce_mean all 3" in lines          # TF1: the integer mean truncates
    assert "l2_loss 7.0" in lines                 # the seed's "7.0"
    assert "l2_loss 45.5" in lines and "l2_regularizer 45.5" in lines
    assert "trainable ['Variable:0', 'a:0']" in lines


# -- seed 001 ----------------------------------------------------------------------------

def test_seed001_softmax_regression_trains_and_two_ranks_match(tmp_path):
    one = run_one("seed001_softmax.py", env={"STEPS": "51", "OUT": str(tmp_path / "one.npz")})
    losses = [v[1] for v in numbers(one, "Minibatch loss at step")]
    assert len(losses) == 2 and losses[1] < losses[0] / 2
    assert numbers(one, "Test accuracy:")[0][0] > 40.0
    two = run_ranks("seed001_softmax.py", 2, env={"STEPS": "51", "OUT": str(tmp_path / "two.npz")})
    assert "Test accuracy" in two
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


# -- seed 002 ----------------------------------------------------------------------------

def test_seed002_exponential_decay_prints_the_hand_computed_steps():
    out = run_one("seed002_course.py", env={"PART": "decay"})
    rows = numbers(out, "After")
    assert len(rows) == 40
    w, gs = np.float32(5.0), 0
    for i, (step, g_val, w_val, lr_val, loss_val) in enumerate(rows):
        lr = np.float32(0.1 * 0.99 ** gs)               # read before the step increments global_step
        w = np.float32(w - lr * np.float32(2.0) * (w + np.float32(1.0)))
        gs += 1
        assert step == i and g_val == gs
        assert w_val == pytest.approx(float(w), abs=2e-6)
        assert lr_val == pytest.approx(0.1 * 0.99 ** gs, abs=1e-6)
        assert loss_val == pytest.approx(float((w + 1) ** 2), abs=2e-6)
    assert rows[0][2:] == [3.8, 0.099, 23.040001]       # the course's first line


def test_seed002_moving_average_prints_the_course_numbers():
    out = run_one("seed002_course.py", env={"PART": "ema"})
    rows = [line for line in out.splitlines() if line.startswith("ema")]
    vals = [[float(x) for x in re.findall(r"np\.float32\(([-\d.e]+)\)", r)] for r in rows]
    assert vals == [[0.0, 0.0], [1.0, 0.9], [10.0, 1.6445453], [10.0, 2.3281732]]


def test_seed002_piecewise_loss_leans_towards_the_cheaper_error():
    # PROFIT > COST: predicting too little costs more, so the weights end above 1 (the course's point).
    more = numbers(run_one("seed002_course.py", env={"PART": "custom", "STEPS": "2000"}), "Final w1 is:")[0]
    less = numbers(run_one("seed002_course.py", env={"PART": "custom", "STEPS": "2000", "COST": "9", "PROFIT": "1"}),
                   "Final w1 is:")[0]
    assert all(1.0 < w < 1.1 for w in more), more
    assert all(0.9 < w < 1.0 for w in less), less


def test_seed002_cross_entropies():
    out = run_one("seed002_course.py", env={"PART": "ce"})
    ce = numbers(out, "ce ")[0][0]
    assert ce == pytest.approx(-np.log(0.6) / 4, rel=1e-6)   # mean over all 4 elements, log(1e-12 clip) * 0
    logits = np.array([[2.0, 0.5], [0.1, 1.5]])
    lse = np.log(np.exp(logits).sum(1))
    assert numbers(out, "cem ")[0][0] == pytest.approx(np.mean(lse - logits[[0, 1], [0, 1]]), rel=1e-6)


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 3])
def test_seed002_on_ranks_matches_one_process(n):
    env = {"STEPS": "300"}
    for part, keys in (("custom", ["Final w1 is:"]), ("mse", ["MSE final w1 is:"]),
                       ("train_ema", ["train_ema w1", "train_ema shadow", "train_ema step"])):
        one = run_one("seed002_course.py", env={**env, "PART": part})
        many = run_ranks("seed002_course.py", n, env={**env, "PART": part})
        for key in keys:
            a, b = numbers(one, key), numbers(many, key)
            assert len(a) == 1 and len(b) == 1, many               # rank 0 prints
            np.testing.assert_allclose(b[0], a[0], rtol=2e-5, atol=1e-6, err_msg=f"{part}: {key}")


# -- seed 003 ----------------------------------------------------------------------------

def test_seed003_conv_net_learns_and_the_regularizer_demo_gives_the_seeds_numbers(tmp_path):
    out = run_one("seed003_conv.py", env={"SEED003_STEPS": "25"})
    assert out.count("wd is not none!!!!!!!") == 4
    assert "<tf.Tensor 'AddN:0' shape=() dtype=float32>" in out
    train = [v[0] for v in numbers(out, "train accuracy")]
    assert train[0] < 0.25 and train[-1] > 0.5, out
    # The seed's second snippet: l1 / l2 regularizers of [[5,-2],[-3,1]] at scale 0.5.
    import distnet.compat.v1 as tf

    tf.reset_default_graph()
    w = tf.constant([[5.0, -2.0], [-3.0, 1.0]])
    with tf.Session() as sess:
        assert sess.run(tf.reduce_sum(tf.abs(w))) == 11.0
        assert sess.run(tf.contrib.layers.l1_regularizer(0.5)(w)) == 5.5
        assert sess.run(tf.reduce_sum(w ** 2)) == 39.0
        assert sess.run(tf.reduce_sum(w ** 2) / 2) == 19.5
        assert sess.run(tf.contrib.layers.l2_regularizer(0.5)(w)) == 9.75


@pytest.mark.mpi
@pytest.mark.parametrize("variant", ["l2", "dropout"])
def test_seed003_variants_on_two_ranks_match_one_process(tmp_path, variant):
    env = {"SEED003_STEPS": "6", "SEED003_VARIANT": variant}
    run_one("seed003_conv.py", env={**env, "OUT": str(tmp_path / "one.npz")})
    run_ranks("seed003_conv.py", 2, env={**env, "OUT": str(tmp_path / "two.npz")})
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)


# -- seed 004 ----------------------------------------------------------------------------

def test_seed004_both_collected_sums_are_the_same_number_and_ranks_match(tmp_path):
    one = run_one("seed004_regularization.py", env={"OUT": str(tmp_path / "one.npz")})
    rows = numbers(one, "step")
    assert len(rows) == 3
    for step, loss, r1, r2 in rows:
        assert r1 == r2 and 0 < r1 < loss
    way_a, way_a_numpy = numbers(one, "way a")[0]
    assert way_a == pytest.approx(way_a_numpy, rel=1e-6)
    assert "regularization terms 3" in one
    two = run_ranks("seed004_regularization.py", 2, env={"OUT": str(tmp_path / "two.npz")})
    np.testing.assert_allclose(numbers(two, "final loss")[0], numbers(one, "final loss")[0], rtol=1e-5)
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


# -- TF1 tutorial programs ---------------------------------------------------------------

def test_linear_regression_fed_python_scalars_matches_plain_sgd():
    out = run_one("linear_regression.py", env={"EPOCHS": "60"})
    w_got, b_got, cost_got = numbers(out, "final")[0]
    rng = np.random.RandomState(7)                  # the program's data and start, drawn in its order
    xs = np.round(rng.uniform(1.0, 11.0, size=17), 3)
    ys = np.round(0.25 * xs + 0.8 + rng.normal(0.0, 0.3, size=17), 3)
    X, Y = xs.astype(np.float32), ys.astype(np.float32)
    w, b, n = np.float32(rng.randn()), np.float32(rng.randn()), len(X)
    for _ in range(60):
        for x, y in zip(X, Y):
            err = w * x + b - y           # cost = (w x + b - y)^2 / (2 n) for one sample
            w, b = np.float32(w - 0.01 * err * x / n), np.float32(b - 0.01 * err / n)
    assert w_got == pytest.approx(float(w), rel=1e-5)
    assert b_got == pytest.approx(float(b), rel=1e-5)
    assert cost_got == pytest.approx(float(np.sum((w * X + b - Y) ** 2) / (2 * n)), rel=1e-5)


@pytest.mark.mpi
def test_mnist_softmax_tutorial_one_process_and_two_ranks(tmp_path):
    one = run_one("mnist_softmax.py", "--steps", "60")
    assert numbers(one, "test set accuracy")[0][0] > 0.6
    # The tutorial's learning rate (0.5) makes training sensitive: float rounding of the
    # gradient sum (1e-7) grows to 1e-4 in 20 steps and 1e-1 in 60, on one process as on two
    # ranks; the equivalence is checked over the first steps.
    run_one("mnist_softmax.py", "--steps", "10", "--out", str(tmp_path / "one.npz"))
    run_ranks("mnist_softmax.py", 2, "--steps", "10", "--out", str(tmp_path / "two.npz"))
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


@pytest.mark.mpi
def test_deep_mnist_tutorial_with_dropout_same_on_two_ranks(tmp_path):
    env = {"STEPS": "12"}
    one = run_one("deep_mnist.py", env={**env, "OUT": str(tmp_path / "one.npz")})
    assert "step 0 batch accuracy" in one and "test accuracy" in one
    two = run_ranks("deep_mnist.py", 2, env={**env, "OUT": str(tmp_path / "two.npz")})
    # the printed training accuracy is the global one on every rank
    acc_one = numbers(one, "step 0 batch accuracy")[0]
    for acc in numbers(two, "step 0 batch accuracy"):
        assert acc == pytest.approx(acc_one, abs=1e-6)
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz", rtol=1e-4, atol=2e-6)


@pytest.mark.mpi
def test_train_then_evaluate_in_a_new_process_through_the_moving_averages(tmp_path):
    ck1, ck2 = tmp_path / "one", tmp_path / "two"
    out = run_one("train_and_eval.py", f"--ckpt_dir={ck1}", "--steps=120")
    assert "trained steps 120 batch loss" in out
    assert sorted(os.listdir(ck1)) == ["checkpoint", "model.ckpt-101", "model.ckpt-120"]   # max_to_keep=2
    ev = run_one("train_and_eval.py", "--mode=eval", f"--ckpt_dir={ck1}")
    acc = numbers(ev, "checkpoint of step 120 test accuracy")[0][0]
    assert acc > 0.5
    assert "averages loaded ['b1/ExponentialMovingAverage', 'b2/ExponentialMovingAverage', " \
           "'w1/ExponentialMovingAverage', 'w2/ExponentialMovingAverage']" in ev
    # distnet's own reader sees TF1's names, the shadows and the optimizer's slots.
    state = distnet.checkpoint.load(ck1 / "model.ckpt-120")
    assert sorted(state.params) == ["b1", "b2", "global_step", "w1", "w2"]
    assert sorted(state.ema) == ["b1", "b2", "w1", "w2"] and state.step == 120
    assert state.optimizer["iterations"] == 120 and sorted(state.optimizer["slots"]) == ["momentum"]
    # Two ranks: rank 0 alone writes, and writes the one-process numbers.
    run_ranks("train_and_eval.py", 2, f"--ckpt_dir={ck2}", "--steps=120")
    assert sorted(os.listdir(ck2)) == ["checkpoint", "model.ckpt-101", "model.ckpt-120"]
    other = distnet.checkpoint.load(ck2 / "model.ckpt-120")
    assert other.world_size == 2
    # 120 momentum steps let float rounding of the gradient sums (1e-7) drift to ~1e-5.
    for k in state.params:
        np.testing.assert_allclose(other.params[k], state.params[k], rtol=1e-3, atol=5e-5, err_msg=k)
    for k in state.ema:
        np.testing.assert_allclose(other.ema[k], state.ema[k], rtol=1e-3, atol=5e-5, err_msg=k)


@pytest.mark.mpi
def test_distnet_run_launches_a_tf1_program_on_two_workers():
    env = {"PART": "mse", "STEPS": "50"}
    one = run_one("seed002_course.py", env=env)
    proc = subprocess.run([sys.executable, "-m", "distnet", "run", "-n", "2", "seed002_course.py"],
                          capture_output=True, text=True, cwd=PROGRAMS, timeout=300,
                          env=mpi_env({**env, "DISTRIBUTED": "1"}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    np.testing.assert_allclose(numbers(proc.stdout, "MSE final w1 is:")[0], numbers(one, "MSE final w1 is:")[0],
                               rtol=2e-5)
    bad = subprocess.run([sys.executable, "-m", "distnet", "run", "missing.py"], capture_output=True, text=True,
                         cwd=PROGRAMS, timeout=60)
    assert bad.returncode == 2 and "Expect: a Python file" in bad.stderr


@pytest.mark.mpi
def test_readmes_tf1_example_runs_on_one_process_and_two_ranks(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### TensorFlow 1.x programs", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    prog = tmp_path / "readme_tf1.py"
    prog.write_text(code)
    one = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True, timeout=300, env=mpi_env())
    assert one.returncode == 0, one.stdout + one.stderr
    run = run_mpi(str(prog), 2, timeout=300)
    assert run.returncode == 0, run.describe()
    loss_one = numbers(one.stdout, "loss")[0][0]
    # print() writes "loss", the value and the newline apart, so hydra may interleave the two
    # ranks' pieces ("lossloss 0.76\n 0.76\n"): take every number printed.
    assert run.stdout.count("loss") == 2, run.stdout
    losses = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", run.stdout)]
    assert len(losses) == 2 and loss_one < 1.0
    for v in losses:
        assert v == pytest.approx(loss_one, rel=1e-4)
