"""Reductions: the seed numbers, every axis form, keepdims, gradient
checks, TF1's tie splitting for max/min, integer means and errors."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.autodiff import gradients
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients

SEED = [[1, 2, 3], [4, 5, 6]]


def test_seed_000_reduce_sum():
    x = distnet.constant(SEED)
    np.testing.assert_array_equal(distnet.reduce_sum(x, axis=0).numpy(), [5, 7, 9])   # columns
    np.testing.assert_array_equal(distnet.reduce_sum(x, axis=1).numpy(), [6, 15])     # rows
    assert distnet.reduce_sum(x).numpy() == 21
    assert distnet.reduce_sum(x).dtype == np.int32  # TF1 keeps int32 (numpy would widen)
    np.testing.assert_array_equal(distnet.reduce_sum(x, reduction_indices=[0]).numpy(), [5, 7, 9])
    np.testing.assert_array_equal(distnet.reduce_sum(x, 1, keepdims=True).numpy(), [[6], [15]])
    assert distnet.reduce_sum(x, axis=(0, 1)).numpy() == 21
    np.testing.assert_array_equal(distnet.reduce_sum(x, axis=-1).numpy(), [6, 15])


def test_reduce_mean_float_variants():
    x = distnet.constant(np.array(SEED, dtype=np.float32))
    np.testing.assert_array_equal(distnet.reduce_mean(x, axis=0).numpy(), [2.5, 3.5, 4.5])
    np.testing.assert_array_equal(distnet.reduce_mean(x, axis=1).numpy(), [2.0, 5.0])
    assert distnet.reduce_mean(x).numpy() == 3.5
    np.testing.assert_array_equal(distnet.reduce_mean(x, axis=[0, 1], keepdims=True).numpy(), [[3.5]])
    assert distnet.reduce_mean(x).dtype == np.float32


def test_reduce_mean_of_integers_truncates_like_tf1():
    x = distnet.constant(SEED)
    assert distnet.reduce_mean(x).numpy() == 3          # 21 / 6 = 3.5 -> 3
    np.testing.assert_array_equal(distnet.reduce_mean(x, 0).numpy(), [2, 3, 4])
    np.testing.assert_array_equal(distnet.reduce_mean(x, 1).numpy(), [2, 5])
    assert distnet.reduce_mean(distnet.constant([-3, -4])).numpy() == -3  # toward zero
    assert distnet.reduce_mean(x).dtype == np.int32


def test_mse_as_in_seed_002():
    y = distnet.constant([1.0, 2.0, 4.0])
    y_ = distnet.constant([1.0, 3.0, 2.0])
    loss = distnet.reduce_mean(distnet.square(y_ - y))
    assert float(loss) == pytest.approx(5.0 / 3.0)
    (g,) = gradients(loss, [y])
    np.testing.assert_allclose(g, [0.0, -2.0 / 3.0, 4.0 / 3.0], rtol=1e-6)


AXES = [None, 0, 1, -1, (0, 2), (2, 0, 1), [1], ()]
REDUCE = {"sum": distnet.reduce_sum, "mean": distnet.reduce_mean,
          "max": distnet.reduce_max, "min": distnet.reduce_min}
NUMPY = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


@pytest.mark.parametrize("name", sorted(REDUCE))
@pytest.mark.parametrize("axis", AXES, ids=repr)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_values_and_gradients(name, axis, keepdims, rng):
    x = rng.standard_normal((2, 3, 4))
    out = REDUCE[name](x, axis=axis, keepdims=keepdims)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    np.testing.assert_allclose(out.numpy(), NUMPY[name](x, axis=np_axis, keepdims=keepdims), rtol=1e-14)
    check_gradients(lambda t: REDUCE[name](t, axis=axis, keepdims=keepdims), [x])


@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduction_of_a_scalar(name):
    x = np.array(2.5)
    assert REDUCE[name](x).numpy() == 2.5
    check_gradients(lambda t: REDUCE[name](t, axis=0), [x])


def test_reduce_max_splits_gradient_among_ties_tf1():
    x = distnet.constant([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    (g,) = gradients(distnet.reduce_sum(distnet.reduce_max(x, axis=1)), [x])
    np.testing.assert_allclose(g, [[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    (g,) = gradients(distnet.reduce_max(x), [x])  # 3 appears twice overall
    np.testing.assert_allclose(g, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])


def test_reduce_min_splits_gradient_among_ties():
    x = distnet.constant([[1.0, 1.0, 4.0], [0.0, 2.0, 0.0]])
    (g,) = gradients(distnet.reduce_sum(distnet.reduce_min(x, axis=1) * 2.0), [x])
    np.testing.assert_allclose(g, [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])


def test_reduce_max_gradient_keeps_float32():
    x = distnet.constant([[1.0, 3.0]])
    (g,) = gradients(distnet.reduce_max(x), [x])
    assert g.dtype == np.float32


def test_reduce_any_all():
    b = distnet.constant(np.array([[True, False], [True, True]]))
    np.testing.assert_array_equal(distnet.reduce_any(b, 1).numpy(), [True, True])
    np.testing.assert_array_equal(distnet.reduce_all(b, 1).numpy(), [False, True])
    assert distnet.reduce_all(b).numpy() == np.False_
    assert distnet.reduce_any(b > False).numpy() == np.True_
    with pytest.raises(DTypeError, match="bool"):
        distnet.reduce_any(distnet.constant([1.0]))


@pytest.mark.parametrize("axis, match", [
    (2, "axis 2 is out of range for a tensor of rank 2"),
    (-3, "axis -3 is out of range"),
    ((0, 0), "repeated axis"),
    ((0, -2), "repeated axis"),
    (1.0, "axis: Expect:"),
    ("0", "axis: Expect:"),
])
def test_bad_axis_is_a_clear_error(axis, match):
    for fn in REDUCE.values():
        with pytest.raises(InvalidArgumentError, match=match):
            fn(np.ones((2, 3)), axis=axis)


def test_axis_and_reduction_indices_together_is_an_error():
    with pytest.raises(InvalidArgumentError, match="not both"):
        distnet.reduce_sum(np.ones(2), axis=0, reduction_indices=0)


def test_max_over_empty_axis_is_a_clear_error():
    with pytest.raises(ShapeError, match="size 0"):
        distnet.reduce_max(np.ones((0, 3)), axis=0)
    np.testing.assert_array_equal(distnet.reduce_max(np.ones((0, 3)), axis=1).numpy(), np.ones(0))
