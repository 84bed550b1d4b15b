"""Layers: forward against numpy, output shapes, lazy building, dropout, float64 gradient checks, errors."""
import numpy as np
import pytest

import distnet
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients
from distnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, get_activation
from distnet.models import Sequential


def test_dense_forward_matches_numpy():
    layer = Dense(3, activation="relu", bias_initializer=distnet.initializers.constant(0.5))
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    y = layer(x)                                  # built lazily from (5,)
    assert layer.built and layer.input_shape == (5,) and layer.output_shape == (3,)
    assert layer.kernel.name == "dense/kernel" and layer.bias.name == "dense/bias"
    want = np.maximum(x @ layer.kernel.numpy() + 0.5, 0)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)
    assert y.dtype == np.float32


@pytest.mark.parametrize("act, fn", [
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
    ("tanh", np.tanh),
    ("softmax", lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)),
    (None, lambda z: z),
    (lambda t: t * 2.0, lambda z: 2 * z),
])
def test_activations(act, fn):
    layer = Dense(4, activation=act, use_bias=False)
    x = np.random.default_rng(1).standard_normal((3, 2))
    y = layer(x.astype(np.float32))
    assert layer.bias is None and len(layer.variables) == 1
    np.testing.assert_allclose(y.numpy(), fn(x.astype(np.float32) @ layer.kernel.numpy()), rtol=1e-5, atol=1e-6)


def test_conv2d_shapes_and_forward():
    x = np.random.default_rng(2).standard_normal((2, 7, 6, 3)).astype(np.float32)
    same = Conv2D(4, 3, padding="same")
    assert same(x).shape == (2, 7, 6, 4)
    assert same.kernel.shape == (3, 3, 3, 4) and same.bias.shape == (4,)
    valid = Conv2D(5, (3, 2), strides=2)
    y = valid(x)
    assert y.shape == (2, 3, 3, 5) == (2,) + valid.output_shape
    want = distnet.nn.conv2d(distnet.constant(x), valid.kernel, strides=2, padding="VALID").numpy() + valid.bias.numpy()
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)
    # a naive check of one output pixel
    k = valid.kernel.numpy()
    pix = np.sum(x[1, 2:5, 4:6, :, None] * k, axis=(0, 1, 2))
    np.testing.assert_allclose(y.numpy()[1, 1, 2], pix, rtol=1e-5, atol=1e-6)


def test_max_pool_and_flatten():
    x = np.arange(2 * 5 * 5 * 2, dtype=np.float32).reshape(2, 5, 5, 2)
    pool = MaxPool2D()
    y = pool(x)
    assert y.shape == (2, 2, 2, 2)
    assert y.numpy()[0, 0, 0, 0] == x[0, :2, :2, 0].max()
    assert MaxPool2D(2, padding="same")(x).shape == (2, 3, 3, 2)
    assert MaxPool2D(3, strides=1)(x).shape == (2, 3, 3, 2)
    f = Flatten()
    z = f(x)
    assert z.shape == (2, 50) and f.output_shape == (50,)
    np.testing.assert_array_equal(z.numpy(), x.reshape(2, -1))
    assert not pool.variables and not f.variables


def test_dropout_only_when_training():
    x = np.ones((8, 100), dtype=np.float32)
    d = Dropout(0.5)
    np.testing.assert_array_equal(d(x, training=False).numpy(), x)
    y = d(x, training=True, rng=np.random.default_rng(0)).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.4 < np.mean(y == 0) < 0.6
    keys = np.arange(8, dtype=np.uint64)
    a = d(x, training=True, sample_keys=keys).numpy()
    b = d(x[3:5], training=True, sample_keys=keys[3:5]).numpy()
    np.testing.assert_array_equal(a[3:5], b)
    with pytest.raises(InvalidArgumentError, match="random source"):
        d(x, training=True)


def test_layer_gradients_float64():
    rng = np.random.default_rng(3)
    model = Sequential([Conv2D(2, 3, padding="same", activation="tanh"), MaxPool2D(2), Flatten(),
                        Dense(3, activation="sigmoid")], input_shape=(4, 4, 1), dtype=np.float64, seed=1)
    x = rng.standard_normal((2, 4, 4, 1))
    check_gradients(lambda t: model(t), [x])
    k = model.get_variable("dense/kernel")
    # gradient w.r.t. a kernel: substitute the tensor for the variable's value
    dense = model.layers[-1]

    def f(w):
        h = model.layers[2](model.layers[1](model.layers[0](distnet.constant(x))))
        return distnet.nn.sigmoid(distnet.nn.bias_add(distnet.matmul(h, w), dense.bias))

    check_gradients(f, [k.numpy().copy()])


def test_errors():
    with pytest.raises(InvalidArgumentError, match="units"):
        Dense(0)
    with pytest.raises(InvalidArgumentError, match="padding"):
        Conv2D(3, 3, padding="full")
    with pytest.raises(InvalidArgumentError, match="kernel_size"):
        Conv2D(3, (3, 0))
    with pytest.raises(InvalidArgumentError, match="rate"):
        Dropout(1.0)
    with pytest.raises(InvalidArgumentError, match="unknown activation 'gelu'"):
        get_activation("gelu")
    with pytest.raises(InvalidArgumentError, match="unknown initializer"):
        Dense(3, kernel_initializer="xavier")
    with pytest.raises(ShapeError, match="Flatten"):
        Dense(3)(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ShapeError, match="NHWC"):
        Conv2D(3, 3)(np.zeros((2, 4), np.float32))
    with pytest.raises(ShapeError, match="larger than the input"):
        Conv2D(3, 5)(np.zeros((1, 4, 4, 1), np.float32))
    layer = Dense(2)
    layer(np.zeros((1, 3), np.float32))
    with pytest.raises(ShapeError, match=r"Expect: input of shape \(batch, 3,\)"):
        layer(np.zeros((1, 4), np.float32))
    with pytest.raises(InvalidArgumentError, match="name"):
        Dense(2, name="a/b")
    with pytest.raises(DTypeError, match="floating"):
        Dense(2).build((3,), dtype=np.int32)
