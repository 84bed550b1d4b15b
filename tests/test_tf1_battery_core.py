"""The TF1 battery's control-flow and everyday-ops programs (issue 20): each run
unchanged through ``distnet run`` on one process against the lines recorded
from TensorFlow 2.21 (tests/tf1_programs/reference/), and the data-parallel
ones also on 2 ranks (DISTRIBUTED=1: the one-line DistributedOptimizer and
tf.distributed.shard), which must end with the one-process weights."""
from __future__ import annotations

import pytest

from tf1_battery import assert_same_weights, compare_with_reference, env_with, run_program


def _one_and_two(tmp_path, program: str, compared: int, rtol: float = 1e-4, atol: float = 1e-5, **env) -> str:
    one = run_program(program, env=env_with(OUT=tmp_path / "one.npz", **env))
    assert compare_with_reference(one, program, rtol=rtol, atol=atol) == compared
    two = run_program(program, n=2, env=env_with(OUT=tmp_path / "two.npz", DISTRIBUTED=1, **env))
    assert two.strip()
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")
    return one


def test_gan_with_two_optimizers_fetched_in_one_run(tmp_path):
    # a discriminator and a generator step in one sess.run, from the same forward values
    _one_and_two(tmp_path, "gan_two_optimizers.py", 24, STEPS=40)


def test_vae_with_reparameterisation_and_a_tensor_stddev(tmp_path):
    out = _one_and_two(tmp_path, "vae_reparam.py", 26, STEPS=30)
    assert "drawn shape 8 2" in out      # the graph's own draw, shaped from tf.shape(z_mean)


def test_lenet5_with_a_fixed_batch_of_100_and_sparse_softmax(tmp_path):
    # one process: its input placeholder holds exactly 100 samples, so it cannot be split over ranks
    out = run_program("lenet5_fixed_batch.py", env=env_with(STEPS=10))
    assert compare_with_reference(out, "lenet5_fixed_batch.py", rtol=1e-4, atol=1e-5) == 24


def test_train_eval_switch_with_cond_and_case(tmp_path):
    _one_and_two(tmp_path, "train_eval_cond.py", 28)


def test_train_eval_switch_with_real_dropout_learns(tmp_path):
    # keep_prob 0.7 in the training branch: the masks are distnet's own, so judged by properties
    out = run_program("train_eval_cond.py", env=env_with(KEEP_PROB=0.7))
    last = [line for line in out.splitlines() if line.startswith("step 29 ")]
    assert last, out
    assert float(last[0].split()[-1]) > 0.85    # eval accuracy (the eval branch has no dropout)


def test_gradient_clipping_loop_on_one_and_two_ranks(tmp_path):
    _one_and_two(tmp_path, "clip_global_norm.py", 20)


def test_while_loop_power_iteration_and_recurrence_with_gradients(tmp_path):
    _one_and_two(tmp_path, "power_iteration_while.py", 44)


def test_rnn_by_hand_with_while_loop_and_tensor_arrays(tmp_path):
    _one_and_two(tmp_path, "rnn_while_tensorarray.py", 13)


def test_everyday_ops_with_adadelta_through_tf_compat_v1(tmp_path):
    _one_and_two(tmp_path, "everyday_ops_adadelta.py", 17)


@pytest.mark.parametrize("program", ["gan_two_optimizers.py", "clip_global_norm.py", "vae_reparam.py",
                                     "rnn_while_tensorarray.py", "train_eval_cond.py", "power_iteration_while.py",
                                     "everyday_ops_adadelta.py"])
def test_three_ranks_match_one(tmp_path, program):
    run_program(program, env=env_with(OUT=tmp_path / "one.npz", STEPS=10))
    run_program(program, n=3, env=env_with(OUT=tmp_path / "three.npz", DISTRIBUTED=1, STEPS=10))
    assert_same_weights(tmp_path / "one.npz", tmp_path / "three.npz")
