"""Fixed RNN / embedding / sampled-loss graphs, written once against TF1's API.

Each case builds its graph with the ``tf`` module it is given and returns
``{label: tensor}``.  :func:`evaluate` runs it with seeded weights and
inputs and adds the gradient of ``sum(output * r)`` (``r`` a fixed random
projection) with respect to the inputs and every trainable variable, so the
same code yields distnet's numbers (tests/test_compat_v1_rnn.py) and real
TensorFlow's (tests/record_rnn_reference.py, run under TF 2.21).
"""
from __future__ import annotations

import numpy as np

B, T, D, H = 3, 5, 4, 6
LENGTHS = np.array([5, 2, 3], np.int32)


def _x(dtype=np.float32, time_major=False):
    x = np.random.RandomState(1).randn(B, T, D).astype(dtype)
    return x.transpose(1, 0, 2).copy() if time_major else x


def _flat(out):
    if isinstance(out, (tuple, list)):
        r = []
        for o in out:
            r.extend(_flat(o))
        return r
    return [out]


def basic_rnn(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    out, state = tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicRNNCell(H), x, dtype=dtype)
    return {"x": (x, _x(dtype))}, {"out": out, "state": state}


def basic_lstm_seq(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    out, state = tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicLSTMCell(H, forget_bias=1.0), x,
                                   sequence_length=tf.constant(LENGTHS), dtype=dtype)
    return {"x": (x, _x(dtype))}, {"out": out, "c": state.c, "h": state.h}


def lstm_peep_proj(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [T, None, D], name="x")
    cell = tf.nn.rnn_cell.LSTMCell(H, use_peepholes=True, cell_clip=1.5, num_proj=3, forget_bias=0.5)
    out, state = tf.nn.dynamic_rnn(cell, x, time_major=True, dtype=dtype)
    return {"x": (x, _x(dtype, True))}, {"out": out, "c": state.c, "h": state.h}


