"""bias_add_relu: bitwise relu(bias_add(...)), forward and both gradients; a layer with a bias and
relu runs it; gradient check; known values."""
import sys

import numpy as np
import pytest

import distnet
from distnet import layers, nn
from distnet.gradcheck import check_gradients

module = sys.modules["distnet.nn.bias_add_relu"]   # distnet.nn.bias_add_relu is the function


def _both(x, b, g):
    out = []
    for fn in (lambda a, c: nn.relu(nn.bias_add(a, c)), nn.bias_add_relu):
        xv, bv = distnet.Variable(x, name="x"), distnet.Variable(b, name="b")
        y = fn(xv, bv)
        dx, db = distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [xv, bv])
        out.append((y.numpy(), np.asarray(dx), np.asarray(db)))
    return out


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5), (4, 7, 6, 8), (300, 300), (2, 1, 1, 1)])
def test_bitwise_equal_to_the_two_ops(dtype, shape, monkeypatch):
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 64)   # several chunks, and a last partial one
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[::7] = 0.0   # the gradient at exactly 0 (after adding a zero bias below) is 0
    b = rng.standard_normal(shape[-1]).astype(dtype)
    b[0] = 0.0
    g = rng.standard_normal(shape).astype(dtype)
    (y0, dx0, db0), (y1, dx1, db1) = _both(x, b, g)
    for a, c in ((y0, y1), (dx0, dx1), (db0, db1)):
        assert a.dtype == c.dtype and a.shape == c.shape
        assert a.tobytes() == c.tobytes()   # bitwise, signed zeros included


def test_known_values():
    y = nn.bias_add_relu(np.array([[-1.0, 1.0, 0.25]], np.float32), [0.5, 0.5, -0.25]).numpy()
    np.testing.assert_array_equal(y, np.array([[0.0, 1.5, 0.0]], np.float32))


def test_gradients_float64():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 3, 5))
    x[np.abs(x) < 0.05] = 0.3   # keep away from the kink, where finite differences mislead
    check_gradients(lambda a, b: nn.bias_add_relu(a, b), [x, np.zeros(5)])


def test_bad_input_gets_bias_adds_errors():
    with pytest.raises(distnet.errors.ShapeError, match="bias length"):
        nn.bias_add_relu(np.ones((2, 3), np.float32), [1.0, 2.0])


def test_layers_with_bias_and_relu_use_it_and_give_the_same_bits():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    model = distnet.Sequential([layers.Conv2D(3, 3, padding="same", activation="relu"), layers.Flatten(),
                                layers.Dense(4, activation="relu")], input_shape=(6, 6, 2), seed=0)
    y = model(x)
    assert type(y._op).__name__ == "BiasAddRelu"
    conv, dense = model.layers[0], model.layers[2]
    h = nn.relu(nn.bias_add(nn.conv2d(x, conv.kernel, 1, "SAME"), conv.bias))
    ref = nn.relu(nn.bias_add(distnet.matmul(distnet.reshape(h, (4, -1)), dense.kernel), dense.bias))
    np.testing.assert_array_equal(y.numpy(), ref.numpy())
