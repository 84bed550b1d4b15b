"""DistributedOptimizer(deterministic=True): a TF1 program trains bit for bit alike on 1, 2 and 3 ranks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi_util import mpi_env

import distnet.compat.v1 as tf
from distnet.errors import InvalidArgumentError

PROGRAMS = Path(__file__).parent / "tf1_programs"


def launch(n: int, out: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distnet", "run", "-n", str(n), "deterministic_mlp.py"],
                          capture_output=True, text=True, cwd=PROGRAMS, timeout=300,
                          env=mpi_env({"OUT": str(out), **env}))


def losses(stdout: str) -> list:
    return [line for line in stdout.splitlines() if line.startswith("STEP ")]


@pytest.mark.mpi
def test_one_two_three_ranks_train_bit_for_bit_alike(tmp_path):
    runs = {}
    for n in (1, 2, 3):
        proc = launch(n, tmp_path / f"n{n}.npz")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = (losses(proc.stdout), np.load(tmp_path / f"n{n}.npz"))
    steps, one = runs[1]
    assert len(steps) == 12 and len(one.files) == 12          # 4 variables and Adam's m, v of each
    for n in (2, 3):
        assert runs[n][0] == steps                             # every step's global loss, as bits
        other = runs[n][1]
        assert sorted(other.files) == sorted(one.files)
        for k in one.files:
            assert other[k].tobytes() == one[k].tobytes(), (n, k)


@pytest.mark.mpi
def test_a_rank_without_a_piece_feeds_no_rows_and_changes_nothing(tmp_path):
    # pieces of 12 of 24 rows: 2 pieces on 3 ranks, the third rank's shard is empty
    one = launch(1, tmp_path / "a.npz", PIECE="12", STEPS="4")
    three = launch(3, tmp_path / "b.npz", PIECE="12", STEPS="4")
    assert one.returncode == 0 and three.returncode == 0, one.stderr + three.stderr
    assert losses(three.stdout) == losses(one.stdout) and len(losses(one.stdout)) == 4
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a.files)


@pytest.mark.mpi
def test_the_default_mode_of_the_same_program_differs_between_one_and_two_ranks(tmp_path):
    # what the switch buys: without it, float rounding of the shard-sized GEMMs and the sum differs
    for n in (1, 2):
        proc = launch(n, tmp_path / f"d{n}.npz", DETERMINISTIC="0")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    one, two = np.load(tmp_path / "d1.npz"), np.load(tmp_path / "d2.npz")
    assert any(one[k].tobytes() != two[k].tobytes() for k in one.files)


@pytest.mark.mpi
def test_feeding_other_rows_than_the_pieces_is_refused(tmp_path):
    # 24 rows in pieces of 6 on 3 ranks: 12, 6, 6 rows; an even split feeds 8, 8, 8
    proc = launch(3, tmp_path / "x.npz", EVEN_SPLIT="1")
    assert proc.returncode != 0
    assert "Expect: each rank fed its whole pieces of the global batch of 24" in proc.stderr + proc.stdout
    assert "[12, 6, 6]" in proc.stderr + proc.stdout and "[8, 8, 8]" in proc.stderr + proc.stdout


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_one_process_pieces_match_the_global_loss_and_gradient(reduction):
    # one process, 2 pieces of 2 rows: the global loss is the pieces' float32 loss sums added exactly,
    # the gradient the pieces' gradients (each weighted n_piece / B for a mean) added exactly
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 3])
    w = tf.Variable(np.arange(3, dtype=np.float32).reshape(3, 1))
    per_row_t = tf.square(tf.matmul(x, w))
    loss = tf.reduce_mean(per_row_t) if reduction == "mean" else tf.reduce_sum(per_row_t)
    opt = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), loss_reduction=reduction,
                                  deterministic=True, piece_size=2)
    (grad, _), = opt.compute_gradients(loss)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got_loss, got_grad = sess.run([opt.global_loss(), grad], feed_dict={x: tf.distributed.shard(rows)})
    wv = np.arange(3, dtype=np.float32)
    per_row = (rows @ wv) ** 2
    if reduction == "mean":
        want = (np.float32(per_row[:2].mean() * 2) + np.float32(per_row[2:].mean() * 2)) / 4
    else:
        want = np.float32(per_row[:2].sum()) + np.float32(per_row[2:].sum())
    assert got_loss == np.float32(want)
    scale = 1 / 4 if reduction == "mean" else 1.0
    want_grad = sum(2 * (rows[k:k + 2] @ wv) @ rows[k:k + 2] * scale
                    for k in (0, 2))
    np.testing.assert_allclose(got_grad.reshape(-1), want_grad, rtol=1e-6)


@pytest.mark.parametrize("make, words", [
    (lambda opt: tf.DistributedOptimizer(opt, deterministic=True, strategy="zero1"), "strategy 'replicated'"),
    (lambda opt: tf.DistributedOptimizer(opt, deterministic=True, sample_count=4), "sample_count"),
    (lambda opt: tf.DistributedOptimizer(opt, deterministic=True, overlap=True), "options"),
    (lambda opt: tf.DistributedOptimizer(opt, piece_size=4), "piece_size"),
    (lambda opt: tf.DistributedOptimizer(opt, deterministic=True, piece_size=0), "piece_size"),
    (lambda opt: tf.DistributedOptimizer(opt, deterministic="yes"), "deterministic"),
])
def test_bad_settings_are_refused(make, words):
    tf.reset_default_graph()
    with pytest.raises(InvalidArgumentError, match=words):
        make(tf.train.GradientDescentOptimizer(0.1))


def test_batch_norm_in_the_loss_is_refused():
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 2, 2, 3])
    y = tf.layers.batch_normalization(x, training=True)
    opt = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), deterministic=True)
    with pytest.raises(InvalidArgumentError, match="batch normalization"):
        opt.minimize(tf.reduce_mean(y))


def test_global_loss_needs_the_switch_and_minimize():
    tf.reset_default_graph()
    opt = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), deterministic=True)
    with pytest.raises(InvalidArgumentError, match="minimize/compute_gradients called first"):
        opt.global_loss()


def test_a_loss_of_the_weights_only_is_its_own_global_loss():
    tf.reset_default_graph()
    w = tf.Variable(np.array([1.5, -2.0], np.float32))
    loss = tf.reduce_sum(tf.square(w))
    opt = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1), deterministic=True)
    train = opt.minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        _, got = sess.run([train, opt.global_loss()])
        assert got == np.float32(6.25)
        np.testing.assert_allclose(sess.run(w), [1.2, -1.6], rtol=1e-6)   # the step applied
