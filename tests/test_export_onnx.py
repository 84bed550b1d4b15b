"""distnet.export.onnx: every layer type and activation, run by onnxruntime on
real Fashion-MNIST images and compared with distnet's own forward pass."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from distnet import Sequential, layers
from distnet.data import load_dataset
from distnet.data.builtin import EMBEDDED_DIR
from distnet.errors import InvalidArgumentError

onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install -e '.[test]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra")

from distnet.export.onnx import _same_pads, export_onnx, to_onnx  # noqa: E402


@pytest.fixture(scope="module")
def images():
    _, test = load_dataset("fashion_mnist", EMBEDDED_DIR)
    x, y = test.read(np.arange(200))
    return x, y


def run_onnx(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"images": x})))


MODELS = {
    # seed 003's reference net
    "reference": lambda: [layers.Conv2D(32, 5, padding="same", activation="relu"), layers.MaxPool2D(2),
                          layers.Flatten(), layers.Dense(1024, activation="relu"), layers.Dense(10)],
    # odd SAME paddings (one pixel more after than before), strides, valid, no bias, every activation
    "windows": lambda: [layers.Conv2D(8, 4, strides=3, padding="same", activation="tanh"),
                        layers.MaxPool2D(3, strides=2, padding="same"),
                        layers.Conv2D(6, (3, 2), strides=(1, 2), padding="valid", activation="sigmoid",
                                      use_bias=False),
                        layers.MaxPool2D((2, 1), padding="valid"),
                        layers.Dropout(0.5), layers.Flatten(),
                        layers.Dense(32, activation="sigmoid"), layers.Dropout(0.2),
                        layers.Dense(16, activation="tanh", use_bias=False),
                        layers.Dense(10, activation="softmax")],
    # no convolution: Flatten straight from NHWC
    "mlp": lambda: [layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                    layers.Dense(10, activation="linear")],
    # batch normalization on images and on features, average pooling (odd SAME), global pooling
    "normalized": lambda: [layers.Conv2D(8, 3, padding="same"), layers.BatchNorm(),
                           layers.AvgPool2D(3, strides=2, padding="same"), layers.Conv2D(6, 3, strides=2),
                           layers.BatchNorm(center=False, epsilon=0.01), layers.AvgPool2D(2, padding="valid"),
                           layers.GlobalAvgPool2D(), layers.BatchNorm(scale=False), layers.Dense(10)],
    # transposed convolutions (SAME, VALID, a kernel smaller than its stride) and reshapes
    "decoder": lambda: [layers.Conv2D(4, 3, strides=2, padding="same"),
                        layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"),
                        layers.MaxPool2D(4), layers.Conv2DTranspose(2, 2, strides=3, padding="valid"),
                        layers.Flatten(), layers.Dense(98, activation="tanh"), layers.Reshape((7, 7, 2)),
                        layers.Conv2DTranspose(2, 5, strides=2, padding="same", use_bias=False),
                        layers.Conv2DTranspose(3, 4, strides=2, padding="valid"), layers.Reshape((-1,)),
                        layers.Dense(10)],
    # images read row by row: stacked recurrent layers (every output / the last), both GRU forms,
    # an LSTM without bias and with its own activations, leaky_relu
    "rows": lambda: [layers.Reshape((28, 28)), layers.LSTM(12, return_sequences=True),
                     layers.GRU(8, return_sequences=True), layers.GRU(6, reset_after=False, return_sequences=True),
                     layers.LSTM(5, use_bias=False, unit_forget_bias=False, activation="relu",
                                 recurrent_activation="tanh"),
                     layers.Dense(16, activation="leaky_relu"), layers.Dense(10)],
    # a recurrent layer after convolutions (NCHW inside the graph, back to NHWC before the reshape)
    "conv_rows": lambda: [layers.Conv2D(4, 3, strides=2, padding="same", activation="leaky_relu"),
                          layers.Reshape((14, 56)), layers.GRU(7), layers.Dense(10)],
    # ends in a convolution with a softmax over channels: NHWC output, no probabilities
    "fully_convolutional": lambda: [layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                                    layers.Conv2D(10, 3, padding="same", activation="softmax")],
}


# Integer ids, not images: checked by test_embedding_and_recurrent_layers_on_ids.
def ID_MODEL():
    return [layers.Embedding(9, 5), layers.LSTM(4, return_sequences=True), layers.GRU(3), layers.Dense(2)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_gives_distnet_forward_pass_on_real_images(images, name):
    x, _ = images
    model = Sequential(MODELS[name](), input_shape=(28, 28, 1), seed=5)
    rng = np.random.default_rng(11)
    for v in model.variables:   # biases away from their zero start, so they are checked too
        v.assign(v.numpy() + rng.normal(0, 0.05, v.shape).astype(np.float32))
    expected = model(x, training=False).numpy()
    proto = to_onnx(model, metadata={"checkpoint": "none"})
    got = run_onnx(proto, x)
    assert got["logits"].shape == expected.shape == (200,) + model.output_shape
    np.testing.assert_allclose(got["logits"], expected, rtol=1e-5, atol=1e-5)
    if len(model.output_shape) == 1:
        z = expected.astype(np.float64)
        probs = np.exp(z - z.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        np.testing.assert_allclose(got["probabilities"], probs, rtol=1e-5, atol=1e-6)
    else:
        assert set(got) == {"logits"}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["checkpoint"] == "none" and meta["input_layout"].startswith("NHWC")
    # The batch axis is free: one image at a time gives the same numbers.
    np.testing.assert_allclose(run_onnx(proto, x[:1])["logits"], expected[:1], rtol=1e-5, atol=1e-5)


def test_weights_given_apart_replace_the_model_values(images):
    x, _ = images
    model = Sequential(MODELS["mlp"](), input_shape=(28, 28, 1), seed=1)
    shadows = {v.name: v.numpy() * 0.5 for v in model.variables}
    got = run_onnx(to_onnx(model, weights=shadows), x[:20])["logits"]
    for v in model.variables:
        v.assign(shadows[v.name])
    np.testing.assert_allclose(got, model(x[:20]).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match=r"weights: Expect: a value for every variable Actual: "
                                                   r"missing \['dense_1/bias'\]"):
        to_onnx(model, weights={k: v for k, v in shadows.items() if k != "dense_1/bias"})
    bad = dict(shadows, **{"dense/bias": np.zeros(3, np.float32)})
    with pytest.raises(InvalidArgumentError, match=r"weights\['dense/bias'\]: Expect: shape \(64,\)"):
        to_onnx(model, weights=bad)


@pytest.mark.parametrize("size, k, s, expected", [
    (28, 5, 1, [2, 2]), (28, 4, 3, [1, 2]), (28, 2, 2, [0, 0]), (14, 3, 2, [0, 1]), (5, 7, 1, [3, 3]),
])
def test_same_padding_is_tf_s(size, k, s, expected):
    # TF: out = ceil(n / s), total = max((out - 1) * s + k - n, 0), the extra pixel after.
    top, left, bottom, right = _same_pads((size, size), (k, k), (s, s), "SAME")
    assert [top, bottom] == expected == [left, right]
    assert _same_pads((size, size), (k, k), (s, s), "VALID") == [0, 0, 0, 0]


def test_export_writes_a_readable_file_with_the_usual_mode(tmp_path, images):
    x, _ = images
    model = Sequential(MODELS["mlp"](), input_shape=(28, 28, 1), seed=1)
    old = os.umask(0o022)
    try:
        path = export_onnx(model, tmp_path / "m.onnx")
    finally:
        os.umask(old)
    assert path == str(tmp_path / "m.onnx") and os.listdir(tmp_path) == ["m.onnx"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    loaded = onnx.load(path)
    np.testing.assert_allclose(run_onnx(loaded, x[:5])["logits"], model(x[:5]).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match="Expect: a file name Actual: a directory"):
        export_onnx(model, tmp_path)
    with pytest.raises(InvalidArgumentError, match="Expect: an existing directory"):
        export_onnx(model, tmp_path / "missing" / "m.onnx")
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_what_has_no_onnx_form_is_named():
    class Custom(layers.Layer):
        def call(self, x, training=False, rng=None, sample_keys=None):
            return x

    model = Sequential([layers.Flatten(), Custom(name="mine"), layers.Dense(10)], input_shape=(4, 4, 1))
    with pytest.raises(InvalidArgumentError, match="layer 'mine' of type Custom has no ONNX form"):
        to_onnx(model)
    model = Sequential([layers.Flatten(), layers.Dense(10, activation=lambda t: t)], input_shape=(4, 4, 1))
    with pytest.raises(InvalidArgumentError, match="has no ONNX form; Expect: one of relu"):
        to_onnx(model)
    with pytest.raises(InvalidArgumentError, match="opset: Expect: an int >= 13"):
        to_onnx(Sequential([layers.Flatten(), layers.Dense(2)], input_shape=(2, 2, 1)), opset=11)
    with pytest.raises(InvalidArgumentError, match="not built"):
        to_onnx(Sequential([layers.Flatten(), layers.Dense(2)]))


# -- distnet export: a real run's checkpoint -------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from trained_run import train_small_conv

    return train_small_conv(tmp_path_factory.mktemp("export"))


@pytest.mark.parametrize("use_ema", [False, True])
def test_distnet_export_of_a_trained_run_matches_its_forward_pass(capsys, run_dir, tmp_path, use_ema):
    from distnet.runner import exit_status
    from distnet.jobs.cli import main
    from distnet.jobs.job import config_from_checkpoint, load_checkpoint, model_from_checkpoint

    _, test = load_dataset("fashion_mnist", EMBEDDED_DIR)
    x, y = test.read(np.arange(len(test)))   # all 2,000 embedded test images
    out = tmp_path / "model.onnx"
    code = main(["export", str(run_dir), "--format", "onnx", "-o", str(out)] + (["--ema"] if use_ema else []))
    stdout, err = capsys.readouterr()
    assert code == exit_status.OK, err
    ckpt = run_dir / "checkpoints" / "ckpt-00000006.h5"
    weights = "ema" if use_ema else "trained"
    assert stdout == (f"wrote {out}: the {weights} weights of {ckpt} (step 6), "
                      f"input images [batch, 28, 28, 1]\n")
    path, state = load_checkpoint(ckpt)
    model = model_from_checkpoint(path, state, config_from_checkpoint(state, path), (28, 28, 1), use_ema=use_ema)
    expected = model(x, training=False).numpy()
    got = run_onnx(onnx.load(out), x)
    np.testing.assert_allclose(got["logits"], expected, rtol=1e-5, atol=1e-5)
    assert np.array_equal(got["probabilities"].argmax(1), expected.argmax(1))
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["weights"] == weights and meta["step"] == "6" and meta["checkpoint"] == str(ckpt)
    assert meta["class_names"].split(",")[:2] == ["T-shirt/top", "Trouser"]


def test_distnet_export_without_onnx_says_what_to_install(capsys, run_dir, tmp_path, monkeypatch):
    import sys

    from distnet.runner import exit_status
    from distnet.jobs.cli import main

    monkeypatch.setitem(sys.modules, "onnx", None)   # as if not installed
    code = main(["export", str(run_dir), "-o", str(tmp_path / "m.onnx")])
    _, err = capsys.readouterr()
    assert code == exit_status.BAD_INPUT
    assert err == ("distnet: error: distnet export --format onnx needs the onnx package: "
                   "pip install 'distnet[onnx]' (or: pip install onnx)\n")
    assert os.listdir(tmp_path) == []


def test_every_layer_type_and_activation_a_job_can_name_is_exported_by_the_tests_above():
    from distnet import registry
    from distnet.export.onnx import EXPORTABLE, _activation_op

    models = [Sequential(make(), input_shape=(28, 28, 1)) for make in MODELS.values()]
    models.append(Sequential(ID_MODEL(), input_shape=(6,)))
    used_layers = {type(layer).__name__ for m in models for layer in m.layers}
    used_ops = {_activation_op(layer) for m in models for layer in m.layers if hasattr(layer, "activation")}
    registered = {c.obj.__name__ for c in registry.components("layer")}
    assert registered <= set(EXPORTABLE) and registered <= used_layers
    for c in registry.components("activation"):
        op = _activation_op(layers.Dense(2, activation=c.name))
        assert op in used_ops, f"activation {c.name!r} ({op}) is not in any model checked against onnxruntime"


def test_embedding_and_recurrent_layers_on_ids():
    """Ids come in as the float input (whole numbers) and are cast to int64 for Gather."""
    model = Sequential(ID_MODEL(), input_shape=(6,), seed=2)
    ids = np.random.default_rng(0).integers(0, 9, (7, 6)).astype(np.float32)
    proto = to_onnx(model)
    assert {n.op_type for n in proto.graph.node} >= {"Cast", "Gather", "LSTM", "GRU"}
    np.testing.assert_allclose(run_onnx(proto, ids)["logits"], model(ids).numpy(), rtol=1e-5, atol=1e-6)
    seq = Sequential([layers.Embedding(9, 3)], input_shape=(4,), seed=1)
    np.testing.assert_array_equal(run_onnx(to_onnx(seq), ids[:, :4])["logits"], seq(ids[:, :4]).numpy())


def test_recurrent_activation_without_onnx_form_is_refused():
    model = Sequential([layers.GRU(3, activation="softmax"), layers.Dense(2)], input_shape=(4, 2))
    with pytest.raises(InvalidArgumentError, match=r"GRU 'gru': its activation .* has no ONNX form; Expect: one of "
                                                   r"relu, sigmoid, tanh"):
        to_onnx(model)
