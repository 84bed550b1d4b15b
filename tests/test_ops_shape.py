"""Shape ops: reshape, transpose, concat, stack, indexing, gather, cast,
stop_gradient, expand_dims, squeeze — values, gradient checks, errors."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.autodiff import gradients
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients
from distnet.ops import IndexOutOfRangeError


# -- reshape / expand_dims / squeeze ---------------------------------------------

@pytest.mark.parametrize("shape", [(6,), (3, 2), (-1, 3), (1, 2, 3), ()])
def test_reshape(shape, rng):
    x = rng.standard_normal((2, 3)) if shape != () else rng.standard_normal((1, 1))
    np.testing.assert_array_equal(distnet.reshape(x, shape).numpy(), x.reshape(shape))
    check_gradients(lambda t: distnet.reshape(t, shape) * 2.0, [x])


def test_tensor_reshape_method_and_errors():
    x = distnet.constant(np.arange(6.0))
    assert x.reshape(2, 3).shape == (2, 3) and x.reshape((3, 2)).shape == (3, 2)
    with pytest.raises(ShapeError, match=r"\(6,\) \(6 elements\) to \(4, 2\)"):
        distnet.reshape(x, (4, 2))
    with pytest.raises(ShapeError):
        distnet.reshape(x, (-1, -1))
    with pytest.raises(InvalidArgumentError, match="shape: Expect:"):
        distnet.reshape(x, "abc")


def test_expand_dims_and_squeeze(rng):
    x = rng.standard_normal((2, 3))
    assert distnet.expand_dims(x, 0).shape == (1, 2, 3)
    assert distnet.expand_dims(x, -1).shape == (2, 3, 1)
    assert distnet.expand_dims(x, 1).shape == (2, 1, 3)
    y = rng.standard_normal((1, 2, 1, 3))
    assert distnet.squeeze(y).shape == (2, 3)
    assert distnet.squeeze(y, 2).shape == (1, 2, 3)
    assert distnet.squeeze(y, [0, -2]).shape == (2, 3)
    check_gradients(lambda t: distnet.expand_dims(t, 1) * 3.0, [x])
    check_gradients(lambda t: distnet.squeeze(t, 0) * 3.0, [y])
    with pytest.raises(ShapeError, match=r"squeeze axis 1 .*\(1, 2, 1, 3\).*size 2"):
        distnet.squeeze(y, 1)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        distnet.expand_dims(x, 3)


# -- transpose ---------------------------------------------------------------

@pytest.mark.parametrize("perm", [None, (0, 1, 2), (2, 0, 1), (1, 0, 2), [2, 1, 0]])
def test_transpose(perm, rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(distnet.transpose(x, perm).numpy(), np.transpose(x, perm))
    check_gradients(lambda t: distnet.transpose(t, perm), [x])


def test_T_property_and_errors(rng):
    x = distnet.constant(rng.standard_normal((2, 3)))
    assert x.T.shape == (3, 2)
    with pytest.raises(InvalidArgumentError, match=r"perm \(0, 0\) is not a permutation"):
        distnet.transpose(x, (0, 0))
    with pytest.raises(InvalidArgumentError, match="permutation"):
        distnet.transpose(x, (0, 1, 2))


# -- concat / stack ------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis, rng):
    shapes = {0: [(1, 3), (2, 3), (3, 3)], 1: [(2, 1), (2, 4), (2, 2)], -1: [(2, 1), (2, 4), (2, 2)]}[axis]
    arrs = [rng.standard_normal(s) for s in shapes]
    np.testing.assert_array_equal(distnet.concat(arrs, axis).numpy(), np.concatenate(arrs, axis))
    check_gradients(lambda a, b, c: distnet.concat([a, b, c], axis), arrs)


def test_concat_same_tensor_twice_accumulates():
    x = distnet.Variable([1.0, 2.0])
    (g,) = gradients(distnet.reduce_sum(distnet.concat([x, x * 3.0], 0)), [x])
    np.testing.assert_array_equal(g, [4.0, 4.0])


def test_concat_errors():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(ShapeError, match=r"values\[1\] has shape \(3, 2\), values\[0\] has shape \(2, 3\)"):
        distnet.concat([a, b], 0)
    with pytest.raises(DTypeError, match=r"float32 Actual: float64 at values\[1\]"):
        distnet.concat([distnet.constant(a), distnet.constant(np.ones((2, 3)))], 0)
    with pytest.raises(InvalidArgumentError, match="empty"):
        distnet.concat([], 0)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        distnet.concat([a, a], 2)
    with pytest.raises(InvalidArgumentError, match="list or tuple"):
        distnet.concat(distnet.constant(a), 0)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(axis, rng):
    arrs = [rng.standard_normal((2, 3)) for _ in range(3)]
    np.testing.assert_array_equal(distnet.stack(arrs, axis).numpy(), np.stack(arrs, axis))
    check_gradients(lambda a, b, c: distnet.stack([a, b, c], axis), arrs)


def test_stack_errors_and_python_numbers():
    with pytest.raises(ShapeError, match=r"values\[1\] has shape \(3,\)"):
        distnet.stack([np.ones(2, np.float32), np.ones(3, np.float32)])
    x = distnet.constant(2.0)
    s = distnet.stack([x, 1.0, 3])  # numbers take the tensor's dtype
    assert s.dtype == np.float32
    np.testing.assert_array_equal(s.numpy(), [2.0, 1.0, 3.0])


# -- indexing ------------------------------------------------------------------

INDICES = [
    1,
    -1,
    (0, 2),
    slice(1, None),
    (slice(None), slice(None, None, 2)),
    (Ellipsis, 1),
    (None, 0),
    (1, None, slice(0, 2)),
    [0, 2, 2],                                  # fancy with a repeat
    np.array([[0, 1], [1, 1]]),
    (slice(None), [3, 0, 3]),
    ([0, 1, 1], [1, 2, 2]),
    np.array([True, False, True]),              # bool mask on axis 0
    np.array([[True, False, True, False]] * 3),  # full bool mask
]


@pytest.mark.parametrize("index", INDICES, ids=[repr(i)[:40] for i in INDICES])
def test_getitem_values_and_gradients(index, rng):
    x = rng.standard_normal((3, 4))
    t = distnet.constant(x)
    np.testing.assert_array_equal(t[index].numpy(), x[index])
    check_gradients(lambda a: a[index], [x])


def test_getitem_repeated_index_accumulates():
    x = distnet.Variable([10.0, 20.0, 30.0])
    (g,) = gradients(distnet.reduce_sum(x[[0, 2, 2, 2]]), [x])
    np.testing.assert_array_equal(g, [1.0, 0.0, 3.0])


def test_getitem_with_tensor_index():
    x = distnet.constant([[1.0, 2.0], [3.0, 4.0]])
    idx = distnet.constant(np.array([1, 0]))
    np.testing.assert_array_equal(x[idx].numpy(), [[3.0, 4.0], [1.0, 2.0]])
    np.testing.assert_array_equal(x[x > 2.0].numpy(), [3.0, 4.0])


def test_getitem_errors_and_iteration():
    x = distnet.constant([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(IndexOutOfRangeError, match=r"out of bounds.*\(2, 2\)"):
        x[5]
    with pytest.raises(IndexError):  # also an IndexError, for Python's protocols
        x[:, 2]
    with pytest.raises(InvalidArgumentError, match="invalid index"):
        x[1.5]
    rows = [r.numpy().tolist() for r in x]  # iteration stops at the end
    assert rows == [[1.0, 2.0], [3.0, 4.0]]


# -- gather ----------------------------------------------------------------------

@pytest.mark.parametrize("axis,indices", [
    (0, [2, 0, 2]),
    (1, [[0, 3], [3, 3]]),
    (-1, [1]),
    (0, 1),
    (1, np.array([], dtype=np.int64)),
])
def test_gather(axis, indices, rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(distnet.gather(x, indices, axis).numpy(), np.take(x, indices, axis))
    check_gradients(lambda a: distnet.gather(a, indices, axis=axis), [x])


def test_gather_repeated_rows_accumulate():
    emb = distnet.Variable([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    (g,) = gradients(distnet.reduce_sum(distnet.gather(emb, [1, 1, 2])), [emb])
    np.testing.assert_array_equal(g, [[0.0, 0.0], [2.0, 2.0], [1.0, 1.0]])


def test_gather_errors():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(IndexOutOfRangeError, match=r"index 3 is out of range for axis 0 of size 3"):
        distnet.gather(x, [0, 3])
    with pytest.raises(IndexOutOfRangeError, match=r"index -1"):
        distnet.gather(x, [-1])  # TF rejects negative indices
    with pytest.raises(DTypeError, match="integers"):
        distnet.gather(x, [0.5])
    with pytest.raises(ShapeError, match="rank >= 1"):
        distnet.gather(np.float32(1.0), [0])


# -- cast / stop_gradient -----------------------------------------------------------

def test_cast_values_and_identity():
    x = distnet.constant([1.7, -1.7])
    np.testing.assert_array_equal(distnet.cast(x, "int32").numpy(), [1, -1])  # truncates as TF
    assert distnet.cast(x, np.float32) is x
    assert distnet.cast(distnet.constant([0, 2]), "bool").numpy().tolist() == [False, True]
    with pytest.raises(DTypeError, match="not a dtype"):
        distnet.cast(x, "nonsense")


def test_cast_gradient_flows_between_floats(rng):
    x = rng.standard_normal((2, 3))
    check_gradients(lambda t: distnet.cast(distnet.cast(t, np.float32), np.float64) * 2.0, [x], rtol=1e-3,
                    eps=1e-3)
    v = distnet.Variable([1.0, 2.0])  # float32
    (g,) = gradients(distnet.reduce_sum(distnet.cast(v, "float64") * 3.0), [v])
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [3.0, 3.0])


def test_cast_stops_gradient_through_integers():
    v = distnet.Variable([1.5, 2.5])
    y = distnet.reduce_sum(distnet.cast(distnet.cast(v, "int32"), "float32") * 3.0)
    (g,) = gradients(y, [v])
    np.testing.assert_array_equal(g, [0.0, 0.0])
    i = distnet.constant([1, 2])
    (gi,) = gradients(distnet.reduce_sum(distnet.cast(i, "float32")), [i])
    np.testing.assert_array_equal(gi, [0.0, 0.0])


def test_stop_gradient_value_and_no_copy():
    x = distnet.Variable([1.0, 2.0])
    s = distnet.stop_gradient(x * 2.0)
    np.testing.assert_array_equal(s.numpy(), [2.0, 4.0])
    (g,) = gradients(distnet.reduce_sum(s * x), [x])
    np.testing.assert_array_equal(g, [2.0, 4.0])


def test_too_many_indices_is_invalid_argument():
    x = distnet.constant([1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match=r"invalid index.*\(2,\)"):
        x[0, 0]