def gru_seq(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    n = tf.placeholder(tf.int32, [None], name="n")
    out, state = tf.nn.dynamic_rnn(tf.nn.rnn_cell.GRUCell(H), x, sequence_length=n, dtype=dtype)
    return {"x": (x, _x(dtype)), "n": (n, LENGTHS)}, {"out": out, "state": state}


def multi_cell(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [B, T, D], name="x")
    cell = tf.nn.rnn_cell.MultiRNNCell([tf.nn.rnn_cell.GRUCell(H), tf.nn.rnn_cell.BasicLSTMCell(3)])
    init = cell.zero_state(B, dtype)
    out, state = tf.nn.dynamic_rnn(cell, x, initial_state=init)
    return {"x": (x, _x(dtype))}, {"out": out, "s0": state[0], "c1": state[1].c, "h1": state[1].h}


def lstm_concat_state(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    out, state = tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicLSTMCell(H, state_is_tuple=False), x, dtype=dtype)
    return {"x": (x, _x(dtype))}, {"out": out, "state": state}


def static_lstm(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    outs, state = tf.nn.static_rnn(tf.nn.rnn_cell.BasicLSTMCell(H), tf.unstack(x, T, 1), dtype=dtype)
    return {"x": (x, _x(dtype))}, {"last": outs[-1], "first": outs[0], "c": state.c}


def static_lstm_seq(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    outs, state = tf.nn.static_rnn(tf.nn.rnn_cell.GRUCell(H), tf.unstack(x, T, 1), dtype=dtype,
                                   sequence_length=tf.constant(LENGTHS))
    return {"x": (x, _x(dtype))}, {"outs": tf.stack(outs, 1), "state": state}


def bidi_gru_seq(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    (fw, bw), (sf, sb) = tf.nn.bidirectional_dynamic_rnn(
        tf.nn.rnn_cell.GRUCell(H), tf.nn.rnn_cell.BasicLSTMCell(3), x, sequence_length=tf.constant(LENGTHS),
        dtype=dtype)
    return {"x": (x, _x(dtype))}, {"fw": fw, "bw": bw, "sf": sf, "sb_c": sb.c, "sb_h": sb.h}


def static_bidi(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    outs, sf, sb = tf.nn.static_bidirectional_rnn(
        tf.nn.rnn_cell.BasicRNNCell(H), tf.nn.rnn_cell.BasicRNNCell(H), tf.unstack(x, T, 1), dtype=dtype,
        sequence_length=tf.constant(LENGTHS))
    return {"x": (x, _x(dtype))}, {"outs": tf.stack(outs, 1), "sf": sf, "sb": sb}


def custom_cell(tf, dtype=np.float32):
    class MinimalRNNCell(tf.nn.rnn_cell.RNNCell):
        """A cell as TF1 users subclassed RNNCell: build(inputs_shape) with add_variable, then call."""

        def __init__(self, units):
            super().__init__()
            self.units = units

        @property
        def state_size(self):
            return self.units

        @property
        def output_size(self):
            return self.units

        def build(self, inputs_shape):
            self.kernel = self.add_variable("kernel", [int(inputs_shape[-1]), self.units])
            self.recurrent_kernel = self.add_variable("recurrent_kernel", [self.units, self.units])
            self.built = True

        def call(self, inputs, state):
            h = tf.tanh(tf.matmul(inputs, self.kernel) + tf.matmul(state, self.recurrent_kernel))
            return h, h

    x = tf.placeholder(dtype, [None, T, D], name="x")
    cell = tf.nn.rnn_cell.DropoutWrapper(MinimalRNNCell(H), output_keep_prob=1.0)
    out, state = tf.nn.dynamic_rnn(cell, x, sequence_length=tf.constant(LENGTHS), dtype=dtype)
    return {"x": (x, _x(dtype))}, {"out": out, "state": state}


def sequence_helpers(tf, dtype=np.float32):
    x = tf.placeholder(dtype, [None, T, D], name="x")
    n = tf.placeholder(tf.int32, [None], name="n")
    mask = tf.sequence_mask(n, T, dtype=dtype)
    return {"x": (x, _x(dtype)), "n": (n, LENGTHS)}, {
        "rev": tf.reverse_sequence(x, n, seq_axis=1, batch_axis=0),
        "rev_tm": tf.reverse_sequence(tf.transpose(x, [1, 0, 2]), n, seq_axis=0, batch_axis=1),
        "masked": x * tf.expand_dims(mask, -1), "mask": mask}


def embedding(tf, dtype=np.float32):
    rng = np.random.RandomState(3)
    parts = [tf.Variable(rng.randn(n, 4).astype(dtype), name=f"part{i}") for i, n in enumerate([4, 3, 3])]
    ids = tf.constant([[0, 9, 4], [5, 1, 8]])
    return {}, {"mod": tf.nn.embedding_lookup(parts, ids),
                "div": tf.nn.embedding_lookup(parts, ids, partition_strategy="div"),
                "one": tf.nn.embedding_lookup(parts[0], tf.constant([3, 0, 3]))}


def _sampled_inputs(tf, dtype):
    rng = np.random.RandomState(4)
    w = tf.Variable(rng.randn(10, 5).astype(dtype) * 0.5, name="w")
    b = tf.Variable(rng.randn(10).astype(dtype) * 0.1, name="b")
    x = tf.placeholder(dtype, [4, 5], name="x")
    labels = tf.constant([[1, 3], [2, 7], [0, 9], [5, 5]], dtype=tf.int64)
    sampled = (tf.constant([3, 4, 8, 0], dtype=tf.int64), tf.constant(np.full((4, 2), 0.5, dtype), dtype=dtype),
               tf.constant(np.array([0.2, 0.4, 0.9, 0.7], dtype), dtype=dtype))
    return w, b, x, labels, sampled, {"x": (x, rng.randn(4, 5).astype(dtype))}


def nce(tf, dtype=np.float32):
    w, b, x, labels, sampled, feeds = _sampled_inputs(tf, dtype)
    return feeds, {"plain": tf.nn.nce_loss(w, b, labels, x, 4, 10, num_true=2, sampled_values=sampled),
                   "hits": tf.nn.nce_loss(w, b, labels, x, 4, 10, num_true=2, sampled_values=sampled,
                                          remove_accidental_hits=True)}


def sampled_softmax(tf, dtype=np.float32):
    w, b, x, labels, sampled, feeds = _sampled_inputs(tf, dtype)
    return feeds, {"loss": tf.nn.sampled_softmax_loss(w, b, labels, x, 4, 10, num_true=2, sampled_values=sampled),
                   "keep": tf.nn.sampled_softmax_loss(w, b, labels[:, :1], x, 4, 10, sampled_values=(
                       sampled[0], sampled[1][:, :1], sampled[2]), remove_accidental_hits=False)}


def sampler_counts(tf, dtype=np.float32):
    labels = tf.constant([[0], [1], [7], [99]], dtype=tf.int64)
    _, lt, _ = tf.nn.log_uniform_candidate_sampler(labels, 1, 8, False, 100, seed=5)
    _, ut, _ = tf.nn.uniform_candidate_sampler(labels, 1, 8, False, 100, seed=5)
    return {}, {"log_uniform": lt, "uniform": ut}


CASES = {f.__name__: f for f in (basic_rnn, basic_lstm_seq, lstm_peep_proj, gru_seq, multi_cell, lstm_concat_state,
                                 static_lstm, static_lstm_seq, bidi_gru_seq, static_bidi, custom_cell, sequence_helpers, embedding, nce,
                                 sampled_softmax, sampler_counts)}


def weights_for(name: str, shape, dtype) -> np.ndarray:
    """A variable's fixed value: seeded by its name."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(name)) % (2 ** 31)
    return (np.random.RandomState(seed).randn(*shape) * 0.4).astype(dtype)


def evaluate(tf, case: str, dtype=np.float32) -> dict:
    """``{label: value}`` of the case's outputs and ``grad/<output>/<input or variable>`` gradients."""
    g = tf.Graph()
    with g.as_default():
        feeds, outs = CASES[case](tf, dtype)
        variables = sorted(tf.trainable_variables(), key=lambda v: v.op.name)
        results = {}
        grads = {}
        for label, t in outs.items():
            if t.dtype not in (tf.float32, tf.float64):
                continue
            r = np.random.RandomState(7).randn(*[int(n) for n in _static(t, feeds)]).astype(dtype)
            wrt = [p for p, _ in feeds.values() if p.dtype in (tf.float32, tf.float64)] + variables
            grads[label] = (wrt, tf.gradients(tf.reduce_sum(t * r), wrt))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for v in variables:
                v.load(weights_for(v.op.name, v.shape.as_list(), dtype), sess)
            fd = {p: val for p, val in feeds.values()}
            for label, t in outs.items():
                results[label] = sess.run(t, fd)
            for label, (wrt, gs) in grads.items():
                for x, gv in zip(wrt, gs):
                    if gv is not None:
                        results[f"grad/{label}/{x.op.name}"] = sess.run(tf.convert_to_tensor(gv), fd)
        results["variables"] = np.array(" ".join(v.op.name for v in variables))
    return results


def _static(t, feeds):
    """The run-time shape of ``t``: its static shape with the batch size of the fed inputs."""
    dims = t.shape.as_list()
    return [B if n is None else n for n in dims]
