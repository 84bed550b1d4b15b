"""Losses: values by hand, reductions, float64 gradient checks, validation, seed 002's custom loss."""
import math

import numpy as np
import pytest

import distnet
from distnet.model import losses
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients


def test_mean_squared_error_matches_reduce_mean_square():
    y_ = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    y = np.array([[1.5, 2.0], [2.0, 4.0], [1.0, -1.0]])
    want = np.mean((y_ - y) ** 2)       # tf.reduce_mean(tf.square(y_ - y))
    assert float(losses.mean_squared_error(y_, distnet.constant(y))) == pytest.approx(want)
    per = losses.mean_squared_error(y_, distnet.constant(y), reduction="none").numpy()
    np.testing.assert_allclose(per, [0.125, 0.5, 1.0])
    assert float(losses.mean_squared_error(y_, distnet.constant(y), reduction="sum")) == pytest.approx(1.625)


def test_sum_reduction_weights_unequal_shards_exactly():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 4))
    labels = rng.integers(0, 4, 7)
    full = float(losses.sparse_softmax_cross_entropy(labels, distnet.constant(logits)))
    parts = [(0, 2), (2, 7)]  # two "ranks" with 2 and 5 samples
    s = sum(float(losses.sparse_softmax_cross_entropy(labels[a:b], distnet.constant(logits[a:b]), reduction="sum"))
            for a, b in parts)
    assert s / 7 == pytest.approx(full)


def test_softmax_cross_entropy_dense_and_sparse_agree():
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    labels = np.array([0, 1])
    onehot = np.eye(3)[labels]
    by_hand = np.mean([-(z[k] - math.log(np.exp(z).sum())) for z, k in zip(logits, labels)])
    dense = float(losses.softmax_cross_entropy(onehot, distnet.constant(logits)))
    sparse = float(losses.sparse_softmax_cross_entropy(labels, distnet.constant(logits)))
    assert dense == pytest.approx(by_hand, rel=1e-6)
    assert sparse == pytest.approx(by_hand, rel=1e-6)


def test_cross_entropy_seed_002_formula():
    y_ = np.array([[0.0, 1.0], [1.0, 0.0]])
    y = np.array([[0.2, 0.8], [0.0, 1.0]])  # a zero probability is clipped to 1e-12
    want = -np.mean(y_ * np.log(np.clip(y, 1e-12, 1.0)))
    got = float(losses.cross_entropy(y_, distnet.constant(y)))
    assert got == pytest.approx(want)
    assert math.isfinite(got)


def test_binary_crossentropy():
    y_ = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = np.array([[0.9, 0.2], [0.3, 0.6]])
    want = -np.mean(y_ * np.log(p) + (1 - y_) * np.log(1 - p))
    assert float(losses.binary_crossentropy(y_, distnet.constant(p))) == pytest.approx(want)
    assert math.isfinite(float(losses.binary_crossentropy([[1.0]], distnet.constant([[0.0]]))))


def test_gradients_float64():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    onehot = np.eye(3)[labels]
    check_gradients(lambda z: losses.sparse_softmax_cross_entropy(labels, z), [logits])
    check_gradients(lambda z: losses.softmax_cross_entropy(onehot, z, reduction="sum"), [logits])
    target = rng.standard_normal((4, 3))
    check_gradients(lambda p: losses.mean_squared_error(target, p), [logits])
    probs = rng.uniform(0.1, 0.9, (4, 3))
    check_gradients(lambda p: losses.cross_entropy(onehot, p), [probs])
    check_gradients(lambda p: losses.binary_crossentropy(onehot, p, reduction="none"), [probs])


def test_seed_002_custom_piecewise_loss_from_plain_ops():
    # loss = sum(where(y > y_, COST * (y - y_), PROFIT * (y_ - y)))
    COST, PROFIT = 1.0, 9.0
    y_ = distnet.constant(np.array([[1.0], [2.0], [3.0]]))
    y = distnet.Variable(np.array([[1.5], [1.0], [3.5]]), name="y")
    loss = distnet.reduce_sum(distnet.where(distnet.greater(y, y_), (y - y_) * COST, (y_ - y) * PROFIT))
    assert float(loss) == pytest.approx(0.5 * 1 + 1.0 * 9 + 0.5 * 1)
    g, = distnet.gradients(loss, [y])
    np.testing.assert_allclose(g, [[1.0], [-9.0], [1.0]])


