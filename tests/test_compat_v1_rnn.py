"""distnet.compat.v1's RNN cells and loops, embedding_lookup, the candidate samplers,
nce_loss, sampled_softmax_loss and contrib.seq2seq.sequence_loss.

Values and gradients are held against real TensorFlow 2.21's, recorded by
tests/record_rnn_reference.py from the same case code (tests/rnn_cases.py);
float64 gradients against central differences.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rnn_cases

import distnet.compat.v1 as tf
from distnet.errors import InvalidArgumentError

REFERENCE = np.load(Path(__file__).parent / "rnn_reference.npz")


# -- against TensorFlow's numbers ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(rnn_cases.CASES))
def test_values_and_gradients_match_tensorflow(case, dtype):
    got = rnn_cases.evaluate(tf, case, dtype)
    prefix = f"{np.dtype(dtype).name}/{case}/"
    keys = [k[len(prefix):] for k in REFERENCE.files if k.startswith(prefix)]
    assert len(keys) > 1
    tol = 2e-5 if dtype == np.float32 else 1e-10
    for k in keys:
        ref = REFERENCE[prefix + k]
        if ref.dtype.kind == "U":   # the variables' names
            assert str(got[k]) == str(ref), k
            continue
        assert np.shape(got[k]) == ref.shape, k
        np.testing.assert_allclose(got[k], ref, rtol=tol, atol=tol, err_msg=k)
    # One known difference: TF1 gives None for a part of the final state that does not depend on a
    # variable (a lower layer's state and an upper layer's weights); here it is a zero gradient.
    for k in set(got) - set(keys):
        assert k.startswith("grad/") and not np.any(got[k]), k


def test_variable_names_are_tf1s():
    names = str(REFERENCE["float32/multi_cell/variables"]).split()
    assert names == [
        "rnn/multi_rnn_cell/cell_0/gru_cell/candidate/bias", "rnn/multi_rnn_cell/cell_0/gru_cell/candidate/kernel",
        "rnn/multi_rnn_cell/cell_0/gru_cell/gates/bias", "rnn/multi_rnn_cell/cell_0/gru_cell/gates/kernel",
        "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/bias", "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel"]
    assert str(rnn_cases.evaluate(tf, "multi_cell")["variables"]).split() == names
    assert "bidirectional_rnn/bw/basic_lstm_cell/kernel" in str(REFERENCE["float32/bidi_gru_seq/variables"])


# -- float64 gradient checks (central differences at random coordinates) ---------------------------

def _numeric_check(case: str, label: str, coords: int = 6, eps: float = 1e-6):
    g = tf.Graph()
    with g.as_default():
        feeds, outs = rnn_cases.CASES[case](tf, np.float64)
        out = outs[label]
        variables = sorted(tf.trainable_variables(), key=lambda v: v.op.name)
        r = np.random.RandomState(7).randn(*rnn_cases._static(out, feeds))
        loss = tf.reduce_sum(out * r)
        wrt = [p for p, _ in feeds.values() if p.dtype == np.float64] + variables
        pairs = [(x, gr) for x, gr in zip(wrt, tf.gradients(loss, wrt)) if gr is not None]
        wrt, grads = [x for x, _ in pairs], [gr for _, gr in pairs]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = {v: rnn_cases.weights_for(v.op.name, v.shape.as_list(), np.float64) for v in variables}
            values.update({p: np.array(val, copy=True) for p, val in feeds.values()})

            def f():
                return float(sess.run(loss, {k: v for k, v in values.items()}))

            analytic = sess.run(grads, {k: v for k, v in values.items()})
            rng = np.random.RandomState(0)
            checked = 0
            for x, ga in zip(wrt, analytic):
                arr = values[x]
                for i in rng.choice(arr.size, size=min(coords, arr.size), replace=False):
                    flat = arr.reshape(-1)
                    old = flat[i]
                    flat[i] = old + eps
                    up = f()
                    flat[i] = old - eps
                    down = f()
                    flat[i] = old
                    num = (up - down) / (2 * eps)
                    assert abs(num - ga.reshape(-1)[i]) <= 1e-6 + 1e-5 * abs(num), (x.op.name, i, num, ga.reshape(-1)[i])
                    checked += 1
            assert checked >= coords


@pytest.mark.parametrize("case,label", [
    ("basic_rnn", "out"), ("basic_lstm_seq", "out"), ("basic_lstm_seq", "c"), ("lstm_peep_proj", "out"),
    ("lstm_peep_proj", "c"), ("gru_seq", "state"), ("multi_cell", "out"), ("lstm_concat_state", "state"),
    ("static_lstm", "last"), ("static_lstm_seq", "outs"), ("bidi_gru_seq", "bw"), ("bidi_gru_seq", "sb_c"),
    ("static_bidi", "outs"), ("custom_cell", "out"), ("sequence_helpers", "rev"), ("sequence_helpers", "rev_tm"), ("embedding", "mod"), ("embedding", "div"), ("nce", "plain"), ("nce", "hits"),
    ("sampled_softmax", "loss"), ("sampled_softmax", "keep"),
])
def test_float64_gradients(case, label):
    _numeric_check(case, label)


# -- sequence_length semantics -------------------------------------------------------------------

def test_dynamic_rnn_zeroes_outputs_and_freezes_state_past_each_length():
    x = np.random.RandomState(0).randn(3, 5, 2).astype(np.float32)
    with tf.Graph().as_default():
        xp = tf.placeholder(tf.float32, [None, 5, 2])
        n = tf.placeholder(tf.int32, [None])
        out, state = tf.nn.dynamic_rnn(tf.nn.rnn_cell.GRUCell(4), xp, sequence_length=n, dtype=tf.float32)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            o, s = sess.run([out, state], {xp: x, n: [5, 2, 0]})
            full = sess.run(out, {xp: x, n: [5, 5, 5]})
    assert not np.any(o[1, 2:]) and not np.any(o[2]) and np.all(o[1, :2] != 0)
    np.testing.assert_array_equal(s[1], o[1, 1])      # the state at the length
    np.testing.assert_array_equal(s[2], 0)            # length 0: the initial state
    np.testing.assert_array_equal(o[1, :2], full[1, :2])


def test_dropout_wrapper():
    x = np.ones((4, 3, 2), np.float32)
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        keep = tf.placeholder(tf.float32, [])
        cell = tf.nn.rnn_cell.BasicLSTMCell(8)
        out, _ = tf.nn.dynamic_rnn(tf.nn.rnn_cell.DropoutWrapper(cell, output_keep_prob=keep), tf.constant(x),
                                   dtype=tf.float32)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            kept = sess.run(out, {keep: 1.0})
            dropped = sess.run(out, {keep: 0.5})
    zero = dropped == 0
    assert 0.2 < zero.mean() < 0.8
    np.testing.assert_allclose(dropped[~zero], 2 * kept[~zero], rtol=1e-6)


# -- sequence_loss against its definition -----------------------------------------------------------

def _sequence_loss_numpy(logits, targets, weights, across_time, across_batch):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    xent = -np.take_along_axis(logp, targets[..., None], -1)[..., 0] * weights
    if across_time and across_batch:
        return xent.sum() / (weights.sum() + 1e-12)
    if across_time:
        return xent.sum(1) / (weights.sum(1) + 1e-12)
    if across_batch:
        return xent.sum(0) / (weights.sum(0) + 1e-12)
    return xent


@pytest.mark.parametrize("across_time", [True, False])
@pytest.mark.parametrize("across_batch", [True, False])
def test_sequence_loss(across_time, across_batch):
    rng = np.random.RandomState(2)
    logits = rng.randn(3, 4, 5)
    targets = rng.randint(0, 5, (3, 4))
    weights = (rng.rand(3, 4) > 0.3).astype(np.float64)
    with tf.Graph().as_default():
        lp = tf.placeholder(tf.float64, [None, 4, 5])
        loss = tf.contrib.seq2seq.sequence_loss(lp, tf.constant(targets), tf.constant(weights),
                                                average_across_timesteps=across_time,
                                                average_across_batch=across_batch)
        grad = tf.gradients(tf.reduce_sum(loss), lp)[0]
        with tf.Session() as sess:
            got, g = sess.run([loss, grad], {lp: logits})

            def f(v):
                return float(np.sum(sess.run(loss, {lp: v})))

            eps, num = 1e-6, np.zeros_like(logits)
            for i in range(logits.size):
                up, down = logits.copy().reshape(-1), logits.copy().reshape(-1)
                up[i] += eps
                down[i] -= eps
                num.reshape(-1)[i] = (f(up.reshape(logits.shape)) - f(down.reshape(logits.shape))) / (2 * eps)
    np.testing.assert_allclose(got, _sequence_loss_numpy(logits, targets, weights, across_time, across_batch),
                               rtol=1e-12)
    np.testing.assert_allclose(g, num, atol=1e-7)


@pytest.mark.parametrize("average_across_timesteps", [True, False])
@pytest.mark.parametrize("average_across_batch", [True, False])
def test_legacy_seq2seq_sequence_loss(average_across_timesteps, average_across_batch):
    rng = np.random.RandomState(5)
    logits = rng.randn(4, 3, 6)                       # [time, batch, classes] as lists per step
    targets = rng.randint(0, 6, (4, 3))
    weights = rng.rand(4, 3)
    with tf.Graph().as_default():
        lp = [tf.placeholder(tf.float64, [3, 6]) for _ in range(4)]
        per_example = tf.contrib.legacy_seq2seq.sequence_loss_by_example(
            lp, [tf.constant(t) for t in targets], [tf.constant(w) for w in weights],
            average_across_timesteps=average_across_timesteps)
        loss = tf.contrib.legacy_seq2seq.sequence_loss(
            lp, [tf.constant(t) for t in targets], [tf.constant(w) for w in weights],
            average_across_timesteps=average_across_timesteps, average_across_batch=average_across_batch)
        grads = tf.gradients(loss, lp)
        with tf.Session() as sess:
            feed = {p: v for p, v in zip(lp, logits)}
            got, total, g = sess.run([per_example, loss, grads], feed)
            eps, k = 1e-6, (2, 1, 4)
            up, down = logits.copy(), logits.copy()
            up[k] += eps
            down[k] -= eps
            num = (sess.run(loss, {p: v for p, v in zip(lp, up)}) - sess.run(loss, {p: v for p, v in zip(lp, down)}))
    z = logits - logits.max(-1, keepdims=True)
    xent = -np.take_along_axis(z - np.log(np.exp(z).sum(-1, keepdims=True)), targets[..., None], -1)[..., 0]
    want = (xent * weights).sum(0)
    if average_across_timesteps:
        want = want / (weights.sum(0) + 1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(total, want.sum() / (3 if average_across_batch else 1), rtol=1e-12)
    np.testing.assert_allclose(g[2][1, 4], num / (2 * eps), rtol=1e-6)


def test_sequence_mask_and_reverse_sequence_errors():
    with tf.Graph().as_default(), tf.Session() as sess:
        np.testing.assert_array_equal(sess.run(tf.sequence_mask([1, 3, 0])),
                                      [[True, False, False], [True, True, True], [False, False, False]])
        with pytest.raises(ValueError, match="seq_axis and batch_axis 0 and 1"):
            tf.reverse_sequence(tf.zeros([2, 3, 4]), [1, 2], seq_axis=2, batch_axis=0)


# -- the samplers --------------------------------------------------------------------------------

def test_log_uniform_sampler_draws_distinct_classes_from_zipfs_law():
    with tf.Graph().as_default():
        labels = tf.constant([[0], [3]], dtype=tf.int64)
        s, tc, sc = tf.nn.log_uniform_candidate_sampler(labels, 1, 20, True, 50, seed=3)
        s2, _, _ = tf.nn.log_uniform_candidate_sampler(labels, 1, 1000, False, 50, seed=4)
        with tf.Session() as sess:
            a = sess.run([s, tc, sc])
            b = sess.run(s)
            many = np.concatenate([sess.run(s2) for _ in range(20)])
    assert a[0].dtype == np.int64 and len(set(a[0].tolist())) == 20 and a[0].min() >= 0 and a[0].max() < 50
    assert not np.array_equal(a[0], b)                            # a fresh draw per run
    p = np.log((np.arange(50) + 2) / (np.arange(50) + 1)) / np.log(51)
    assert a[1].shape == (2, 1) and a[2].shape == (20,)
    # unique draws: every expected count is 1 - (1 - p)^tries for one number of tries >= 20
    tries = np.log1p(-a[2].astype(np.float64)) / np.log1p(-p[a[0]])
    assert np.all(np.abs(tries - tries[0]) < 1e-3 * tries[0]) and tries[0] >= 20 - 1e-3
    np.testing.assert_allclose(a[1][:, 0], -np.expm1(tries[0] * np.log1p(-p[[0, 3]])), rtol=1e-5)
    freq = np.bincount(many, minlength=50) / many.size
    assert abs(freq[0] - p[0]) < 0.02 and abs(freq[:10].sum() - p[:10].sum()) < 0.02


def test_sampler_is_reproducible_with_a_graph_seed():
    def draw():
        with tf.Graph().as_default():
            tf.set_random_seed(11)
            s, _, _ = tf.nn.uniform_candidate_sampler(tf.constant([[1]], dtype=tf.int64), 1, 5, True, 30)
            with tf.Session() as sess:
                return [sess.run(s) for _ in range(3)]
    first, second = draw(), draw()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_nce_loss_with_the_default_sampler_trains():
    rng = np.random.RandomState(0)
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        x = tf.constant(rng.randn(16, 4).astype(np.float32))
        y = tf.constant(rng.randint(0, 40, (16, 1)))
        w = tf.Variable(rng.randn(40, 4).astype(np.float32) * 0.1)
        b = tf.Variable(np.zeros(40, np.float32))
        loss = tf.reduce_mean(tf.nn.nce_loss(w, b, y, x, num_sampled=8, num_classes=40))
        step = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            first = sess.run(loss)
            for _ in range(60):
                sess.run(step)
            last = np.mean([sess.run(loss) for _ in range(5)])
    assert last < 0.5 * first


# -- errors -------------------------------------------------------------------------------------

def test_clear_errors():
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 3, 2])
        with pytest.raises(ValueError, match="must give a dtype"):
            tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicRNNCell(2), x)
        with pytest.raises(ValueError, match="rank 3"):
            tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicRNNCell(2), x[:, 0], dtype=tf.float32)
        cell = tf.nn.rnn_cell.BasicLSTMCell(2)
        with pytest.raises(ValueError, match="a new cell per layer"):
            tf.nn.rnn_cell.MultiRNNCell([cell] * 2)
        with pytest.raises(ValueError, match="partition strategy"):
            tf.nn.embedding_lookup([tf.ones([2, 2])], [0], partition_strategy="hash")
        with pytest.raises(TypeError, match="RNNCell"):
            tf.nn.dynamic_rnn(lambda a, b: (a, b), x, dtype=tf.float32)
        n = tf.placeholder(tf.int32, [None])
        out, _ = tf.nn.dynamic_rnn(tf.nn.rnn_cell.GRUCell(2), x, sequence_length=n, dtype=tf.float32, scope="g")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            with pytest.raises(InvalidArgumentError, match="vector of 2 lengths"):
                sess.run(out, {x: np.zeros((2, 3, 2)), n: [1, 2, 3]})


def test_a_second_model_under_a_reusing_scope_shares_the_variables():
    cell = tf.nn.rnn_cell
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 5, 3])
        with tf.variable_scope("model"):
            a, _ = tf.nn.dynamic_rnn(cell.MultiRNNCell([cell.BasicLSTMCell(4) for _ in range(2)]), x,
                                     dtype=tf.float32)
        with tf.variable_scope("model", reuse=True):
            b, _ = tf.nn.dynamic_rnn(cell.MultiRNNCell([cell.BasicLSTMCell(4) for _ in range(2)]), x[:, :2],
                                     dtype=tf.float32)
        with tf.variable_scope("other"):
            for _ in range(2):
                c = cell.GRUCell(3)
                c(x[:, 0], c.zero_state(2, tf.float32))
        # TensorFlow 2.21's names for the same program (tf.compat.v1)
        assert [v.op.name for v in tf.global_variables()] == [
            "model/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel",
            "model/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/bias",
            "model/rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel",
            "model/rnn/multi_rnn_cell/cell_1/basic_lstm_cell/bias",
            "other/gru_cell/gates/kernel", "other/gru_cell/gates/bias", "other/gru_cell/candidate/kernel",
            "other/gru_cell/candidate/bias", "other/gru_cell_1/gates/kernel", "other/gru_cell_1/gates/bias",
            "other/gru_cell_1/candidate/kernel", "other/gru_cell_1/candidate/bias"]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            va, vb = sess.run([a, b], {x: np.random.RandomState(0).randn(2, 5, 3)})
        np.testing.assert_allclose(va[:, :2], vb, rtol=1e-6)


def test_a_fixed_size_initial_state_meets_a_none_batch():
    # TF1 programs write zero_state(batch_size, ...) with an int and a placeholder of batch None
    x = np.random.RandomState(0).randn(4, 3, 2).astype(np.float32)
    with tf.Graph().as_default():
        xp = tf.placeholder(tf.float32, [None, 3, 2])
        cell = tf.nn.rnn_cell.BasicLSTMCell(5)
        out, state = tf.nn.dynamic_rnn(cell, xp, initial_state=cell.zero_state(4, tf.float32))
        assert out.shape.as_list()[1:] == [3, 5] and state.h.shape.as_list()[1:] == [5]
        other, _ = tf.nn.dynamic_rnn(cell, xp, dtype=tf.float32, scope="rnn")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            a, b = sess.run([out, other], {xp: x})
    np.testing.assert_array_equal(a, b)


def test_a_cell_called_on_a_rank_1_input_says_it_wants_batch_by_depth():
    with tf.Graph().as_default():
        cell = tf.nn.rnn_cell.BasicLSTMCell(4)
        x = tf.placeholder(tf.float32, [3])
        with pytest.raises(ValueError, match=r"BasicLSTMCell: inputs: Expect: rank 2, \[batch, depth\]"):
            cell(x, cell.zero_state(1, tf.float32))
