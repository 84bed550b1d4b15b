"""Comparisons, where, clip_by_value, argmax: values, gradients, TF1
conventions and the seed 002 losses."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.autodiff import gradients
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients

COMPARE = {
    "greater": (distnet.greater, np.greater),
    "greater_equal": (distnet.greater_equal, np.greater_equal),
    "less": (distnet.less, np.less),
    "less_equal": (distnet.less_equal, np.less_equal),
    "equal": (distnet.equal, np.equal),
    "not_equal": (distnet.not_equal, np.not_equal),
}


@pytest.mark.parametrize("name", sorted(COMPARE))
def test_comparisons_are_bool_and_record_no_op(name):
    fn, ref = COMPARE[name]
    x = distnet.Variable([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    y = distnet.constant([2.0, 2.0, 2.0])
    out = fn(x, y)
    np.testing.assert_array_equal(out.numpy(), ref(x.numpy(), y.numpy()))
    assert out.dtype == np.bool_
    assert out._op is None and out._parents == ()
    assert fn(x, 2.0).numpy().tolist() == ref(x.numpy(), 2.0).tolist()


def test_comparison_operators():
    x = distnet.constant([1.0, 2.0, 3.0])
    assert (x > 2).numpy().tolist() == [False, False, True]
    assert (x >= 2).numpy().tolist() == [False, True, True]
    assert (x < 2).numpy().tolist() == [True, False, False]
    assert (x <= 2).numpy().tolist() == [True, True, False]
    assert (2 < x).numpy().tolist() == [False, False, True]   # reflected
    assert (x == x) is True and (x == distnet.constant([1.0, 2.0, 3.0])) is False  # identity, TF1


def test_comparison_errors():
    with pytest.raises(ShapeError, match=r"greater.*\(2,\) and \(3,\)"):
        distnet.greater(np.ones(2, np.float32), np.ones(3, np.float32))
    with pytest.raises(DTypeError, match="less.*float32.*float64"):
        distnet.less(distnet.constant([1.0]), distnet.constant(np.ones(1)))


def test_logical_ops():
    a = distnet.constant(np.array([True, True, False]))
    b = distnet.constant(np.array([True, False, False]))
    assert distnet.logical_and(a, b).numpy().tolist() == [True, False, False]
    assert distnet.logical_or(a, b).numpy().tolist() == [True, True, False]
    assert distnet.logical_not(a).numpy().tolist() == [False, False, True]
    with pytest.raises(DTypeError, match="bool"):
        distnet.logical_and(a, distnet.constant([1.0, 0.0, 1.0]))


# -- where ----------------------------------------------------------------------

@pytest.mark.parametrize("sc,sx,sy", [
    ((2, 3), (2, 3), (2, 3)),
    ((2, 3), (3,), (2, 1)),
    ((2, 1), (2, 3), ()),
    ((3,), (2, 3), (2, 3)),
])
def test_where_v2_gradients_with_broadcasting(sc, sx, sy, rng):
    cond = rng.random(sc) > 0.5
    x, y = rng.standard_normal(sx), rng.standard_normal(sy)
    np.testing.assert_array_equal(distnet.where_v2(cond, x, y).numpy(), np.where(cond, x, y))
    check_gradients(lambda a, b: distnet.where_v2(cond, a, b), [x, y])


def test_where_rank1_condition_selects_rows_like_tf1(rng):
    cond = np.array([True, False, True])
    x, y = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    out = distnet.where(cond, x, y).numpy()
    np.testing.assert_array_equal(out, np.stack([x[0], y[1], x[2]]))       # rows, not columns
    np.testing.assert_array_equal(distnet.where_v2(cond, x, y).numpy(), np.where(cond, x, y))  # columns
    x3, y3 = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4))
    np.testing.assert_array_equal(distnet.where(cond, x3, y3).numpy(), np.stack([x3[0], y3[1], x3[2]]))
    check_gradients(lambda a, b: distnet.where(cond, a, b), [x3, y3])
    # Non-square: TF1 picks rows; a length that is not the first size is refused.
    xr, yr = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    np.testing.assert_array_equal(distnet.where(cond, xr, yr).numpy(), np.stack([xr[0], yr[1], xr[2]]))
    with pytest.raises(ShapeError, match="rank-1 condition selects rows.*where_v2"):
        distnet.where(np.array([True, False]), np.ones((3, 2)), np.zeros((3, 2)))


def test_where_gradient_goes_to_the_chosen_side():
    cond = distnet.constant(np.array([True, False, True]))
    x = distnet.Variable([1.0, 2.0, 3.0])
    y = distnet.Variable([10.0, 20.0, 30.0])
    gx, gy = gradients(distnet.reduce_sum(distnet.where(cond, x * 2.0, y * 5.0)), [x, y])
    np.testing.assert_array_equal(gx, [2.0, 0.0, 2.0])
    np.testing.assert_array_equal(gy, [0.0, 5.0, 0.0])


def test_where_with_condition_only_gives_coordinates():
    c = distnet.constant(np.array([[True, False], [False, True]]))
    out = distnet.where(c)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out.numpy(), [[0, 0], [1, 1]])


def test_where_errors():
    with pytest.raises(DTypeError, match="condition: a bool tensor: Expect: bool.*float32"):
        distnet.where(distnet.constant([1.0]), 1.0, 2.0)
    with pytest.raises(InvalidArgumentError, match="both x and y"):
        distnet.where(np.array([True]), 1.0)
    with pytest.raises(ShapeError, match=r"condition \(2,\), x \(3,\), y \(3,\)"):
        distnet.where(np.array([True, False]), np.ones(3, np.float32), np.zeros(3, np.float32))


# Seed 002: loss = reduce_sum(where(greater(y, y_), COST * (y - y_), PROFIT * (y_ - y)))
COST, PROFIT = 1.0, 9.0


def _piecewise_loss(y, y_):
    return distnet.reduce_sum(distnet.where(distnet.greater(y, y_), (y - y_) * COST, (y_ - y) * PROFIT))


def test_seed_002_piecewise_loss_value_and_gradient():
    y = distnet.Variable([3.0, 1.0, 2.5, 0.0])     # predictions
    y_ = distnet.constant([2.0, 2.0, 2.5, 1.0])    # answers
    loss = _piecewise_loss(y, y_)
    # over-prediction costs 1 per unit, under-prediction 9 per unit (tie: 0)
    assert float(loss) == 1.0 + 9.0 + 0.0 + 9.0
    (g,) = gradients(loss, [y])
    # d/dy: +COST where y > y_, -PROFIT elsewhere (the tie takes the else branch)
    np.testing.assert_array_equal(g, [1.0, -9.0, -9.0, -9.0])


def test_seed_002_piecewise_loss_gradient_check(rng):
    y = rng.standard_normal((8, 1))
    y_ = rng.standard_normal((8, 1))
    check_gradients(_piecewise_loss, [y, y_])


# -- clip_by_value ------------------------------------------------------------------

def test_clip_by_value_values_and_tf1_gradient():
    t = distnet.Variable([-2.0, -1.0, 0.0, 1.0, 2.0])
    out = distnet.clip_by_value(t, -1.0, 1.0)
    np.testing.assert_array_equal(out.numpy(), [-1.0, -1.0, 0.0, 1.0, 1.0])
    (g,) = gradients(distnet.reduce_sum(out * 3.0), [t])
    np.testing.assert_array_equal(g, [0.0, 3.0, 3.0, 3.0, 0.0])  # bounds included


def test_clip_by_value_gradient_check_with_tensor_bounds(rng):
    x = rng.standard_normal((3, 4)) * 2
    lo = np.full((1, 4), -1.0) + np.array([0.0, 0.3, -0.2, 0.1])
    hi = np.linspace(0.5, 1.5, 4) + 0.01
    check_gradients(lambda a: distnet.clip_by_value(a, lo, hi), [x])
    x32 = distnet.constant(x.astype(np.float32))
    assert distnet.clip_by_value(x32, -1.0, 1.0).dtype == np.float32


def test_seed_002_clipped_cross_entropy():
    # ce = -reduce_mean(y_ * log(clip_by_value(y, 1e-12, 1.0)))
    y = distnet.Variable([[0.5, 0.5], [0.0, 1.0]], dtype="float64")
    y_ = distnet.constant(np.array([[1.0, 0.0], [1.0, 0.0]]))
    ce = -distnet.reduce_mean(y_ * distnet.log(distnet.clip_by_value(y, 1e-12, 1.0)))
    assert float(ce) == pytest.approx(-(np.log(0.5) + np.log(1e-12)) / 4)
    assert np.isfinite(float(ce))
    (g,) = gradients(ce, [y])
    # -y_/(4*y) inside the range; 0 where y = 0 was clipped up to 1e-12
    np.testing.assert_allclose(g, [[-0.5, 0.0], [0.0, 0.0]])


def test_clip_by_value_errors():
    with pytest.raises(InvalidArgumentError, match="Expect: clip_value_min <= clip_value_max"):
        distnet.clip_by_value(np.ones(3, np.float32), 1.0, 0.0)
    with pytest.raises(ShapeError, match=r"\(4,\).*\(3,\)"):
        distnet.clip_by_value(np.ones(3, np.float32), np.zeros(4, np.float32), 1.0)
    with pytest.raises(DTypeError, match="clip_value_min.*float32.*float64"):
        distnet.clip_by_value(distnet.constant([1.0]), distnet.constant(np.zeros(1)), 1.0)


# -- argmax / argmin ---------------------------------------------------------------

def test_argmax_argmin():
    x = distnet.constant([[1.0, 9.0, 9.0], [8.0, 2.0, 3.0]])
    a = distnet.argmax(x, 1)
    assert a.dtype == np.int64 and a._op is None
    np.testing.assert_array_equal(a.numpy(), [1, 0])   # ties: first index
    np.testing.assert_array_equal(distnet.argmax(x).numpy(), [1, 0, 0])  # TF1: axis None -> 0
    np.testing.assert_array_equal(distnet.argmin(x, -1).numpy(), [0, 1])
    assert distnet.argmax(x, 1, output_type=np.int32).dtype == np.int32


def test_argmax_errors():
    with pytest.raises(ShapeError, match="scalar"):
        distnet.argmax(distnet.constant(1.0))
    with pytest.raises(InvalidArgumentError, match="out of range"):
        distnet.argmax(np.ones((2, 2)), 2)
    with pytest.raises(ShapeError, match="size 0"):
        distnet.argmax(np.ones((0, 2)), 0)
