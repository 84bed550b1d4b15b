"""Regularizers (TF1 numbers from the seeds) and the two ways of regularizing (seed 004)."""
import numpy as np
import pytest

import distnet
from distnet.model import losses, regularizers
from distnet.errors import DTypeError, InvalidArgumentError
from distnet.gradcheck import check_gradients
from distnet.layers import Dense
from distnet.model.models import Sequential

W = [[5.0, -2.0], [-3.0, 1.0]]


def test_seed_numbers():
    w = distnet.constant(W)
    assert float(regularizers.l1(0.5)(w)) == pytest.approx(5.5)
    assert float(regularizers.l2(0.5)(w)) == pytest.approx(9.75)   # TF1: 0.5 * 39 / 2
    assert float(regularizers.l1_l2(0.5, 0.5)(w)) == pytest.approx(15.25)
    assert float(regularizers.l1_l2(l1=0.5)(w)) == pytest.approx(5.5)


def test_zero_scale_disables_the_term():
    w = distnet.constant(W)
    assert regularizers.l1(0.0)(w) is None
    assert regularizers.l2(0)(w) is None
    assert regularizers.l1_l2(0.0, 0.0)(w) is None


def test_negative_or_bad_scale_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="scale: Expect: a finite number >= 0 Actual: -0.1"):
        regularizers.l2(-0.1)
    with pytest.raises(InvalidArgumentError, match="scale"):
        regularizers.l1("big")
    with pytest.raises(InvalidArgumentError, match="unknown regularizer"):
        regularizers.get("l3")
    with pytest.raises(DTypeError, match="floating"):
        regularizers.l2(0.1)(distnet.constant([1, 2]))


def test_gradients_float64():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)) + 0.1  # away from the kink of |w|
    check_gradients(lambda t: regularizers.l2(0.3)(t), [w])
    check_gradients(lambda t: regularizers.l1_l2(0.2, 0.7)(t), [w])


def test_weight_decay_loss_way_a():
    a = distnet.Variable(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), name="dense/kernel")
    b = distnet.Variable(np.array([1.0, -1.0]), name="dense/bias")
    assert float(regularizers.weight_decay_loss([a, b], 0.1)) == pytest.approx(0.1 * (45.5 + 1.0))
    assert float(regularizers.weight_decay_loss([a, b], 0.1, exclude_bias=True)) == pytest.approx(4.55)
    zero = regularizers.weight_decay_loss([a, b], 0.0)
    assert isinstance(zero, distnet.Tensor) and float(zero) == 0.0
    with pytest.raises(InvalidArgumentError, match="Actual: -1"):
        regularizers.weight_decay_loss([a], -1)


def _model(reg=None, bias_reg=None, seed=3):
    return Sequential([Dense(5, activation="relu", kernel_regularizer=reg, bias_regularizer=bias_reg),
                       Dense(3, kernel_regularizer=reg, bias_regularizer=bias_reg)], input_shape=(4,), seed=seed)


def test_both_ways_give_the_same_total_seed_004():
    # way (b): l2(wd) on every kernel and bias; way (a): wd * sum(l2_loss(v)) over all trainable vars
    wd = 0.004
    m = _model(regularizers.l2(wd), regularizers.l2(wd))
    terms = m.regularization_losses
    assert len(terms) == 4
    way_b = losses.get_regularization_loss(m)
    assert float(way_b) == pytest.approx(sum(float(t) for t in terms), rel=1e-6)
    way_a = regularizers.weight_decay_loss(m.trainable_variables, wd)
    assert float(way_a) == pytest.approx(float(way_b), rel=1e-6)
    # and by hand from the weights
    by_hand = wd * sum(np.sum(v.numpy().astype(np.float64) ** 2) / 2 for v in m.trainable_variables)
    assert float(way_a) == pytest.approx(by_hand, rel=1e-5)
    # kernels only: exclude_bias matches kernel_regularizer alone
    k_only = _model(regularizers.l2(wd))
    assert float(losses.get_regularization_loss(k_only)) == pytest.approx(
        float(regularizers.weight_decay_loss(k_only.trainable_variables, wd, exclude_bias=True)), rel=1e-6)


def test_total_loss_is_base_plus_regularization():
    m = _model(regularizers.l2(0.01))
    x = np.random.default_rng(1).standard_normal((6, 4))
    y = np.array([0, 1, 2, 0, 1, 2])
    base = losses.sparse_softmax_cross_entropy(y, m(x))
    reg = losses.get_regularization_loss(m)
    total = base + reg
    assert float(total) == pytest.approx(float(base) + float(reg), rel=1e-6)
    assert float(reg) > 0
    # the gradient of the total is the sum of both gradients
    k = m.get_variable("dense/kernel")
    g_total, = distnet.gradients(total, [k])
    g_base, = distnet.gradients(base, [k])
    np.testing.assert_allclose(g_total, g_base + 0.01 * k.numpy(), rtol=1e-5, atol=1e-7)


def test_regularization_losses_follow_the_current_weights():
    m = _model(regularizers.l1(1.0))
    before = float(losses.get_regularization_loss(m))
    k = m.get_variable("dense/kernel")
    k.assign(np.zeros(k.shape))
    after = float(losses.get_regularization_loss(m))
    assert after == pytest.approx(before - float(np.abs(_model().get_variable("dense/kernel").numpy()).sum()), rel=1e-5)
    none = _model(regularizers.l2(0.0))
    assert none.regularization_losses == []
    assert float(losses.get_regularization_loss(none)) == 0.0


def test_empty_regularization_loss_has_the_model_dtype():
    m = Sequential([Dense(2)], input_shape=(3,), dtype=np.float64)
    reg = losses.get_regularization_loss(m)
    assert reg.dtype == np.float64 and float(reg) == 0.0
    base = losses.mean_squared_error(np.zeros((1, 2)), m(np.ones((1, 3))))
    assert (base + reg).dtype == np.float64
