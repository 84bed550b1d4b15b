"""relu, sigmoid, tanh, softmax, log_softmax: values, gradients, stability, errors."""
import numpy as np
import pytest

import distnet
from distnet import nn
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients


def away_from_zero(rng, shape):
    """Random values with |x| >= 0.1, so relu's kink is never within eps."""
    x = rng.uniform(0.1, 2.0, shape)
    return x * rng.choice([-1.0, 1.0], shape)


def test_relu_values_and_gradient_at_zero():
    x = distnet.Variable(np.array([-2.0, 0.0, 3.0]))
    y = nn.relu(x)
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 3.0])
    (g,) = distnet.gradients(distnet.reduce_sum(y), [x])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])  # TF: 0 at exactly 0


def test_sigmoid_and_tanh_values():
    x = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(nn.sigmoid(x).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(nn.tanh(x).numpy(), np.tanh(x), rtol=1e-14)


def test_softmax_and_log_softmax_values():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    e = np.exp(x)
    expected = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(nn.softmax(x).numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(nn.log_softmax(x).numpy(), np.log(expected), rtol=1e-14)
    np.testing.assert_allclose(nn.softmax(x, axis=0).numpy(), e / e.sum(axis=0, keepdims=True), rtol=1e-14)


@pytest.mark.parametrize("fn", [nn.relu, nn.sigmoid, nn.tanh])
def test_elementwise_gradients_float64(fn):
    rng = np.random.default_rng(0)
    check_gradients(fn, [away_from_zero(rng, (3, 4))])


@pytest.mark.parametrize("fn", [nn.softmax, nn.log_softmax])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_gradients_float64(fn, axis):
    rng = np.random.default_rng(1)
    check_gradients(lambda t: fn(t, axis=axis), [rng.standard_normal((3, 4, 2))])


def test_stable_for_large_magnitudes():
    x = distnet.Variable(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32))
    for fn in (nn.sigmoid, nn.tanh, nn.softmax, nn.log_softmax):
        y = fn(x)
        assert np.all(np.isfinite(y.numpy())), fn.__name__
        (g,) = distnet.gradients(distnet.reduce_sum(y * np.arange(6.0, dtype=np.float32).reshape(2, 3)), [x])
        assert np.all(np.isfinite(g)), fn.__name__
    np.testing.assert_array_equal(nn.sigmoid(x).numpy()[0], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(nn.softmax(x).numpy()[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(nn.log_softmax(x).numpy()[0], [0.0, -2e4, -1e4])


def test_dtype_is_kept():
    x = np.ones((2, 3), np.float32)
    for fn in (nn.relu, nn.sigmoid, nn.tanh, nn.softmax, nn.log_softmax):
        assert fn(x).dtype == np.float32
        assert fn(x.astype(np.float64)).dtype == np.float64


def test_errors():
    with pytest.raises(DTypeError, match="floating"):
        nn.sigmoid(np.array([1, 2], np.int32))
    with pytest.raises(DTypeError, match="floating"):
        nn.softmax([1, 2])
    with pytest.raises(InvalidArgumentError, match="out of range"):
        nn.softmax(np.zeros((2, 3)), axis=2)
    with pytest.raises(InvalidArgumentError, match="one int"):
        nn.log_softmax(np.zeros((2, 3)), axis=(0, 1))
    with pytest.raises(ShapeError, match="scalar"):
        nn.softmax(np.float64(1.0))


def test_leaky_relu_is_tf_and_gradient_checked():
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "tf_reference" / "recurrent_values.json").read_text())["leaky_relu"]
    x = distnet.Variable(np.array(ref["x"], np.float32))
    y = nn.leaky_relu(x)
    np.testing.assert_allclose(y.numpy(), ref["y"], rtol=1e-7)
    (g,) = distnet.gradients(distnet.reduce_sum(y), [x])
    np.testing.assert_array_equal(g, ref["grad"])   # TF 2.21: alpha at exactly 0
    np.testing.assert_allclose(nn.leaky_relu(np.array([-2.0, 1.0]), alpha=0.5).numpy(), [-1.0, 1.0])
    rng = np.random.default_rng(5)
    check_gradients(lambda t: nn.leaky_relu(t, alpha=0.1), [away_from_zero(rng, (3, 4))])
    assert nn.leaky_relu(np.ones(2, np.float64)).dtype == np.float64
    with pytest.raises(InvalidArgumentError, match="leaky_relu: Expect: alpha a number"):
        nn.leaky_relu([1.0], alpha="0.1")
    with pytest.raises(DTypeError):
        nn.leaky_relu(np.array([1, 2]))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_times_mask_is_bitwise_g_times_mask(dtype):
    from distnet.nn.activations import times_mask

    rng = np.random.default_rng(9)
    g = rng.standard_normal((3, 5, 7)).astype(dtype)
    g[0, 0, :3] = [np.inf, -np.inf, np.nan]
    mask = rng.standard_normal((3, 5, 7)) > 0
    mask[0, 0, :3] = False   # inf * 0 and nan * 0 are NaN, as in g * mask
    with np.errstate(invalid="ignore"):
        want = g * mask
        got = times_mask(g, mask)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()   # -0.0 where g < 0 and the mask is off
    assert times_mask(np.float32(-2.0), np.array(False)).tobytes() == (np.float32(-2.0) * np.array(False)).tobytes()
