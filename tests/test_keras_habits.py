"""Keras habits in the Python API (issue 23, item 4): (x, y) arrays for datasets, optimizers and
losses by name, fit() returning a History, model.predict, images without their channel axis."""
from __future__ import annotations

import numpy as np
import pytest

import distnet
from distnet import layers, optimizers
from distnet.data import ArrayDataset
from distnet.errors import InvalidArgumentError
from distnet.training.trainer import Trainer


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int64)
    centers = np.array([[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]], dtype=np.float32)
    x = (centers[y] + 0.08 * rng.standard_normal((n, 2)).astype(np.float32)).clip(0, 1)
    return x.reshape(n, 1, 1, 2), y


def mlp(seed=0):
    return distnet.Sequential([layers.Flatten(), layers.Dense(8, activation="tanh"), layers.Dense(3)],
                              input_shape=(1, 1, 2), seed=seed)


def test_arrays_and_names_train_exactly_as_datasets_and_objects():
    x, y = blobs(120, 0)
    xv, yv = blobs(40, 1)
    by_name = Trainer(mlp(), "sparse_categorical_crossentropy", "adam", (x, y), validation_data=(xv, yv),
                      eval_data=(xv, yv), global_batch_size=20, steps=12, eval_every=6)
    spelled = Trainer(mlp(), "sparse_softmax_cross_entropy", optimizers.Adam(0.001), ArrayDataset(x, y),
                      validation_data=ArrayDataset(xv, yv), eval_data=ArrayDataset(xv, yv),
                      global_batch_size=20, steps=12, eval_every=6)
    a, b = by_name.fit(verbose=0), spelled.fit(verbose=0)
    assert a.history["loss"] == b.history["loss"]          # bitwise: the same run
    assert a.history["val_loss"] == b.history["val_loss"]
    assert by_name.evaluate((xv, yv)) == spelled.evaluate(ArrayDataset(xv, yv))


def test_fit_returns_a_keras_history_with_the_raw_records():
    x, y = blobs(120, 0)
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", "sgd", (x, y), validation_data=blobs(30, 2),
                global_batch_size=20, steps=10, eval_every=4)
    h = t.fit(verbose=0)
    # One entry per step for the step metrics, one per evaluation (steps 4, 8 and the end, 10).
    assert len(h.history["loss"]) == len(h.history["accuracy"]) == 10
    assert h.history["step"] == list(range(1, 11))
    assert len(h.history["val_loss"]) == len(h.history["val_accuracy"]) == 3
    assert h.history["eval_step"] == [4, 8, 10]
    assert len(h.records) == 13 and h.records[-1]["val_loss"] == h.history["val_loss"][-1]
    assert h[0]["loss"] == h.history["loss"][0]   # still the list of records
    assert all(isinstance(v, float) for v in h.history["loss"])


def test_optimizer_names_take_keras_default_learning_rates():
    assert optimizers.get("sgd").learning_rate == 0.01
    assert optimizers.get("adam").learning_rate == 0.001
    assert optimizers.get("rmsprop", learning_rate=0.5).learning_rate == 0.5
    with pytest.raises(InvalidArgumentError, match="unknown optimizer 'adamm'"):
        Trainer(mlp(), "sparse_softmax_cross_entropy", "adamm", blobs(40, 0), global_batch_size=20, steps=1)


@pytest.mark.parametrize("bad", [{"x": 1}, (np.zeros((4, 1, 1, 2)),), "train.h5"])
def test_something_else_than_a_dataset_is_one_clear_error(bad):
    with pytest.raises(InvalidArgumentError, match=r"ArrayDataset\(x, y\).*\(x, y\) pair"):
        Trainer(mlp(), "sparse_softmax_cross_entropy", "sgd", bad, global_batch_size=2, steps=1)
    t = Trainer(mlp(), "sparse_softmax_cross_entropy", "sgd", blobs(40, 0), global_batch_size=20, steps=1)
    with pytest.raises(InvalidArgumentError, match="evaluate: Expect: a dataset"):
        t.evaluate(bad)


def test_predict_in_batches_is_the_model_on_everything():
    x, _ = blobs(53, 0)
    model = mlp()
    whole = model(x).numpy()
    np.testing.assert_allclose(model.predict(x, batch_size=7), whole, rtol=1e-6, atol=1e-7)
    assert model.predict(x).shape == (53, 3)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        model.predict(x, batch_size=0)


def test_images_without_their_channel_axis():
    model = distnet.Sequential([layers.Flatten(), layers.Dense(4)], input_shape=(28, 28, 1), seed=0)
    x = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model(x).numpy(), model(x[..., None]).numpy())
    np.testing.assert_allclose(model.predict(x, batch_size=2), model(x[..., None]).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(distnet.errors.ShapeError, match="Expect: input of shape"):
        model(x[:, :27])


def test_one_hot_float_labels_with_categorical_crossentropy_count_accuracy():
    x, y = blobs(120, 0)
    onehot = np.eye(3, dtype=np.float32)[y]
    t = Trainer(mlp(), "categorical_crossentropy", "adam", (x, onehot), eval_data=(x, onehot),
                global_batch_size=20, steps=6)
    sparse = Trainer(mlp(), "sparse_softmax_cross_entropy", "adam", (x, y), eval_data=(x, y),
                     global_batch_size=20, steps=6)
    a, b = t.fit(verbose=0), sparse.fit(verbose=0)
    assert "mae" not in a.history
    np.testing.assert_allclose(a.history["accuracy"], b.history["accuracy"])
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)
    assert a.history["test_accuracy"] == b.history["test_accuracy"]
