"""Embedding, LSTM and GRU layers: hand-computed recurrences in float64,
TF 2.21 / tf-keras numbers (tests/tf_reference/record_recurrent.py), float64
gradient checks, shapes, errors and job files."""
import json
from pathlib import Path

import numpy as np
import pytest

import distnet
from distnet import registry
from distnet.errors import InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients
from distnet.layers import GRU, LSTM, Embedding
from distnet.model.models import Sequential

TF = json.loads((Path(__file__).parent / "tf_reference" / "recurrent_values.json").read_text())


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_numpy(x, kernel, recurrent, bias):
    """Keras' LSTM by hand: gates i, f, c, o; returns every step's h."""
    u = recurrent.shape[0]
    h = c = np.zeros((x.shape[0], u))
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = sigmoid(z[:, :u]), sigmoid(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, axis=1)


def gru_numpy(x, kernel, recurrent, bias, reset_after):
    """Keras' GRU by hand: gates z, r, h; returns every step's h."""
    u = recurrent.shape[0]
    h = np.zeros((x.shape[0], u))
    hs = []
    for t in range(x.shape[1]):
        if reset_after:
            xs, rs = x[:, t] @ kernel + bias[0], h @ recurrent + bias[1]
            z, r = sigmoid(xs[:, :u] + rs[:, :u]), sigmoid(xs[:, u:2 * u] + rs[:, u:2 * u])
            cand = np.tanh(xs[:, 2 * u:] + r * rs[:, 2 * u:])
        else:
            xs = x[:, t] @ kernel + bias
            z = sigmoid(xs[:, :u] + h @ recurrent[:, :u])
            r = sigmoid(xs[:, u:2 * u] + h @ recurrent[:, u:2 * u])
            cand = np.tanh(xs[:, 2 * u:] + (r * h) @ recurrent[:, 2 * u:])
        h = z * h + (1 - z) * cand
        hs.append(h)
    return np.stack(hs, axis=1)


