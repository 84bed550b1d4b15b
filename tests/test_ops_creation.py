"""zeros, ones, fill, zeros_like, ones_like, one_hot: values, TF1 dtype
rules, TF1's documented one_hot examples, gradient behaviour (constants:
no gradient flows to their inputs) and errors."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.autodiff import gradients
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients
from distnet.ops import creation

MAKERS = {"zeros": (distnet.zeros, 0), "ones": (distnet.ones, 1)}
LIKE = {"zeros_like": (distnet.zeros_like, 0), "ones_like": (distnet.ones_like, 1)}


# -- exports ------------------------------------------------------------------

@pytest.mark.parametrize("name", creation.__all__ + ["sign"])
def test_exported_at_the_top_level(name):
    assert name in distnet.ops.__all__
    assert getattr(distnet, name) is getattr(distnet.ops, name)


# -- zeros / ones ---------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("shape,expected", [
    ([2, 3], (2, 3)), ((4,), (4,)), (3, (3,)), ([], ()), ((2, 0, 5), (2, 0, 5)),
    (np.array([2, 1]), (2, 1)), (distnet.constant([1, 2]), (1, 2)), ([np.int64(2), 3], (2, 3)),
])
def test_zeros_ones_shape_and_value(name, shape, expected):
    fn, value = MAKERS[name]
    t = fn(shape)
    assert t.shape == expected
    assert t.dtype == np.float32  # TF1 default
    np.testing.assert_array_equal(t.numpy(), np.full(expected, value, np.float32))
    assert t._op is None and t._parents == ()


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("dtype", [np.float64, "float64", np.int32, "int64", np.uint8, np.float16, bool])
def test_zeros_ones_dtype(name, dtype):
    fn, value = MAKERS[name]
    t = fn([2, 2], dtype=dtype)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.numpy(), np.full((2, 2), value, np.dtype(dtype)))


def test_zeros_results_are_fresh_writeable_buffers():
    a, b = distnet.zeros([3]), distnet.zeros([3])
    a.numpy()[0] = 5.0
    assert b.numpy()[0] == 0.0
    assert distnet.zeros([3]).numpy()[0] == 0.0


def test_seed_001_bias_variable_of_zeros():
    # Seed 001: biases = tf.Variable(tf.zeros([num_labels])); logits = x @ w + biases.
    num_labels, batch = 10, 4
    biases = distnet.Variable(distnet.zeros([num_labels]))
    assert biases.shape == (num_labels,) and biases.dtype == np.float32 and biases.trainable
    np.testing.assert_array_equal(biases.numpy(), np.zeros(num_labels, np.float32))
    x = distnet.constant(np.arange(batch * 3, dtype=np.float32).reshape(batch, 3))
    w = distnet.Variable(np.ones((3, num_labels), np.float32))
    logits = distnet.matmul(x, w) + biases
    np.testing.assert_array_equal(logits.numpy(), x.numpy() @ w.numpy())
    # The bias is a trainable leaf: d(sum(logits))/d(biases) = batch for each label.
    (gb,) = gradients(distnet.reduce_sum(logits), [biases])
    np.testing.assert_array_equal(gb, np.full(num_labels, batch, np.float32))
    biases.assign_sub(0.5 * gb)
    np.testing.assert_array_equal(biases.numpy(), np.full(num_labels, -2.0, np.float32))


# -- fill ---------------------------------------------------------------------

@pytest.mark.parametrize("value,dtype", [
    (9, np.int32),              # TF: tf.fill([2, 3], 9) is int32
    (2.5, np.float32),          # Python float -> float32
    (True, np.bool_),
    (2 ** 40, np.int64),        # does not fit in int32: int64, as TF infers
    (-(2 ** 31), np.int32),     # the int32 minimum still fits
    (np.float64(2.5), np.float64),  # numpy values keep their dtype
    (np.int8(-3), np.int8),
    (distnet.constant(1.5, dtype="float64"), np.float64),
])
def test_fill_dtype_from_value(value, dtype):
    t = distnet.fill([2, 3], value)
    assert t.shape == (2, 3)
    assert t.dtype == dtype
    expected = value.numpy() if isinstance(value, distnet.Tensor) else value
    np.testing.assert_array_equal(t.numpy(), np.full((2, 3), expected, dtype))
    assert t._op is None


def test_fill_documented_example_and_nan():
    np.testing.assert_array_equal(distnet.fill([2, 3], 9).numpy(), [[9, 9, 9], [9, 9, 9]])
    assert np.isnan(distnet.fill([2], float("nan")).numpy()).all()
    assert distnet.fill([], 4.0).shape == ()


def test_fill_errors():
    with pytest.raises(InvalidArgumentError, match=r"fill: dims: Expect: a list or tuple of sizes such as \[3\]"):
        distnet.fill(3, 1.0)  # TF's tf.fill refuses a bare number
    with pytest.raises(InvalidArgumentError, match=r"fill: dims\[0\]: Expect: a size >= 0 Actual: -2"):
        distnet.fill([-2, 3], 1.0)
    with pytest.raises(ShapeError, match=r"fill: value: a scalar: Expect: shape \(\) Actual: shape \(2,\)"):
        distnet.fill([2], [1.0, 2.0])
    with pytest.raises(DTypeError, match=r"fill: value: Expect: a number.*'a'"):
        distnet.fill([2], "a")
    with pytest.raises(InvalidArgumentError, match="fits in int64"):
        distnet.fill([2], 2 ** 70)


# -- zeros_like / ones_like ------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LIKE))
@pytest.mark.parametrize("x", [
    np.arange(6, dtype=np.float64).reshape(2, 3), np.ones((4,), np.float32), np.array([[1, 2]], np.int32),
    np.array([True, False]), np.float32(3.0),
])
def test_like_keeps_shape_and_dtype(name, x):
    fn, value = LIKE[name]
    for arg in (x, distnet.constant(x), distnet.Variable(x) if np.asarray(x).dtype != bool else x):
        t = fn(arg)
        assert t.shape == np.shape(x)
        assert t.dtype == np.asarray(x).dtype
        np.testing.assert_array_equal(t.numpy(), np.full(np.shape(x), value, np.asarray(x).dtype))
        assert t._op is None and t._parents == ()


@pytest.mark.parametrize("name", sorted(LIKE))
def test_like_with_dtype_and_python_values(name):
    fn, value = LIKE[name]
    t = fn(distnet.constant([[1.0, 2.0]]), dtype="int32")
    assert t.dtype == np.int32 and t.shape == (1, 2)
    np.testing.assert_array_equal(t.numpy(), [[value, value]])
    assert fn([1.0, 2.0]).dtype == np.float32   # a list of floats is float32 (TF1)
    assert fn([1, 2]).dtype == np.int32
    assert fn(np.ones(2), dtype=np.float32).dtype == np.float32


def test_like_does_not_share_memory_with_x():
    x = distnet.Variable([1.0, 2.0])
    z = distnet.zeros_like(x)
    z.numpy()[:] = 7.0
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])
    assert not np.shares_memory(distnet.ones_like(x).numpy(), x.numpy())


# -- gradient behaviour ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LIKE))
def test_like_alone_is_unconnected(name):
    fn, _ = LIKE[name]
    x = distnet.Variable([[1.0, -2.0], [3.0, 4.0]])
    (g,) = gradients(distnet.reduce_sum(fn(x)), [x])
    np.testing.assert_array_equal(g, np.zeros((2, 2), np.float32))
    assert g.dtype == np.float32
    # TF1: ZerosLike / OnesLike are not differentiable, so tf.gradients gives None.
    assert gradients(distnet.reduce_sum(fn(x)), [x], unconnected_gradients="none") == [None]


def test_gradient_through_x_times_zeros_like_x():
    x = distnet.Variable([[1.5, -2.0, 0.0], [3.0, 4.0, -0.5]])
    loss = distnet.reduce_sum(x * distnet.zeros_like(x))
    assert float(loss) == 0.0
    (g,) = gradients(loss, [x])
    # d/dx (x * c) = c = 0: the zeros_like path carries nothing back to x.
    np.testing.assert_array_equal(g, np.zeros((2, 3), np.float32))
    # With a second path, only that path counts.
    (g,) = gradients(distnet.reduce_sum(x * distnet.zeros_like(x) + 2.0 * x), [x])
    np.testing.assert_array_equal(g, np.full((2, 3), 2.0, np.float32))


def test_gradient_through_x_times_ones_like_x():
    # If ones_like passed a gradient back (as x would), this would be 6, not 3.
    x = distnet.Variable([1.0, -2.0, 5.0])
    (g,) = gradients(distnet.reduce_sum(x * distnet.ones_like(x) * 3.0), [x])
    np.testing.assert_array_equal(g, [3.0, 3.0, 3.0])


def test_float64_gradient_check_of_expressions_with_constants(rng):
    def f(x):
        return (x * distnet.ones_like(x) + x * x * distnet.zeros_like(x)
                + distnet.fill([2, 3], np.float64(0.5)) * x + distnet.ones([3], dtype="float64") * x * x)

    check_gradients(f, [rng.standard_normal((2, 3))])


def test_gradient_through_one_hot_labels():
    y = distnet.constant([2, 0, 1])
    logits = distnet.Variable(np.arange(9, dtype=np.float32).reshape(3, 3))
    labels = distnet.one_hot(y, 3)
    (g,) = gradients(distnet.reduce_sum(labels * logits), [logits])
    np.testing.assert_array_equal(g, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_dense_cross_entropy_of_one_hot_equals_sparse(rng):
    y = rng.integers(0, 5, size=7).astype(np.int32)
    logits = distnet.constant(rng.standard_normal((7, 5)))
    dense = distnet.nn.softmax_cross_entropy_with_logits(
        labels=distnet.one_hot(y, 5, dtype="float64"), logits=logits)
    sparse = distnet.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    np.testing.assert_allclose(dense.numpy(), sparse.numpy(), rtol=1e-12)


# -- one_hot ----------------------------------------------------------------------

def test_one_hot_documented_basic_example():
    # tf.one_hot([0, 1, 2], 3): a 3x3 identity, float32.
    t = distnet.one_hot([0, 1, 2], 3)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert t._op is None and t._parents == ()


def test_one_hot_documented_negative_index_example():
    # TF1 docs: indices [0, 2, -1, 1], depth 3, on 5.0, off 0.0, axis -1 -> [4 x 3].
    t = distnet.one_hot([0, 2, -1, 1], 3, on_value=5.0, off_value=0.0, axis=-1)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), [[5.0, 0.0, 0.0],
                                              [0.0, 0.0, 5.0],
                                              [0.0, 0.0, 0.0],   # one_hot(-1): all off
                                              [0.0, 5.0, 0.0]])


def test_one_hot_documented_axis_0_example():
    # TF1 docs: the same indices, on 0.0, off 3.0, axis 0 -> [3 x 4]; column i
    # is one_hot(indices[i]).  (The docs' printout of this example has a
    # stray fourth row; the stated [3 x 4] shape and the column annotations
    # are what the kernel computes.)
    t = distnet.one_hot([0, 2, -1, 1], 3, on_value=0.0, off_value=3.0, axis=0)
    assert t.shape == (3, 4)
    np.testing.assert_array_equal(t.numpy(), [[0.0, 3.0, 3.0, 3.0],
                                              [3.0, 3.0, 3.0, 0.0],
                                              [3.0, 0.0, 3.0, 3.0]])


def test_one_hot_documented_batch_example():
    # TF1 docs: indices [[0, 2], [1, -1]], depth 3, axis -1 -> [2 x 2 x 3].
    t = distnet.one_hot([[0, 2], [1, -1]], 3, on_value=1.0, off_value=0.0, axis=-1)
    np.testing.assert_array_equal(t.numpy(), [[[1, 0, 0], [0, 0, 1]],
                                              [[0, 1, 0], [0, 0, 0]]])


@pytest.mark.parametrize("axis,shape", [(-1, (2, 4, 3)), (None, (2, 4, 3)), (2, (2, 4, 3)),
                                        (1, (2, 3, 4)), (0, (3, 2, 4))])
def test_one_hot_axis_placement_matches_a_loop(axis, shape, rng):
    # TF: batch x features x depth (axis -1), batch x depth x features (axis 1),
    # depth x batch x features (axis 0).
    idx = rng.integers(-2, 5, size=(2, 4))  # includes negatives and >= depth
    t = distnet.one_hot(idx, 3, axis=axis)
    assert t.shape == shape
    ref = np.zeros((2, 4, 3), np.float32)
    for b in range(2):
        for f in range(4):
            if 0 <= idx[b, f] < 3:
                ref[b, f, idx[b, f]] = 1.0
    ax = 2 if axis in (-1, None) else axis
    np.testing.assert_array_equal(t.numpy(), np.moveaxis(ref, 2, ax))
    assert t.numpy().flags.c_contiguous


def test_one_hot_scalar_index_depth_zero_and_large_index():
    np.testing.assert_array_equal(distnet.one_hot(1, 4).numpy(), [0, 1, 0, 0])
    np.testing.assert_array_equal(distnet.one_hot(7, 4).numpy(), [0, 0, 0, 0])   # >= depth: all off
    assert distnet.one_hot([0, 1], 0).shape == (2, 0)
    assert distnet.one_hot(np.zeros((0,), np.int64), 3).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int16])
def test_one_hot_accepts_integer_index_dtypes(dtype):
    t = distnet.one_hot(np.array([1, 0], dtype), 2)
    np.testing.assert_array_equal(t.numpy(), [[0, 1], [1, 0]])


def test_one_hot_dtype_rules():
    idx = [0, 1]
    assert distnet.one_hot(idx, 2).dtype == np.float32                        # nothing given
    assert distnet.one_hot(idx, 2, dtype="float64").dtype == np.float64
    assert distnet.one_hot(idx, 2, on_value=5, off_value=0).dtype == np.int32   # from on_value (TF1)
    assert distnet.one_hot(idx, 2, on_value=2.0).dtype == np.float32
    assert distnet.one_hot(idx, 2, off_value=-1).dtype == np.int32             # from off_value
    assert distnet.one_hot(idx, 2, on_value=np.float64(1)).dtype == np.float64
    assert distnet.one_hot(idx, 2, on_value=True, off_value=False).dtype == np.bool_
    t = distnet.one_hot(idx, 2, on_value=5, off_value=-1, dtype=np.float64)   # ints convert to dtype
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), [[5.0, -1.0], [-1.0, 5.0]])
    t = distnet.one_hot(idx, 2, dtype="int64")
    assert t.dtype == np.int64
    np.testing.assert_array_equal(t.numpy(), [[1, 0], [0, 1]])
    t = distnet.one_hot(idx, 2, on_value=distnet.constant(2.0, dtype="float64"), dtype="float64")
    np.testing.assert_array_equal(t.numpy(), [[2.0, 0.0], [0.0, 2.0]])


def test_one_hot_dtype_errors():
    with pytest.raises(DTypeError, match=r"off_value must have the dtype of on_value; Expect: float32 Actual: int32"):
        distnet.one_hot([0], 2, on_value=1.0, off_value=0)
    with pytest.raises(DTypeError, match=r"on_value must have the dtype of dtype; Expect: int32 Actual: float32"):
        distnet.one_hot([0], 2, on_value=1.5, dtype="int32")   # a float does not truncate into an int
    with pytest.raises(DTypeError, match=r"on_value must have the dtype of dtype; Expect: float32 Actual: float64"):
        distnet.one_hot([0], 2, on_value=np.float64(1.0), dtype="float32")
    with pytest.raises(InvalidArgumentError, match=r"on_value: Expect: a value that fits in uint8 Actual: 300"):
        distnet.one_hot([0], 2, on_value=300, dtype="uint8")
    with pytest.raises(DTypeError, match=r"one_hot: indices: Expect: an integer tensor.*Actual: float32"):
        distnet.one_hot([0.0, 1.0], 2)
    with pytest.raises(DTypeError, match=r"indices.*Actual: bool"):
        distnet.one_hot(np.array([True]), 2)
    with pytest.raises(ShapeError, match=r"on_value: a scalar: Expect: shape \(\) Actual: shape \(2,\)"):
        distnet.one_hot([0], 2, on_value=[1.0, 2.0])
    with pytest.raises(DTypeError, match=r"one_hot: dtype: Expect: a dtype.*Actual: 'nonsense'"):
        distnet.one_hot([0], 2, dtype="nonsense")


@pytest.mark.parametrize("depth,match", [
    (-1, r"one_hot: depth: Expect: depth >= 0 Actual: -1"),
    (2.0, r"one_hot: depth: Expect: a non-negative int Actual: 2\.0 \(float\)"),
    (True, r"one_hot: depth: Expect: a non-negative int Actual: True \(bool\)"),
    ("3", r"one_hot: depth: Expect: a non-negative int Actual: '3' \(str\)"),
])
def test_one_hot_bad_depth(depth, match):
    with pytest.raises(InvalidArgumentError, match=match):
        distnet.one_hot([0, 1], depth)


def test_one_hot_depth_as_numpy_or_tensor_scalar():
    expected = [[1, 0, 0], [0, 0, 1]]
    np.testing.assert_array_equal(distnet.one_hot([0, 2], np.int64(3)).numpy(), expected)
    np.testing.assert_array_equal(distnet.one_hot([0, 2], distnet.constant(3)).numpy(), expected)


@pytest.mark.parametrize("axis", [-2, 3, 1.0])
def test_one_hot_bad_axis(axis):
    # TF1's kernel accepts -1 or 0 .. rank(indices) (here rank 2).
    with pytest.raises(InvalidArgumentError, match=r"one_hot: axis: Expect: .*-1.*2.*Actual"):
        distnet.one_hot([[0, 1]], 2, axis=axis)


# -- shape and dtype errors of zeros / ones / *_like --------------------------------

@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("shape,match", [
    ([2, -1], r"shape\[1\]: Expect: a size >= 0 Actual: -1 \(shape \[2, -1\]\)"),
    (-3, r"shape\[0\]: Expect: a size >= 0 Actual: -3"),
    ([2, 2.5], r"shape\[1\]: Expect: a non-negative int Actual: 2\.5 \(float\)"),
    ([2.0], r"shape\[0\]: Expect: a non-negative int Actual: 2\.0 \(float\)"),
    ([True, 2], r"shape\[0\]: Expect: a non-negative int Actual: True \(bool\)"),
    ([[2, 3]], r"shape\[0\]: Expect: a non-negative int Actual: \[2, 3\] \(list\)"),
    (["2"], r"shape\[0\]: Expect: a non-negative int Actual: '2' \(str\)"),
    ("23", r"shape: Expect: a list or tuple of non-negative ints Actual: '23' \(str\)"),
    (None, r"shape: Expect: a list or tuple of non-negative ints Actual: None"),
    (np.array([2.0, 3.0]), r"shape: Expect: integer sizes Actual: an array of dtype float64"),
    (np.ones((2, 2), np.int32), r"shape: Expect: a 1-D list of sizes Actual: an array of shape \(2, 2\)"),
    ([1] * 65, r"shape: Expect: at most 64 dimensions Actual: 65"),
])
def test_bad_shapes(name, shape, match):
    fn, _ = MAKERS[name]
    with pytest.raises(InvalidArgumentError, match=rf"^{name}: {match}"):
        fn(shape)


def test_too_big_shape_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match=r"zeros: cannot make a tensor of shape \(4294967296, 4294967296\)"):
        distnet.zeros([2 ** 32, 2 ** 32])


@pytest.mark.parametrize("fn", [distnet.zeros, distnet.ones])
@pytest.mark.parametrize("dtype,match", [
    ("nonsense", r"dtype: Expect: a dtype such as float32 or int32 Actual: 'nonsense' \(str\)"),
    (None, r"dtype: Expect: a dtype such as float32 or int32 Actual: None"),
    ("complex64", r"dtype: Expect: a bool, integer or floating dtype Actual: complex64"),
    (object, r"dtype: Expect: a bool, integer or floating dtype Actual: object"),
    ("U3", r"dtype: Expect: a bool, integer or floating dtype Actual: <U3"),
])
def test_bad_dtypes(fn, dtype, match):
    with pytest.raises(DTypeError, match=match):
        fn([2], dtype=dtype)


@pytest.mark.parametrize("fn", [distnet.zeros_like, distnet.ones_like])
def test_like_bad_dtype_and_non_numeric_x(fn):
    with pytest.raises(DTypeError, match=r"_like: dtype: .*Actual: complex128"):
        fn(distnet.constant([1.0]), dtype="complex128")
    with pytest.raises(DTypeError, match=r"_like: x: Expect: a bool, integer or floating tensor Actual: dtype <U1"):
        fn(np.array(["a", "b"]))
