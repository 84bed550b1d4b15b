"""Layers: forward against numpy, output shapes, lazy building, dropout, float64 gradient checks, errors."""
import numpy as np
import pytest

import distnet
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients
from distnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, get_activation
from distnet.model.models import Sequential


def test_dense_forward_matches_numpy():
    layer = Dense(3, activation="relu", bias_initializer=distnet.model.initializers.constant(0.5))
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


@pytest.mark.parametrize("activation", ["relu", "tanh", None])
def test_layers_release_their_result_before_the_bias(activation):
    """The graph keeps a layer's matmul/convolution result (the bias op's input) only as its shape
    and dtype: no backward reads its values, and the gradients are the same."""
    from distnet.nn.bias_add import BiasAdd
    from distnet.nn.bias_add_relu import BiasAddRelu

    rng = np.random.default_rng(4)
    model = Sequential([Conv2D(2, 3, padding="same", activation=activation), Flatten(), Dense(3, activation=activation)],
                       input_shape=(4, 4, 1), dtype=np.float64, seed=1)
    x = rng.standard_normal((2, 4, 4, 1))
    out = model(distnet.constant(x))
    released, node = [], out
    while node._parents:   # the chain back to the input: the bias ops' inputs
        if isinstance(node._op, BiasAddRelu if activation == "relu" else BiasAdd):
            released.append(node._parents[0].data)
        node = node._parents[0]
    assert [(a.shape, a.dtype, set(a.strides)) for a in released] == [
        ((2, 3), np.float64, {0}), ((2, 4, 4, 2), np.float64, {0})]
    check_gradients(lambda t: model(t), [x])


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


# -- batch normalization, average pooling, transposed convolution, reshape -----------------

import json  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from distnet import registry  # noqa: E402
from distnet.layers import AvgPool2D, BatchNorm, Conv2DTranspose, GlobalAvgPool2D, Reshape  # noqa: E402

TF_NN = json.loads((Path(__file__).parent / "tf_reference" / "nn_values.json").read_text())


def test_batch_norm_variables_training_and_inference():
    layer = BatchNorm(momentum=0.9)
    x = np.random.default_rng(4).standard_normal((6, 3, 3, 2)).astype(np.float32) * 2 + 1
    y = layer(x, training=True).numpy()
    assert [v.name for v in layer.variables] == ["batch_normalization/gamma", "batch_normalization/beta",
                                                 "batch_normalization/moving_mean",
                                                 "batch_normalization/moving_variance"]
    assert [v.name for v in layer.trainable_variables] == ["batch_normalization/gamma", "batch_normalization/beta"]
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    n = 6 * 3 * 3
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    assert layer.moving_mean.version == 1
    before = layer.moving_mean.numpy().copy()
    y_inf = layer(x, training=False).numpy()
    np.testing.assert_array_equal(layer.moving_mean.numpy(), before)   # inference leaves them alone
    np.testing.assert_allclose(y_inf, (x - before) / np.sqrt(layer.moving_variance.numpy() + 1e-3), rtol=1e-5,
                               atol=1e-5)