def built(layer, time, features, dtype=np.float64, seed=0):
    model = Sequential([layer], input_shape=(time, features), dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for v in model.variables:   # biases away from zero so every term is checked
        v.assign(rng.normal(0, 0.5, v.shape).astype(dtype))
    return model


@pytest.mark.parametrize("seq", [False, True])
def test_lstm_is_the_hand_computed_recurrence(seq):
    x = np.random.default_rng(3).standard_normal((4, 6, 5))
    layer = LSTM(3, return_sequences=seq)
    model = built(layer, 6, 5)
    want = lstm_numpy(x, layer.kernel.numpy(), layer.recurrent_kernel.numpy(), layer.bias.numpy())
    y = model(x).numpy()
    assert y.dtype == np.float64 and layer.output_shape == ((6, 3) if seq else (3,))
    np.testing.assert_allclose(y, want if seq else want[:, -1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_is_the_hand_computed_recurrence(reset_after):
    x = np.random.default_rng(4).standard_normal((3, 7, 2))
    layer = GRU(4, return_sequences=True, reset_after=reset_after)
    model = built(layer, 7, 2)
    assert layer.bias.shape == ((2, 12) if reset_after else (12,))
    want = gru_numpy(x, layer.kernel.numpy(), layer.recurrent_kernel.numpy(), layer.bias.numpy(), reset_after)
    np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-12, atol=1e-14)


def tf_draw(seed, *shape, scale=1.0):
    return (np.random.RandomState(seed).randn(*shape) * scale).astype(np.float32)


@pytest.mark.parametrize("case", ["lstm", "gru", "gru_reset_before"])
@pytest.mark.parametrize("seq", [False, True])
def test_values_and_gradients_are_tf_keras(case, seq):
    b, t, f, u = TF["shape"]
    gates = 4 if case == "lstm" else 3
    bias_shape = {"lstm": (4 * u,), "gru": (2, 3 * u), "gru_reset_before": (3 * u,)}[case]
    layer = LSTM(u, return_sequences=seq) if case == "lstm" else \
        GRU(u, return_sequences=seq, reset_after=case == "gru")
    model = Sequential([layer], input_shape=(t, f), seed=0)
    for var, w in zip(model.variables, (tf_draw(2, f, gates * u, scale=0.5), tf_draw(3, u, gates * u, scale=0.5),
                                        tf_draw(4, *bias_shape, scale=0.5))):
        var.assign(w)
    ref = TF[f"{case}_{'seq' if seq else 'last'}"]
    x = distnet.constant(tf_draw(1, b, t, f))
    y = model(x)
    np.testing.assert_allclose(y.numpy(), ref["y"], rtol=1e-5, atol=1e-6)
    r = tf_draw(5, *y.shape)
    grads = distnet.gradients(distnet.reduce_sum(y * r), [x] + model.variables)
    for g, key in zip(grads, ("grad_x", "grad_kernel", "grad_recurrent_kernel", "grad_bias")):
        np.testing.assert_allclose(g, ref[key], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("make", [lambda: LSTM(3, return_sequences=True), lambda: LSTM(2),
                                  lambda: GRU(3, return_sequences=True), lambda: GRU(2, reset_after=False)])
def test_recurrent_gradients_float64(make):
    rng = np.random.default_rng(8)
    layer = make()
    model = built(layer, 4, 3)
    check_gradients(lambda t: model(t), [rng.standard_normal((2, 4, 3))])
    x = distnet.constant(rng.standard_normal((2, 4, 3)))
    names = ("kernel", "recurrent_kernel", "bias")
    own = [getattr(layer, n) for n in names]

    def f(*weights):   # the same layer with its weights replaced by the checked tensors
        for n, w in zip(names, weights):
            setattr(layer, n, w)
        try:
            return layer.call(x)
        finally:
            for n, v in zip(names, own):
                setattr(layer, n, v)

    check_gradients(f, [v.numpy().copy() for v in own])


def test_keras_defaults_unit_forget_bias_and_orthogonal_recurrent_kernel():
    lstm = LSTM(5)
    Sequential([lstm], input_shape=(3, 2), seed=1)
    np.testing.assert_array_equal(lstm.bias.numpy(), np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    rk = lstm.recurrent_kernel.numpy().astype(np.float64)       # [5, 20]: orthonormal rows
    np.testing.assert_allclose(rk @ rk.T, np.eye(5), atol=1e-6)
    assert [v.name for v in lstm.variables] == ["lstm/kernel", "lstm/recurrent_kernel", "lstm/bias"]
    plain = LSTM(5, unit_forget_bias=False)
    Sequential([plain], input_shape=(3, 2))
    assert not plain.bias.numpy().any()
    gru = GRU(4)
    Sequential([gru], input_shape=(3, 2))
    assert gru.bias.shape == (2, 12) and gru.kernel.shape == (2, 12) and gru.recurrent_kernel.shape == (4, 12)
    assert [v.name for v in Sequential([LSTM(2, use_bias=False)], input_shape=(3, 2)).variables] == [
        "lstm/kernel", "lstm/recurrent_kernel"]


def test_embedding_rows_and_scatter_add_gradient():
    ref = TF["embedding"]
    ids = np.array(ref["ids"])
    layer = Embedding(7, 4)
    model = Sequential([layer], input_shape=ids.shape[1:], seed=0)
    assert layer.output_shape == (3, 4) and layer.embeddings.name == "embedding/embeddings"
    assert np.abs(layer.embeddings.numpy()).max() <= 0.05   # Keras' uniform(-0.05, 0.05)
    layer.embeddings.assign(tf_draw(6, 7, 4))
    y = model(ids)    # converted to the model's float32, whole numbers: accepted
    np.testing.assert_allclose(y.numpy(), ref["y"], rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), layer.embeddings.numpy()[ids])
    r = tf_draw(7, 2, 3, 4)
    (g,) = distnet.gradients(distnet.reduce_sum(y * r), [layer.embeddings])
    np.testing.assert_allclose(g, ref["grad_table"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g[3], r[0, 1] + r[0, 2] + r[1, 2], rtol=1e-6)   # id 3 three times
    assert not g[[1, 2, 4, 5]].any()


def test_embedding_gradient_float64():
    ids = np.array([[1, 1, 4], [0, 4, 2]])
    check_gradients(lambda w: distnet.gather(w, ids), [np.random.default_rng(2).standard_normal((5, 3))])
    layer = Embedding(5, 3)
    Sequential([layer], input_shape=(3,), dtype=np.float64)
    own = layer.embeddings

    def f(w):
        layer.embeddings = w
        try:
            return layer.call(distnet.constant(ids))
        finally:
            layer.embeddings = own

    check_gradients(f, [np.random.default_rng(3).standard_normal((5, 3))])


def test_embedding_then_lstm_float64_gradient():
    model = Sequential([Embedding(6, 3), LSTM(2)], input_shape=(4,), dtype=np.float64, seed=2)
    emb = model.layers[0]
    ids = distnet.constant(np.array([[0, 5, 5, 1], [2, 2, 0, 3]]))
    own = emb.embeddings

    def f(w):
        emb.embeddings = w
        try:
            return model.layers[1](emb.call(ids))
        finally:
            emb.embeddings = own

    check_gradients(f, [np.random.default_rng(4).standard_normal((6, 3))])


def test_errors_name_the_problem():
    with pytest.raises(ShapeError, match=r"Expect: inputs \[batch, time, features\].*reshape"):
        Sequential([LSTM(3)], input_shape=(28, 28, 1))
    with pytest.raises(InvalidArgumentError, match="units: Expect: a positive int Actual: 0"):
        GRU(0)
    with pytest.raises(InvalidArgumentError, match="unknown activation"):
        LSTM(2, recurrent_activation="nope")
    emb = Embedding(4, 2)
    Sequential([emb], input_shape=(2,))
    with pytest.raises(InvalidArgumentError, match=r"Expect: ids in \[0, 4\) Actual: \[4\.0\]"):
        emb(np.array([[0, 4]]))
    with pytest.raises(InvalidArgumentError, match=r"Expect: whole-number ids Actual: \[0.5\]"):
        emb(np.array([[0.5, 1.0]], np.float32))
    with pytest.raises(InvalidArgumentError, match="output_dim: Expect: a positive int"):
        Embedding(3, 0)


def test_job_files_name_the_recurrent_layers():
    made = [registry.make("layer", spec) for spec in (
        {"type": "lstm", "units": 8, "return_sequences": True, "unit_forget_bias": False},
        {"type": "gru", "units": 4, "reset_after": False, "recurrent_initializer": "glorot_uniform"},
        {"type": "embedding", "input_dim": 10, "output_dim": 3})]
    assert [type(m).__name__ for m in made] == ["LSTM", "GRU", "Embedding"]
    assert made[0].return_sequences and not made[0].unit_forget_bias and not made[1].reset_after


def test_a_job_with_rows_into_a_recurrent_layer_validates_and_builds():
    from distnet.jobs.config import parse_job
    from distnet.jobs.job import build_model

    cfg = parse_job('''
[[model.layers]]
type = "reshape"
target_shape = [28, 28]
[[model.layers]]
type = "lstm"
units = 8
return_sequences = true
[[model.layers]]
type = "gru"
units = 6
activation = "leaky_relu"
[[model.layers]]
type = "dense"
units = 10
''')
    model = build_model(cfg)
    model.build((None, 28, 28, 1))
    assert [type(layer).__name__ for layer in model.layers] == ["Reshape", "LSTM", "GRU", "Dense"]
    assert model.output_shape == (10,) and model.layers[2].activation is distnet.nn.leaky_relu
    assert model(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)


def test_a_job_with_a_recurrent_layer_on_images_says_to_reshape(tmp_path):
    import subprocess
    import sys

    job = tmp_path / "bad.toml"
    job.write_text('[[model.layers]]\ntype = "lstm"\nunits = 4\n[[model.layers]]\ntype = "dense"\nunits = 10\n'
                   '[train]\nsteps = 1\n')
    proc = subprocess.run([sys.executable, "-m", "distnet", "train", str(job), "--run-dir", str(tmp_path / "r"),
                           "--progress", "none"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "model.layers[0].type: a lstm layer takes [batch, time, features]: put a reshape layer before it" \
        in proc.stderr, proc.stderr


def test_fused_lstm_op_gradients_float64():
    rng = np.random.default_rng(12)
    x, k, r, b = (rng.standard_normal(s) * 0.7 for s in ((3, 5, 2), (2, 12), (3, 12), (12,)))
    check_gradients(distnet.nn.lstm, [x, k, r, b])
    check_gradients(lambda *a: distnet.nn.lstm(*a)[:, -1], [x, k, r])   # no bias, the last state only
    np.testing.assert_allclose(distnet.nn.lstm(x, k, r, b).numpy(), lstm_numpy(x, k, r, b), rtol=1e-12,
                               atol=1e-14)


def test_fused_lstm_equals_the_unrolled_native_ops():
    """The layer takes the fused op for Keras' activations and unrolls native ops for others:
    given the same functions as callables (so the unrolled path runs), both agree."""
    rng = np.random.default_rng(13)
    x = distnet.constant(rng.standard_normal((4, 6, 3)))
    fused = LSTM(5, return_sequences=True)
    unrolled = LSTM(5, return_sequences=True, activation=lambda t: distnet.nn.tanh(t),
                    recurrent_activation=lambda t: distnet.nn.sigmoid(t))
    r = rng.standard_normal((4, 6, 5))
    grads = []
    for layer in (fused, unrolled):
        model = built(layer, 6, 3, seed=4)
        y = model(x)
        assert (type(y._op).__name__ == "LSTMSequence") == (layer is fused)   # the path taken
        grads.append([y.numpy()] + distnet.gradients(distnet.reduce_sum(y * r), [x] + model.variables))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_fused_lstm_errors():
    with pytest.raises(ShapeError, match=r"recurrent_kernel: Expect: \[units, 4 \* units\]"):
        distnet.nn.lstm(np.zeros((1, 2, 3)), np.zeros((3, 8)), np.zeros((2, 6)))
    with pytest.raises(ShapeError, match=r"kernel \[features, 8\]"):
        distnet.nn.lstm(np.zeros((1, 2, 3)), np.zeros((4, 8)), np.zeros((2, 8)))
    with pytest.raises(distnet.errors.DTypeError, match="one floating dtype"):
        distnet.nn.lstm(np.zeros((1, 2, 3), np.float32), np.zeros((3, 8)), np.zeros((2, 8)))


def test_fused_gru_op_gradients_and_the_unrolled_path_float64():
    rng = np.random.default_rng(14)
    x, k, r, b = (rng.standard_normal(s) * 0.7 for s in ((3, 5, 2), (2, 9), (3, 9), (2, 9)))
    check_gradients(distnet.nn.gru, [x, k, r, b])
    check_gradients(lambda *a: distnet.nn.gru(*a)[:, -1], [x, k, r])
    np.testing.assert_allclose(distnet.nn.gru(x, k, r, b).numpy(), gru_numpy(x, k, r, b, True), rtol=1e-12,
                               atol=1e-14)
    xt = distnet.constant(rng.standard_normal((4, 6, 3)))
    fused = GRU(5, return_sequences=True)
    unrolled = GRU(5, return_sequences=True, activation=lambda t: distnet.nn.tanh(t),
                   recurrent_activation=lambda t: distnet.nn.sigmoid(t))
    w = rng.standard_normal((4, 6, 5))
    grads = []
    for layer in (fused, unrolled):
        model = built(layer, 6, 3, seed=5)
        y = model(xt)
        assert (type(y._op).__name__ == "GRUSequence") == (layer is fused)
        grads.append([y.numpy()] + distnet.gradients(distnet.reduce_sum(y * w), [xt] + model.variables))
    for a, bb in zip(*grads):
        np.testing.assert_allclose(a, bb, rtol=1e-12, atol=1e-13)
    with pytest.raises(ShapeError, match=r"bias: Expect: \(2, 9\)"):
        distnet.nn.gru(x, k, r, np.zeros(9))
