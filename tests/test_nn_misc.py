"""l2_loss and bias_add: seed numbers, gradients, errors; the nn namespace."""
import numpy as np
import pytest

import distnet
from distnet import nn
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients


def test_l2_loss_seed_number():
    # MISSION / seeds: tf.nn.l2_loss([[1,2,3],[4,5,6]]) = (1+4+9+16+25+36)/2 = 45.5
    out = nn.l2_loss([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert out.shape == () and out.dtype == np.float32
    assert out.numpy() == 45.5
    w = np.array([[5.0, -2.0], [-3.0, 1.0]])
    assert nn.l2_loss(w).numpy() == 19.5


def test_l2_loss_gradient():
    rng = np.random.default_rng(0)
    check_gradients(nn.l2_loss, [rng.standard_normal((3, 4, 2))])
    w = distnet.Variable(np.array([[5.0, -2.0], [-3.0, 1.0]]))
    (g,) = distnet.gradients(nn.l2_loss(w), [w])
    np.testing.assert_array_equal(g, w.numpy())


def test_l2_loss_rejects_integers():
    with pytest.raises(DTypeError, match="floating"):
        nn.l2_loss(np.array([1, 2], np.int32))


def test_bias_add_values_and_gradients():
    rng = np.random.default_rng(1)
    v, b = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal(4)
    np.testing.assert_array_equal(nn.bias_add(v, b).numpy(), v + b)
    check_gradients(nn.bias_add, [v, b])
    check_gradients(lambda x, y: nn.bias_add(x, y, data_format="NCHW"), [rng.standard_normal((2, 3, 4, 2)),
                                                                       rng.standard_normal(3)])
    vt, bt = distnet.Variable(v), distnet.Variable(b)
    gv, gb = distnet.gradients(distnet.reduce_sum(nn.bias_add(vt, bt)), [vt, bt])
    np.testing.assert_array_equal(gv, np.ones_like(v))
    np.testing.assert_array_equal(gb, np.full(4, 18.0))


def test_bias_add_nchw_adds_on_axis_1():
    v = np.zeros((1, 2, 2, 2))
    out = nn.bias_add(v, np.array([1.0, 2.0]), data_format="NCHW").numpy()
    np.testing.assert_array_equal(out[0, 0], np.ones((2, 2)))
    np.testing.assert_array_equal(out[0, 1], np.full((2, 2), 2.0))


def test_bias_add_errors():
    with pytest.raises(ShapeError, match=r"Expect: 4 Actual: 3"):
        nn.bias_add(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ShapeError, match="1-D"):
        nn.bias_add(np.zeros((2, 4)), np.zeros((1, 4)))
    with pytest.raises(ShapeError, match="at least 2-D"):
        nn.bias_add(np.zeros(4), np.zeros(4))
    with pytest.raises(InvalidArgumentError, match="data_format"):
        nn.bias_add(np.zeros((2, 4)), np.zeros(4), data_format="HWCN")
    with pytest.raises(DTypeError):
        nn.bias_add(distnet.constant(np.zeros((2, 4), np.float32)), distnet.constant(np.zeros(4)))


def test_bias_add_keeps_float32():
    out = nn.bias_add(np.zeros((2, 3), np.float32), [1.0, 2.0, 3.0])
    assert out.dtype == np.float32


def test_every_op_is_in_the_namespace():
    for name in ("relu", "sigmoid", "tanh", "softmax", "log_softmax", "l2_loss", "bias_add", "dropout",
                 "dropout_sample_keys", "conv2d", "max_pool", "softmax_cross_entropy_with_logits",
                 "sparse_softmax_cross_entropy_with_logits"):
        assert callable(getattr(nn, name)), name
        assert name in nn.__all__


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_add_large_bias_gradient_matches_plain_sum(dtype):
    # From _GEMV_ROWS rows on the bias gradient is a gemv with ones: the same sum in another
    # order, so it equals the plain reduction up to rounding (float32: relative 1e-5 over
    # 3136 terms of size ~1; float64: 1e-12).
    rng = np.random.default_rng(7)
    g = rng.standard_normal((4, 28, 28, 5)).astype(dtype)
    v = distnet.Variable(np.zeros_like(g))
    b = distnet.Variable(np.zeros(5, dtype))
    y = nn.bias_add(v, b)
    _, gb = distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [v, b])
    assert gb.dtype == dtype
    expected = g.astype(np.float64).reshape(-1, 5).sum(axis=0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gb, expected, rtol=tol, atol=tol * np.abs(g).sum(axis=(0, 1, 2)).max())
    # Below the threshold the plain reduction runs: bitwise the numpy sum.
    small = g[:1, :8, :8]
    vs = distnet.Variable(np.zeros_like(small))
    _, gbs = distnet.gradients(distnet.reduce_sum(nn.bias_add(vs, b) * distnet.constant(small)), [vs, b])
    np.testing.assert_array_equal(gbs, small.reshape(-1, 5).sum(axis=0))


def test_bias_add_gradient_check_on_the_gemv_path():
    rng = np.random.default_rng(8)
    check_gradients(nn.bias_add, [rng.standard_normal((3, 10, 10, 2)), rng.standard_normal(2)])


def test_l2_loss_of_a_large_float32_kernel_is_accurate():
    # A dense kernel's worth of float32 weights: one float32 dot product is off
    # by ~4e-5 relative here; the chunked float64 accumulation must not be.
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(6_422_528) * 0.05).astype(np.float32)
    exact = float(np.sum(w.astype(np.float64) ** 2) / 2)
    got = float(nn.l2_loss(w).numpy())
    assert abs(got - exact) / exact < 1e-6, (got, exact)
    # Small arrays take one dot product: seed numbers unchanged.
    assert nn.l2_loss([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).numpy() == 45.5
