"""Element-wise arithmetic: values, float64 gradient checks (with
broadcasting), TF1 tie conventions, dtypes and errors."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet.autodiff import gradients
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients

# Shape pairs that exercise every way numpy broadcasts.
BROADCAST_SHAPES = [
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),
    ((2, 1), (1, 3)),
    ((4, 2, 3), (2, 1)),
    ((), (2, 3)),
]

BINARY = {
    "add": distnet.add,
    "subtract": distnet.subtract,
    "multiply": distnet.multiply,
    "divide": distnet.divide,
    "maximum": distnet.maximum,
    "minimum": distnet.minimum,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("sx,sy", BROADCAST_SHAPES)
def test_binary_gradients_with_broadcasting(name, sx, sy, rng):
    x = rng.standard_normal(sx)
    y = rng.standard_normal(sy)
    if name == "divide":
        y = np.sign(y) * (np.abs(y) + 0.5)  # away from 0
    check_gradients(BINARY[name], [x, y])


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_values_match_numpy(name, rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal(4) + 3.0
    ref = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
           "maximum": np.maximum, "minimum": np.minimum}[name]
    np.testing.assert_allclose(BINARY[name](x, y).numpy(), ref(x, y), rtol=1e-15)


UNARY = {
    "negative": (distnet.negative, np.negative, lambda r, s: r.standard_normal(s)),
    "square": (distnet.square, np.square, lambda r, s: r.standard_normal(s)),
    "sqrt": (distnet.sqrt, np.sqrt, lambda r, s: r.random(s) + 0.5),
    "exp": (distnet.exp, np.exp, lambda r, s: r.standard_normal(s)),
    "log": (distnet.log, np.log, lambda r, s: r.random(s) + 0.5),
    "abs": (distnet.abs, np.abs, lambda r, s: r.standard_normal(s)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_unary_gradients_and_values(name, shape, rng):
    fn, ref, make = UNARY[name]
    x = make(rng, shape)
    np.testing.assert_allclose(fn(x).numpy(), ref(x), rtol=1e-15)
    check_gradients(fn, [x])


def test_pow_tensor_exponent_gradients_for_both(rng):
    base = rng.random((2, 3)) + 0.5
    expo = rng.standard_normal((2, 3))
    check_gradients(distnet.pow, [base, expo])
    check_gradients(distnet.pow, [base, rng.standard_normal((3,))])  # broadcast exponent


@pytest.mark.parametrize("expo", [2.0, 3.0, 0.5, -1.5])
def test_pow_scalar_exponent(expo, rng):
    base = rng.random((2, 3)) + 0.5
    check_gradients(lambda b: distnet.pow(b, expo), [base])
    check_gradients(lambda b: b ** expo, [base])
    np.testing.assert_allclose(distnet.pow(base, expo).numpy(), base ** expo)


def test_pow_gradient_wrt_negative_base_and_exponent_mask():
    # Integer exponent on a negative base: d/dx x^3 = 3x^2; the exponent's
    # gradient is masked to 0 where the base is <= 0 (TF1).
    x = distnet.constant(np.array([-2.0, 0.0, 2.0]))
    y = distnet.constant(np.array([3.0, 3.0, 3.0]))
    gx, gy = gradients(distnet.reduce_sum(distnet.pow(x, y)), [x, y])
    np.testing.assert_allclose(gx, [12.0, 0.0, 12.0])
    np.testing.assert_allclose(gy, [0.0, 0.0, 8.0 * np.log(2.0)])


def test_rpow_and_scalar_on_the_left():
    x = distnet.constant([1.0, 2.0])
    np.testing.assert_allclose((2.0 ** x).numpy(), [2.0, 4.0])
    np.testing.assert_allclose((1.0 - x).numpy(), [0.0, -1.0])
    np.testing.assert_allclose((6.0 / x).numpy(), [6.0, 3.0])
    assert (2.0 ** x).dtype == np.float32


def test_integer_pow_with_negative_exponent_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="negative integer powers"):
        distnet.pow(distnet.constant([2, 3]), distnet.constant([1, -1]))


def test_maximum_tie_goes_to_x_tf1():
    x = distnet.constant([1.0, 2.0, 3.0])
    y = distnet.constant([1.0, 5.0, 0.0])
    gx, gy = gradients(distnet.reduce_sum(distnet.maximum(x, y)), [x, y])
    np.testing.assert_array_equal(gx, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gy, [0.0, 1.0, 0.0])


def test_minimum_tie_goes_to_x_tf1():
    x = distnet.constant([1.0, 2.0, 3.0])
    y = distnet.constant([1.0, 5.0, 0.0])
    gx, gy = gradients(distnet.reduce_sum(distnet.minimum(x, y)), [x, y])
    np.testing.assert_array_equal(gx, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(gy, [0.0, 0.0, 1.0])


def test_maximum_with_scalar_is_relu():
    x = distnet.constant([-1.0, 0.0, 2.0])
    (g,) = gradients(distnet.reduce_sum(distnet.maximum(x, 0.0)), [x])
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0])  # tie at 0 goes to x


def test_abs_gradient_at_zero_is_zero():
    x = distnet.constant([-2.0, 0.0, 3.0])
    (g,) = gradients(distnet.reduce_sum(distnet.abs(x)), [x])
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0])


def test_seed_regularizer_numbers():
    # Seeds 001/004: w = [[5,-2],[-3,1]]: sum|w| = 11, sum(w^2)/2 = 19.5.
    w = distnet.constant([[5.0, -2.0], [-3.0, 1.0]])
    assert float(distnet.reduce_sum(distnet.abs(w))) == 11.0
    assert float(distnet.reduce_sum(distnet.square(w)) / 2) == 19.5
    assert float(distnet.reduce_sum(w ** 2) / 2) == 19.5
    # and with scale 0.5 (the MISSION numbers)
    assert float(0.5 * distnet.reduce_sum(distnet.abs(w))) == 5.5
    assert float(0.5 * distnet.reduce_sum(distnet.square(w)) / 2) == 9.75


def test_float32_is_kept_with_python_and_numpy_scalars():
    x = distnet.constant([1.0, 4.0])
    for t in (x + 1, x * 0.5, x / 3, x - 2.5, x ** 2, 2 * x, distnet.sqrt(x), distnet.exp(x),
              distnet.log(x), distnet.maximum(x, 2.0), np.float32(2.0) * x):
        assert t.dtype == np.float32, t


def test_integer_arithmetic_keeps_int_and_divides_to_float64():
    a = distnet.constant([7, -7])
    assert (a + 1).dtype == np.int32
    assert (a * a).dtype == np.int32
    q = a / 2
    assert q.dtype == np.float64  # TF1 truediv of int32
    np.testing.assert_array_equal(q.numpy(), [3.5, -3.5])


def test_float_value_with_int_tensor_is_rejected():
    with pytest.raises(DTypeError, match=r"int32.*2\.5"):
        distnet.constant([1, 2]) * 2.5


@pytest.mark.parametrize("fn", [distnet.sqrt, distnet.exp, distnet.log])
def test_float_only_ops_reject_integers(fn):
    with pytest.raises(DTypeError, match="int32"):
        fn(distnet.constant([1, 2]))


@pytest.mark.parametrize("name", sorted(BINARY) + ["pow"])
def test_incompatible_shapes_name_both(name):
    fn = distnet.pow if name == "pow" else BINARY[name]
    with pytest.raises(ShapeError, match=rf"{name}.*\(2, 3\) and \(4,\)"):
        fn(np.ones((2, 3), np.float32), np.ones(4, np.float32))


def test_dtype_mismatch_between_tensors():
    with pytest.raises(DTypeError, match="multiply.*float64.*float32"):
        distnet.constant(np.ones(2)) * distnet.constant([1.0, 2.0])


def test_log_of_zero_is_minus_inf_without_warning():
    with np.errstate(all="raise"):
        assert distnet.log(distnet.constant([0.0])).numpy()[0] == -np.inf


def test_gradient_wrt_a_constant_operand():
    # x * c / c: the two paths into c cancel exactly
    x = distnet.Variable([1.0, 2.0])
    c = distnet.constant([3.0, 4.0])
    gx, gc = gradients(distnet.reduce_sum(x * c / c), [x, c])
    np.testing.assert_allclose(gx, [1.0, 1.0])
    np.testing.assert_allclose(gc, [0.0, 0.0], atol=1e-6)


def test_add_n_values_gradients_and_errors(rng):
    arrs = [rng.standard_normal((2, 3)) for _ in range(3)]
    np.testing.assert_allclose(distnet.add_n(arrs).numpy(), arrs[0] + arrs[1] + arrs[2], rtol=1e-15)
    check_gradients(lambda a, b, c: distnet.add_n([a, b * b, c]), arrs)
    x = distnet.Variable([1.0, 2.0])
    (g,) = gradients(distnet.reduce_sum(distnet.add_n([x, x, x * 2.0])), [x])
    np.testing.assert_array_equal(g, [4.0, 4.0])
    assert distnet.add_n([x]) is x
    # seed 004: loss = add_n([base_loss] + regularization_losses)
    total = distnet.add_n([distnet.constant(1.5), distnet.constant(0.25), 0.25])
    assert total.dtype == np.float32 and float(total) == 2.0
    with pytest.raises(ShapeError, match=r"Expect: \(2,\) Actual: \(3,\) at inputs\[1\]"):
        distnet.add_n([np.ones(2, np.float32), np.ones(3, np.float32)])
    with pytest.raises(DTypeError, match=r"float32 Actual: float64 at inputs\[1\]"):
        distnet.add_n([distnet.constant([1.0]), distnet.constant(np.ones(1))])
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        distnet.add_n([])


# -- sign ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sign_values_keep_the_float_dtype(dtype):
    x = np.array([-2.5, -1e-30, -0.0, 0.0, 1e-30, 7.0, -np.inf, np.inf], dtype)
    s = distnet.sign(distnet.constant(x))
    assert s.dtype == dtype
    np.testing.assert_array_equal(s.numpy(), [-1, -1, 0, 0, 1, 1, -1, 1])


def test_sign_of_nan_is_nan():
    s = distnet.sign(distnet.constant([np.nan, -1.0, np.nan])).numpy()
    assert np.isnan(s[0]) and np.isnan(s[2]) and s[1] == -1.0


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int8])
def test_sign_of_integers_is_integer(dtype):
    s = distnet.sign(np.array([-5, 0, 3], dtype))
    assert s.dtype == dtype
    np.testing.assert_array_equal(s.numpy(), [-1, 0, 1])
    assert distnet.sign([-3, 0, 9]).dtype == np.int32   # a Python list of ints is int32 (TF1)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)])
def test_sign_float64_gradient_check_gives_zeros(shape, rng):
    # Away from 0 the finite differences of sign are 0; TF1 defines the
    # gradient as zeros everywhere.
    x = rng.standard_normal(shape)
    x = np.sign(x) * (np.abs(x) + 0.1)
    check_gradients(distnet.sign, [x])
    t = distnet.constant(x)
    (g,) = gradients(distnet.reduce_sum(distnet.sign(t) * 3.0), [t])
    np.testing.assert_array_equal(g, np.zeros(shape))
    assert g.dtype == np.float64


def test_sign_gradient_is_connected_zeros_even_at_zero():
    x = distnet.Variable([-2.0, 0.0, 3.0])
    # TF1 (_SignGrad): zeros, not "unconnected": "none" still gives an array.
    (g,) = gradients(distnet.reduce_sum(distnet.sign(x)), [x], unconnected_gradients="none")
    assert g is not None
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0])


def test_x_times_sign_x_is_abs_with_gradient_sign(rng):
    x = distnet.Variable([-2.0, 0.5, 3.0])
    y = x * distnet.sign(x)
    np.testing.assert_array_equal(y.numpy(), [2.0, 0.5, 3.0])
    (g,) = gradients(distnet.reduce_sum(y), [x])
    np.testing.assert_array_equal(g, [-1.0, 1.0, 1.0])   # sign(x) + x * 0
    a = rng.standard_normal((3, 2))
    check_gradients(lambda t: t * distnet.sign(t), [np.sign(a) * (np.abs(a) + 0.1)])


def test_sign_rejects_bool():
    with pytest.raises(DTypeError, match=r"sign: Expect: an integer or floating tensor Actual: bool"):
        distnet.sign(np.array([True, False]))
