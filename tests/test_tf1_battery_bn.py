"""The TF1 battery's batch-normalization and transposed-convolution programs
(tests/tf1_programs): each against real TensorFlow 2.21's recorded lines on
one process, and the data-parallel ones on 2 (and 3) ranks with the weights
-- moving statistics included -- of one process."""
import numpy as np
import pytest
from tf1_battery import assert_same_weights, compare_with_reference, env_with, run_program


def test_cnn_batch_norm_update_ops_matches_tensorflow(tmp_path):
    out = run_program("cnn_batch_norm_update_ops.py", env=env_with(STEPS=20, OUT=tmp_path / "one.npz"))
    # 5 step lines (2 numbers), eval (2), 4 moving-statistics lines of 8 channels
    assert compare_with_reference(out, "cnn_batch_norm_update_ops.py", rtol=1e-4, atol=1e-5) == 5 * 2 + 2 + 4 * 8


@pytest.mark.parametrize("n", [2, 3])
def test_cnn_batch_norm_on_n_ranks_equals_one_rank(tmp_path, n):
    run_program("cnn_batch_norm_update_ops.py", env=env_with(STEPS=20, OUT=tmp_path / "one.npz"))
    out = run_program("cnn_batch_norm_update_ops.py", n=n,
                      env=env_with(STEPS=20, OUT=tmp_path / "n.npz", DISTRIBUTED=1))
    assert "eval loss" in out
    assert_same_weights(tmp_path / "one.npz", tmp_path / "n.npz")


def test_cnn_batch_norm_per_rank_statistics_differ_from_one_rank(tmp_path):
    """SYNC_BN=0: DistributedOptimizer(sync_batch_norm=False), each rank its own statistics."""
    run_program("cnn_batch_norm_update_ops.py", env=env_with(STEPS=20, OUT=tmp_path / "one.npz"))
    run_program("cnn_batch_norm_update_ops.py", n=2,
                env=env_with(STEPS=20, OUT=tmp_path / "two.npz", DISTRIBUTED=1, SYNC_BN=0))
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(one) == sorted(two)
    assert max(float(np.max(np.abs(one[k] - two[k]))) for k in one) > 1e-3


def test_contrib_batch_norm_is_training_matches_tensorflow(tmp_path):
    """The reference ran contrib.layers.batch_norm through record_reference.py's shim (TF 2.21 lacks
    tf.contrib): the layer with TF 1.x's fused kernel, updates run before the output."""
    out = run_program("contrib_batch_norm_is_training.py", env=env_with(STEPS=25, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(out, "contrib_batch_norm_is_training.py", rtol=1e-4, atol=1e-5) == 6 * 2 + 2 + 4 * 6
    two = run_program("contrib_batch_norm_is_training.py", n=2,
                      env=env_with(STEPS=25, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert "test loss" in two
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_batch_norm_by_hand_matches_tensorflow():
    out = run_program("batch_norm_by_hand.py", env=env_with(STEPS=30))
    # float32 rounding differences grow over 30 plain-SGD steps to ~7e-5 relative.
    assert compare_with_reference(out, "batch_norm_by_hand.py", rtol=2e-4, atol=1e-5) == 7 * 2 + 1 + 2 * 8


def test_conv_autoencoder_matches_tensorflow_and_two_ranks_match_one(tmp_path):
    out = run_program("conv_autoencoder.py", env=env_with(STEPS=30, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(out, "conv_autoencoder.py", rtol=1e-4, atol=1e-5) == 7 * 2 + 8 + 4 + 1
    two = run_program("conv_autoencoder.py", n=2, env=env_with(STEPS=30, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert "final loss" in two
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")


def test_dcgan_batch_norm_matches_tensorflow_and_two_ranks_match_one(tmp_path):
    out = run_program("dcgan_batch_norm.py", env=env_with(STEPS=12, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(out, "dcgan_batch_norm.py", rtol=1e-4, atol=1e-5) == 3 + 5 * 3 + 6 + 8
    # Two DistributedOptimizers; the discriminator's batch norm synchronized on real and on fake batches.
    two = run_program("dcgan_batch_norm.py", n=2, env=env_with(STEPS=12, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert "generator moving variance" in two
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")
