"""Record known values of the LSTM, GRU and Embedding layers and of leaky_relu
from real TensorFlow 2.21 with tf-keras (Keras 2 semantics), for the unit tests.

Run with an interpreter that has TensorFlow (never one of distnet's
dependencies)::

    TF_USE_LEGACY_KERAS=1 /path/to/tf-venv/bin/python tests/tf_reference/record_recurrent.py

It writes ``tests/tf_reference/recurrent_values.json``.  Every input and
weight is drawn here from ``numpy.random.RandomState(seed)`` exactly as
tests/test_layers_recurrent.py draws it; outputs and gradients (of
``sum(y * r)``, ``r`` drawn the same way) are stored as float32 lists.
"""
import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def draw(seed, *shape, scale=1.0):
    return (np.random.RandomState(seed).randn(*shape) * scale).astype(np.float32)


def lists(d):
    return {k: np.asarray(v, np.float32).tolist() for k, v in d.items()}


BATCH, TIME, FEATURES, UNITS = 3, 5, 4, 6
out = {"shape": [BATCH, TIME, FEATURES, UNITS]}
x = draw(1, BATCH, TIME, FEATURES)

for case, make, gates, bias_shape in (
        ("lstm", lambda seq: tf.keras.layers.LSTM(UNITS, return_sequences=seq), 4, (4 * UNITS,)),
        ("gru", lambda seq: tf.keras.layers.GRU(UNITS, return_sequences=seq), 3, (2, 3 * UNITS)),
        ("gru_reset_before", lambda seq: tf.keras.layers.GRU(UNITS, return_sequences=seq, reset_after=False), 3,
         (3 * UNITS,))):
    weights = [draw(2, FEATURES, gates * UNITS, scale=0.5), draw(3, UNITS, gates * UNITS, scale=0.5),
               draw(4, *bias_shape, scale=0.5)]
    for seq in (False, True):
        layer = make(seq)
        layer.build((None, TIME, FEATURES))
        layer.set_weights(weights)
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            r = draw(5, *y.shape)
            loss = tf.reduce_sum(y * r)
        gx, gk, grk, gb = tape.gradient(loss, [xt] + layer.trainable_weights)
        out[f"{case}_{'seq' if seq else 'last'}"] = lists(
            {"y": y, "grad_x": gx, "grad_kernel": gk, "grad_recurrent_kernel": grk, "grad_bias": gb})

# Embedding: the gradient of a repeated id is the sum of its rows' upstream gradients.
ids = np.array([[0, 3, 3], [6, 0, 3]], np.int32)
table = draw(6, 7, 4)
emb = tf.keras.layers.Embedding(7, 4)
emb.build((None, 3))
emb.set_weights([table])
with tf.GradientTape() as tape:
    y = emb(tf.constant(ids))
    r = draw(7, 2, 3, 4)
    loss = tf.reduce_sum(y * r)
g = tape.gradient(loss, emb.trainable_weights)[0]
out["embedding"] = {"ids": ids.tolist(), **lists({"y": y, "grad_table": tf.convert_to_tensor(g)})}

xl = tf.constant(np.array([-2.0, -0.5, 0.0, 0.5, 3.0], np.float32))
with tf.GradientTape() as tape:
    tape.watch(xl)
    yl = tf.nn.leaky_relu(xl)
    total = tf.reduce_sum(yl)
out["leaky_relu"] = lists({"x": xl, "y": yl, "grad": tape.gradient(total, xl)})

Path(__file__).with_name("recurrent_values.json").write_text(json.dumps(out, indent=1) + "\n")
print("wrote", sorted(out))
