"""Sequential: names, seeded weights, building, calling, dropout keys, summary, and training end to end."""
import numpy as np
import pytest

import distnet
from distnet.model import losses, regularizers
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from distnet.model.models import Sequential
from distnet.model.moving_averages import ExponentialMovingAverage
from distnet.optimizers import Adam, GradientDescent


def conv_net(seed=0, input_shape=(8, 8, 1)):
    return Sequential([Conv2D(4, 3, padding="same", activation="relu"), MaxPool2D(2), Conv2D(4, 3),
                       Flatten(), Dense(16, activation="relu"), Dropout(0.5), Dense(10)],
                      input_shape=input_shape, seed=seed)


def test_keras_names_counted_within_the_model():
    m = conv_net()
    assert [l.name for l in m.layers] == ["conv2d", "max_pooling2d", "conv2d_1", "flatten", "dense",
                                          "dropout", "dense_1"]
    assert [v.name for v in m.variables] == ["conv2d/kernel", "conv2d/bias", "conv2d_1/kernel", "conv2d_1/bias",
                                             "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    again = conv_net()  # no process-global counter: the same names again
    assert [v.name for v in again.variables] == [v.name for v in m.variables]


def test_explicit_names_and_duplicates():
    m = Sequential([Dense(3, name="dense_1"), Dense(3), Dense(2, name="out"), Dense(2)], input_shape=(4,))
    assert [l.name for l in m.layers] == ["dense_1", "dense", "out", "dense_2"]
    with pytest.raises(InvalidArgumentError, match=r"Found duplicates: \['hidden'\]"):
        Sequential([Dense(3, name="hidden"), Dense(3, name="hidden")])
    shared = Dense(3)
    Sequential([shared])
    with pytest.raises(InvalidArgumentError, match="another model"):
        Sequential([shared])


def test_same_seed_same_weights_different_seed_different():
    a, b, c = conv_net(seed=5), conv_net(seed=5), conv_net(seed=6)
    for va, vb in zip(a.variables, b.variables):
        assert va.name == vb.name
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert not np.array_equal(a.get_variable("dense/kernel").numpy(), c.get_variable("dense/kernel").numpy())


def test_lazy_build_equals_eager_build():
    eager = Sequential([Dense(4), Dense(2)], input_shape=(3,), seed=2)
    lazy = Sequential([Dense(4), Dense(2)], seed=2)
    assert not lazy.built and lazy.variables == []
    x = np.ones((5, 3), np.float32)
    np.testing.assert_array_equal(lazy(x).numpy(), eager(x).numpy())
    built = Sequential([Dense(4), Dense(2)], seed=2)
    built.build((None, 3))
    np.testing.assert_array_equal(built.get_variable("dense_1/kernel").numpy(),
                                  eager.get_variable("dense_1/kernel").numpy())
    with pytest.raises(ShapeError, match=r"built for inputs of shape \(3,\)"):
        built.build((4,))


def test_variables_trainable_and_get_variable():
    m = conv_net()
    assert m.trainable_variables == m.variables
    assert m.get_variable("conv2d_1/bias").shape == (4,)
    with pytest.raises(InvalidArgumentError, match="no variable named 'dense_9/kernel'"):
        m.get_variable("dense_9/kernel")


def test_summary_counts():
    m = Sequential([Dense(5, activation="relu"), Dense(3)], input_shape=(4,))
    lines = []
    text = m.summary(print_fn=lines.append)
    assert lines == [text]
    assert "dense (Dense)" in text and "(None, 5)" in text
    assert "Total params: 43" in text  # 4*5+5 + 5*3+3
    assert m.count_params() == 43
    with pytest.raises(InvalidArgumentError, match="not built"):
        Sequential([Dense(2)]).summary()


def test_call_validation():
    m = conv_net()
    with pytest.raises(ShapeError, match=r"Expect: input of shape \(batch, 8, 8, 1\) Actual: \(2, 8, 8, 3\)"):
        m(np.zeros((2, 8, 8, 3)))
    with pytest.raises(DTypeError, match="float32"):
        m(distnet.constant(np.zeros((2, 8, 8, 1))))   # a float64 Tensor
    with pytest.raises(DTypeError, match="uint64"):
        m(np.zeros((2, 8, 8, 1)), training=True, dropout_keys=np.arange(2))
    with pytest.raises(ShapeError, match="one key per sample"):
        m(np.zeros((2, 8, 8, 1)), training=True, dropout_keys=np.arange(3, dtype=np.uint64))
    with pytest.raises(InvalidArgumentError, match="seed"):
        Sequential([Dense(2)], seed=-1)


def test_dropout_training_flag_and_keys_independent_of_batch_split():
    m = conv_net()
    x = np.random.default_rng(0).random((6, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(m(x).numpy(), m(x, training=False).numpy())
    t1, t2 = m(x, training=True).numpy(), m(x, training=True).numpy()
    assert not np.array_equal(t1, t2)          # the model's Generator advances
    keys = np.array([11, 5, 7, 2, 99, 3], dtype=np.uint64)
    full = m(x, training=True, dropout_keys=keys).numpy()
    split = np.concatenate([m(x[:1], training=True, dropout_keys=keys[:1]).numpy(),
                            m(x[1:], training=True, dropout_keys=keys[1:]).numpy()])
    np.testing.assert_allclose(full, split, rtol=1e-6, atol=1e-6)
    assert not np.allclose(full, m(x).numpy())  # dropout did act
    # a fresh model with the same seed draws the same masks from its own Generator
    np.testing.assert_array_equal(conv_net()(x, training=True).numpy(), conv_net()(x, training=True).numpy())


def xor_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    keep = np.abs(x).min(axis=1) > 0.1   # a margin around the axes
    x = x[keep]
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int64)


def train(model, x, y, opt, steps, ema=None):
    for _ in range(steps):
        opt.minimize(lambda: losses.sparse_softmax_cross_entropy(y, model(x, training=True))
                     + losses.get_regularization_loss(model), model.trainable_variables)
        if ema is not None:
            ema.apply(model.trainable_variables, num_updates=opt.iterations)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x).numpy(), axis=1) == y))


def test_small_mlp_learns_xor_to_95_percent():
    x, y = xor_data(400, seed=0)
    xt, yt = xor_data(400, seed=1)
    model = Sequential([Dense(16, activation="tanh"), Dense(16, activation="relu"), Dense(2)], input_shape=(2,), seed=0)
    ema = ExponentialMovingAverage(0.9)
    assert accuracy(model, xt, yt) < 0.8
    train(model, x, y, Adam(0.03), 250, ema)
    assert accuracy(model, x, y) >= 0.95
    assert accuracy(model, xt, yt) >= 0.95
    trained = [v.numpy().copy() for v in model.trainable_variables]
    with ema.swapped(model.trainable_variables):
        assert accuracy(model, xt, yt) >= 0.9   # the averaged weights are close behind
    for v, w in zip(model.trainable_variables, trained):
        np.testing.assert_array_equal(v.numpy(), w)


def test_l2_regularization_gives_a_smaller_weight_norm():
    x, y = xor_data(200, seed=2)

    def norm_after(reg):
        m = Sequential([Dense(16, activation="tanh", kernel_regularizer=reg), Dense(2, kernel_regularizer=reg)],
                       input_shape=(2,), seed=4)
        train(m, x, y, GradientDescent(0.5), 150)
        return np.sqrt(sum(np.sum(v.numpy().astype(np.float64) ** 2) for v in m.trainable_variables
                           if v.name.endswith("kernel")))

    plain, l2 = norm_after(None), norm_after(regularizers.l2(0.01))
    assert l2 < 0.9 * plain
