"""conv2d_transpose and avg_pool: TF 2.21's recorded values, gradient checks, errors."""
import json
from pathlib import Path

import numpy as np
import pytest

import distnet
from distnet import nn
from distnet.errors import DTypeError, ShapeError
from distnet.gradcheck import check_gradients

TF = json.loads((Path(__file__).parent / "tf_reference" / "nn_values.json").read_text())


def draw(seed, *shape):
    """As tests/tf_reference/record_nn.py draws its inputs."""
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


@pytest.mark.parametrize("case", TF["conv2d_transpose"], ids=lambda c: f"{c['output_shape']}-{c['padding']}")
def test_conv2d_transpose_matches_tf(case):
    x, w, r = draw(7, *case["input_shape"]), draw(8, *case["filter_shape"]), draw(9, *case["output_shape"])
    xt, wt = distnet.constant(x), distnet.constant(w)
    y = nn.conv2d_transpose(xt, wt, case["output_shape"], [1, case["strides"], case["strides"], 1], case["padding"])
    np.testing.assert_allclose(y.numpy(), case["y"], rtol=1e-5, atol=1e-5)
    dx, dw = distnet.gradients(distnet.reduce_sum(y * distnet.constant(r)), [xt, wt])
    np.testing.assert_allclose(dx, case["dx"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, case["dw"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", TF["conv2d_transpose"], ids=lambda c: f"{c['output_shape']}-{c['padding']}")
def test_conv2d_transpose_gradient_check(case):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(case["input_shape"]), rng.standard_normal(case["filter_shape"])
    check_gradients(lambda x, w: nn.conv2d_transpose(x, w, case["output_shape"], case["strides"], case["padding"]),
                    [x, w])


def test_conv2d_transpose_is_the_adjoint_of_conv2d():
    """<conv2d(y, w), x> == <y, conv2d_transpose(x, w)> for every y and x."""
    rng = np.random.default_rng(1)
    y, w = rng.standard_normal((2, 7, 6, 3)), rng.standard_normal((3, 3, 3, 4))
    c = nn.conv2d(y, w, 2, "SAME").numpy()
    x = rng.standard_normal(c.shape)
    t = nn.conv2d_transpose(x, w, y.shape, 2, "SAME").numpy()
    assert np.isclose(np.sum(c * x), np.sum(y * t), rtol=1e-12)


def test_conv2d_transpose_errors():
    x, w = np.ones((1, 3, 3, 4), np.float32), np.ones((3, 3, 2, 4), np.float32)
    with pytest.raises(ShapeError, match="gives 3x3, not value's"):
        nn.conv2d_transpose(np.ones((1, 2, 2, 4), np.float32), w, [1, 6, 6, 2], 2, "SAME")
    with pytest.raises(ShapeError, match="out channels"):
        nn.conv2d_transpose(x, w, [1, 6, 6, 3], 2, "SAME")
    with pytest.raises(ShapeError, match="value channels"):
        nn.conv2d_transpose(np.ones((1, 3, 3, 2), np.float32), w, [1, 6, 6, 2], 2, "SAME")
    with pytest.raises(ShapeError, match="4 positive ints"):
        nn.conv2d_transpose(x, w, [6, 6], 2, "SAME")
    with pytest.raises(DTypeError):
        nn.conv2d_transpose(distnet.constant(np.ones((1, 3, 3, 4), np.int32)), np.ones((3, 3, 2, 4), np.int32),
                            [1, 6, 6, 2], 2, "SAME")


@pytest.mark.parametrize("case", TF["avg_pool"], ids=lambda c: f"{c['shape']}-{c['ksize']}-{c['padding']}")
def test_avg_pool_matches_tf(case):
    x = draw(5, *case["shape"])
    xt = distnet.constant(x)
    y = nn.avg_pool(xt, case["ksize"], case["strides"], case["padding"])
    np.testing.assert_allclose(y.numpy(), case["y"], rtol=1e-6, atol=1e-6)
    r = draw(6, *y.shape)
    dx, = distnet.gradients(distnet.reduce_sum(y * distnet.constant(r)), [xt])
    np.testing.assert_allclose(dx, case["dx"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", TF["avg_pool"], ids=lambda c: f"{c['shape']}-{c['ksize']}-{c['padding']}")
def test_avg_pool_gradient_check(case):
    x = np.random.default_rng(2).standard_normal(case["shape"])
    check_gradients(lambda x: nn.avg_pool(x, case["ksize"], case["strides"], case["padding"]), [x])


def test_avg_pool_same_averages_real_pixels_only():
    x = distnet.constant(np.arange(9.0).reshape(1, 3, 3, 1))
    out = nn.avg_pool(x, 2, 2, "SAME").numpy()[0, :, :, 0]
    np.testing.assert_array_equal(out, [[2.0, 3.5], [6.5, 8.0]])


def test_avg_pool_errors():
    with pytest.raises(ShapeError, match="rank 4"):
        nn.avg_pool(np.ones((3, 3), np.float32), 2, 2, "SAME")
    with pytest.raises(DTypeError):
        nn.avg_pool(distnet.constant(np.ones((1, 2, 2, 1), np.int32)), 2, 2, "SAME")
    with pytest.raises(ShapeError, match="VALID"):
        nn.avg_pool(np.ones((1, 2, 2, 1), np.float32), 3, 1, "VALID")