def test_validation_errors():
    z = distnet.constant(np.zeros((2, 3)))
    with pytest.raises(InvalidArgumentError, match=r"labels: Expect: in \[0, 3\) Actual: \[3\]"):
        losses.sparse_softmax_cross_entropy([0, 3], z)
    with pytest.raises(DTypeError, match="integer"):
        losses.sparse_softmax_cross_entropy([0.0, 1.0], z)
    with pytest.raises(ShapeError, match=r"Expect: \(2,\) Actual: \(3,\)"):
        losses.sparse_softmax_cross_entropy([0, 1, 2], z)
    with pytest.raises(ShapeError, match="same shape"):
        losses.mean_squared_error(np.zeros((2, 2)), z)
    with pytest.raises(ShapeError, match="logits' shape"):
        losses.softmax_cross_entropy(np.zeros((2, 2)), z)
    with pytest.raises(InvalidArgumentError, match="reduction"):
        losses.mean_squared_error(np.zeros((2, 3)), z, reduction="avg")
    with pytest.raises(InvalidArgumentError, match="probabilities in"):
        losses.cross_entropy(np.zeros((2, 3)), distnet.constant(np.full((2, 3), 2.0)))
    with pytest.raises(ShapeError, match="batch"):
        losses.mean_squared_error(1.0, distnet.constant(1.0))
    with pytest.raises(InvalidArgumentError, match="unknown loss"):
        losses.get("hinge")
    assert losses.get("sparse_softmax_cross_entropy") is losses.sparse_softmax_cross_entropy


# -- regression and binary losses, Keras names (issue 23) -------------------------------------------
_T = np.array([[0.5, -1.0], [2.0, 3.0]], np.float32)
_P = np.array([[0.0, 1.5], [2.25, -0.5]], np.float32)
_Y01 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
_X = np.array([[2.0, -1.0, 0.3], [-3.0, 0.5, 4.0]], np.float32)


def test_regression_and_sigmoid_losses_match_tf_2_21():
    # Recorded from TF 2.21: tf.compat.v1.losses.absolute_difference / huber_loss (delta 1 and 2) /
    # sigmoid_cross_entropy on these arrays (tf.keras's MeanAbsoluteError, Huber and
    # BinaryCrossentropy(from_logits=True) give the same numbers).
    assert float(losses.mean_absolute_error(_T, distnet.constant(_P))) == pytest.approx(1.6875, rel=1e-6)
    assert float(losses.huber(_T, distnet.constant(_P))) == pytest.approx(1.2890625, rel=1e-6)
    assert float(losses.huber(_T, distnet.constant(_P), delta=2.0)) == pytest.approx(2.0390625, rel=1e-6)
    assert float(losses.sigmoid_cross_entropy(_Y01, distnet.constant(_X))) == pytest.approx(0.92255992, rel=1e-6)
    # Large logits stay finite (the overflow-free form).
    assert float(losses.sigmoid_cross_entropy([[1.0], [0.0]], distnet.constant([[-200.0], [300.0]]))) \
        == pytest.approx(250.0)


def test_regression_and_sigmoid_losses_gradients_float64():
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((5, 2)) * 2.0
    target = rng.standard_normal((5, 2))
    # Away from the kinks (|e| = 0, |e| = delta, x = 0) where the one-sided slopes differ.
    assert np.all(np.abs(np.abs(pred - target) - 1.0) > 1e-3) and np.all(np.abs(pred - target) > 1e-3)
    check_gradients(lambda p: losses.mean_absolute_error(target, p), [pred])
    check_gradients(lambda p: losses.huber(target, p, reduction="sum"), [pred])
    check_gradients(lambda p: losses.huber(target, p, delta=0.5, reduction="none"), [pred])
    labels = (rng.uniform(size=(5, 2)) > 0.5).astype(np.float64)
    check_gradients(lambda z: losses.sigmoid_cross_entropy(labels, z), [pred])


def test_one_target_per_sample_against_a_single_output_unit():
    # Keras: targets (batch,) against outputs (batch, 1) are the same targets.
    y = np.array([1.0, 3.0], np.float32)
    out = distnet.constant([[2.0], [1.0]])
    assert float(losses.mean_squared_error(y, out)) == float(losses.mean_squared_error(y[:, None], out)) == 2.5
    assert float(losses.sigmoid_cross_entropy(np.array([1, 0]), distnet.constant([[0.0], [0.0]]))) \
        == pytest.approx(math.log(2.0))
    with pytest.raises(ShapeError, match="same shape"):
        losses.mean_squared_error(np.zeros(2), distnet.constant([[1.0, 2.0], [3.0, 4.0]]))


@pytest.mark.parametrize("keras_name, ours", [
    ("sparse_categorical_crossentropy", "sparse_softmax_cross_entropy"),
    ("categorical_crossentropy", "softmax_cross_entropy"),
    ("mse", "mean_squared_error"), ("mae", "mean_absolute_error"), ("mean_absolute_error", "mean_absolute_error"),
    ("huber", "huber"), ("huber_loss", "huber"), ("binary_crossentropy", "binary_crossentropy")])
def test_keras_loss_names_are_aliases(keras_name, ours):
    assert losses.get(keras_name) is getattr(losses, ours)


def test_job_losses_include_the_regression_losses():
    assert {"mean_squared_error", "mean_absolute_error", "huber", "sigmoid_cross_entropy",
            "sparse_softmax_cross_entropy"} <= set(losses.job_losses())
