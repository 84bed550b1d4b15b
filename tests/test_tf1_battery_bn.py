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