def test_batch_norm_matches_tf_layers_on_images():
    """tests/tf_reference's values of tf.layers.batch_normalization on a 4-D input: output, moving
    statistics (fed the unbiased variance, as TF's fused kernel) and inference afterwards."""
    case = TF_NN["bn4"]
    x = (np.random.RandomState(1).randn(*case["shape"]) * 2.0 + 1.0).astype(np.float32)
    gamma = np.random.RandomState(3).randn(2).astype(np.float32) * 0.5 + 1.0
    beta = np.random.RandomState(4).randn(2).astype(np.float32)
    layer = BatchNorm(momentum=0.9, gamma_initializer=lambda shape, dtype, rng: gamma,
                      beta_initializer=lambda shape, dtype, rng: beta)
    np.testing.assert_allclose(layer(x, training=True).numpy(), case["layer"]["y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), case["layer"]["moving_mean"], rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), case["layer"]["moving_variance"], rtol=1e-6)
    np.testing.assert_allclose(layer(x).numpy(), case["layer"]["y_inference_after_one_update"], rtol=1e-5,
                               atol=1e-5)


def _bn_model(synchronized=True):
    return Sequential([Conv2D(3, 3, padding="same"), BatchNorm(momentum=0.5, synchronized=synchronized),
                       AvgPool2D(2), Flatten(), Dense(4)], input_shape=(4, 4, 2), dtype=np.float64, seed=3)


def _model_grads(model, x, y_onehot, scale):
    out = model(x, training=True)
    loss = distnet.reduce_sum(distnet.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=out)) * scale
    return distnet.gradients(loss, model.trainable_variables)


@pytest.mark.parametrize("workers", [2, 3])
def test_batch_norm_layer_synchronized_over_simulated_workers_equals_one(workers):
    """The Trainer's convention: each worker's loss is its share ``sum / global batch`` and the
    gradients are summed (combine "sum"); the threads' all-reduce stands for the communicator."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 4, 4, 2)) * 2 + 0.5
    y = np.eye(4)[rng.integers(0, 4, 10)]
    one = _bn_model()
    g1 = _model_grads(one, x, y, 1.0 / 10)
    models = [_bn_model() for _ in range(workers)]
    slots, barrier = [None] * workers, threading.Barrier(workers, timeout=30)

    def reducer(k):
        def reduce(vec):
            slots[k] = vec.copy()
            barrier.wait()
            total = sum(slots[1:], slots[0].copy())
            barrier.wait()
            return total
        return reduce

    parts = np.array_split(np.arange(10), workers)
    grads = [None] * workers

    def work(k):
        models[k].layers[1].set_reducer(reducer(k), combine="sum")
        grads[k] = _model_grads(models[k], x[parts[k]], y[parts[k]], 1.0 / 10)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    for i, v in enumerate(one.trainable_variables):
        np.testing.assert_allclose(sum(g[i] for g in grads), g1[i], rtol=1e-10, atol=1e-12, err_msg=v.name)
    for m in models:
        np.testing.assert_allclose(m.get_variable("batch_normalization/moving_variance").numpy(),
                                   one.get_variable("batch_normalization/moving_variance").numpy(), rtol=1e-12)


def test_batch_norm_synchronized_false_ignores_the_reducer():
    layer = BatchNorm(synchronized=False)
    calls = []
    layer.set_reducer(lambda v: calls.append(1) or v * 2)
    layer(np.ones((2, 3), np.float32), training=True)
    assert calls == []
    layer2 = BatchNorm()
    layer2.set_reducer(lambda v: calls.append(1) or v)
    layer2(np.ones((2, 3), np.float32), training=True)
    assert calls == [1]


@pytest.mark.parametrize("h, k, s, pad, out", TF_NN["conv2d_transpose_layer_sizes"])
def test_conv2d_transpose_output_size_is_tf_layers(h, k, s, pad, out):
    layer = Conv2DTranspose(2, k, strides=s, padding=pad)
    y = layer(np.zeros((1, h, h, 1), np.float32))
    assert y.shape == (1, out, out, 2) and layer.kernel.shape == (k, k, 2, 1)


def test_pooling_and_reshape_layers():
    x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    np.testing.assert_allclose(AvgPool2D(2, padding="same")(x).numpy(),
                               distnet.nn.avg_pool(x, 2, 2, "SAME").numpy())
    assert AvgPool2D(2)(x).shape == (2, 2, 2, 3)
    np.testing.assert_allclose(GlobalAvgPool2D()(x).numpy(), x.mean(axis=(1, 2)), rtol=1e-6)
    assert Reshape((25, -1))(x).shape == (2, 25, 3)
    np.testing.assert_array_equal(Reshape((75,))(x).numpy(), x.reshape(2, 75))
    with pytest.raises(ShapeError, match="not a multiple"):
        Reshape((4, -1))(x)
    with pytest.raises(ShapeError, match="Expect: a target_shape of 75 values"):
        Reshape((5, 5))(x)
    with pytest.raises(InvalidArgumentError, match="at most one -1"):
        Reshape((-1, -1))
    with pytest.raises(InvalidArgumentError, match="momentum"):
        BatchNorm(momentum=1.5)
    with pytest.raises(InvalidArgumentError, match="epsilon"):
        BatchNorm(epsilon=0)
    with pytest.raises(InvalidArgumentError, match="batch axis"):
        BatchNorm(axis=0)


def test_new_layers_gradients_float64():
    rng = np.random.default_rng(7)
    model = Sequential([Conv2DTranspose(2, 3, strides=2, padding="same", activation="tanh"), BatchNorm(),
                        AvgPool2D(3, strides=2, padding="same"), Reshape((-1,)), Dense(3), BatchNorm(axis=1)],
                       input_shape=(3, 3, 2), dtype=np.float64, seed=2)
    check_gradients(lambda t: model(t, training=True), [rng.standard_normal((3, 3, 3, 2))])
    pool = Sequential([GlobalAvgPool2D()], input_shape=(3, 4, 2), dtype=np.float64)
    check_gradients(lambda t: pool(t), [rng.standard_normal((2, 3, 4, 2))])
    # and with respect to the transposed convolution's kernel and the normalization's gamma
    conv, bn = model.layers[0], model.layers[1]
    x = distnet.constant(rng.standard_normal((3, 3, 3, 2)))

    def f(w, gamma):
        from distnet.nn.batch_norm import batch_norm_train
        h = distnet.nn.conv2d_transpose(x, w, (3, 6, 6, 2), 2, "SAME")
        return batch_norm_train(h, gamma, bn.beta, epsilon=1e-3).output

    check_gradients(f, [conv.kernel.numpy().copy(), rng.random(2) + 0.5])


def test_job_files_name_the_new_layers():
    made = [registry.make("layer", spec) for spec in (
        {"type": "batch_norm", "momentum": 0.9, "synchronized": False},
        {"type": "avg_pool2d", "pool_size": 3, "padding": "same"},
        {"type": "global_avg_pool2d"},
        {"type": "conv2d_transpose", "filters": 4, "kernel_size": 3, "strides": 2},
        {"type": "reshape", "target_shape": [7, 7, 1]})]
    assert [type(m).__name__ for m in made] == ["BatchNorm", "AvgPool2D", "GlobalAvgPool2D", "Conv2DTranspose",
                                                "Reshape"]
    assert made[0].momentum == 0.9 and not made[0].synchronized and made[4].target_shape == (7, 7, 1)


def test_a_job_file_with_the_new_layers_validates_and_builds():
    from distnet.jobs.config import parse_job
    from distnet.jobs.job import build_model

    cfg = parse_job('''
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
padding = "same"
[[model.layers]]
type = "batch_norm"
momentum = 0.9
synchronized = false
[[model.layers]]
type = "avg_pool2d"
padding = "same"
[[model.layers]]
type = "conv2d_transpose"
filters = 3
kernel_size = 3
strides = 2
padding = "same"
[[model.layers]]
type = "global_avg_pool2d"
[[model.layers]]
type = "dense"
units = 10
''')
    model = build_model(cfg)
    model.build((None, 28, 28, 1))
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "BatchNorm", "AvgPool2D", "Conv2DTranspose", "GlobalAvgPool2D", "Dense"]
    assert model.layers[1].momentum == 0.9 and not model.layers[1].synchronized
    assert model.output_shape == (10,)
    assert "batch_normalization/moving_mean" in [v.name for v in model.variables]
    assert "batch_normalization/moving_mean" not in [v.name for v in model.trainable_variables]
