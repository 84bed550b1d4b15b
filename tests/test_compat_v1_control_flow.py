"""distnet.compat.v1 control flow: tf.cond, tf.case, tf.while_loop, and
control_dependencies with tf.identity, as TF1 runs them (issue 20)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import distnet.compat.v1 as tf
from distnet.errors import InvalidArgumentError
from tf1_gradcheck import check_graph_gradients


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


# -- cond ------------------------------------------------------------------------------------

def test_cond_picks_the_branch_at_run_time_and_uses_outside_tensors():
    x = tf.placeholder(tf.float32, [])
    w = tf.Variable(3.0)
    y = tf.cond(x > 0, lambda: x * w, lambda: x - w)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(y, {x: 2.0}) == 6.0
        assert sess.run(y, {x: -2.0}) == -5.0


def test_cond_runs_only_the_taken_branchs_ops_but_always_the_outside_ones():
    counter_in = tf.Variable(0)
    counter_out = tf.Variable(0)
    p = tf.placeholder(tf.bool, [])
    outside = tf.assign_add(counter_out, 1)   # made outside: runs whichever branch is taken (TF1)

    def true_fn():
        with tf.control_dependencies([tf.assign_add(counter_in, 1)]):   # made inside: only when taken
            return tf.identity(outside) * 10

    y = tf.cond(p, true_fn, lambda: outside * 1)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(y, {p: False})
        sess.run(y, {p: False})
        assert sess.run([counter_in, counter_out]) == [0, 2]
        assert sess.run(y, {p: True}) == 30
        assert sess.run([counter_in, counter_out]) == [1, 3]


def test_cond_gradient_flows_through_the_taken_branch_only():
    x = tf.placeholder(tf.float32, [])
    w = tf.Variable(3.0)
    y = tf.cond(x > 0, lambda: x * w * w, lambda: 5.0 * x)
    gx, gw = tf.gradients(y, [x, w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run([gx, gw], {x: 2.0}) == [9.0, 12.0]
        assert sess.run([gx, gw], {x: -2.0}) == [5.0, 0.0]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cond_float64_gradient_check(sign):
    a = np.random.RandomState(1).randn(3, 2) * 0.5 + sign * 2.0

    def build(t):
        return tf.cond(tf.reduce_sum(t) > 0, lambda: tf.exp(t) * t, lambda: tf.square(t) - t * 3.0)

    check_graph_gradients(build, [a])


def test_cond_structures_singleton_list_and_strict():
    p = tf.placeholder(tf.bool, [])
    x = tf.constant(2.0)
    pair = tf.cond(p, lambda: (x, x * 2), lambda: (x * 3, x * 4))
    single = tf.cond(p, lambda: [x], lambda: [x * 3])
    strict = tf.cond(p, lambda: [x], lambda: [x * 3], strict=True)
    nested = tf.cond(p, lambda: {"a": x, "b": (x, x)}, lambda: {"a": -x, "b": (x * 0, x * 5)})
    assert isinstance(pair, tuple) and isinstance(single, tf.Tensor) and isinstance(strict, list)
    with tf.Session() as sess:
        assert sess.run(pair, {p: True}) == (2.0, 4.0)
        assert sess.run(pair, {p: False}) == (6.0, 8.0)
        assert sess.run(single, {p: False}) == 6.0
        assert sess.run(nested, {p: False}) == {"a": -2.0, "b": (0.0, 10.0)}


def test_cond_static_shape_merges_the_branches():
    p = tf.placeholder(tf.bool, [])
    a = tf.placeholder(tf.float32, [None, 3])
    y = tf.cond(p, lambda: tf.zeros([4, 3]), lambda: a)
    assert y.shape.as_list() == [None, 3]
    assert tf.cond(p, lambda: tf.zeros([4, 3]), lambda: tf.ones([4, 3])).shape.as_list() == [4, 3]


def test_cond_errors_are_tf1s():
    x = tf.constant(1.0)
    with pytest.raises(TypeError, match="Python bool"):
        tf.cond(True, lambda: x, lambda: x)
    with pytest.raises(ValueError, match="same structure"):
        tf.cond(x > 0, lambda: (x, x), lambda: x)
    with pytest.raises(ValueError, match="same dtype"):
        tf.cond(x > 0, lambda: x, lambda: tf.constant(1))
    with pytest.raises(TypeError, match="bool tensor"):
        tf.cond(x, lambda: x, lambda: x)


def test_cond_with_operations_as_branches():
    v = tf.Variable(0.0)
    p = tf.placeholder(tf.bool, [])
    step = tf.cond(p, lambda: tf.assign_add(v, 1.0).op, lambda: tf.no_op())
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(step, {p: True}) is None
        sess.run(step, {p: False})
        sess.run(step, {p: True})
        assert sess.run(v) == 2.0


def test_nested_cond():
    x = tf.placeholder(tf.float32, [])
    y = tf.cond(x > 0, lambda: tf.cond(x > 10, lambda: x * 100, lambda: x * 10), lambda: -x)
    g = tf.gradients(y, x)[0]
    with tf.Session() as sess:
        assert [sess.run([y, g], {x: v}) for v in (20.0, 2.0, -3.0)] == [[2000.0, 100.0], [20.0, 10.0], [3.0, -1.0]]


def test_train_eval_switch_with_dropout():
    is_training = tf.placeholder_with_default(False, [])
    h = tf.ones([4, 100])
    y = tf.cond(is_training, lambda: tf.nn.dropout(h, 0.5, seed=1), lambda: h)
    with tf.Session() as sess:
        assert np.all(sess.run(y) == 1.0)
        dropped = sess.run(y, {is_training: True})
        assert set(np.unique(dropped)) <= {0.0, 2.0} and (dropped == 0).any()


# -- case ------------------------------------------------------------------------------------

def test_case_first_true_default_exclusive_and_dict():
    x = tf.placeholder(tf.float32, [])
    with_default = tf.case([(x > 0, lambda: x), (x > 1, lambda: x * 2)], default=lambda: x * 10)
    no_default = tf.case([(x > 0, lambda: x), (x > 1, lambda: x * 2)])
    exclusive = tf.case([(x > 0, lambda: x), (x > 1, lambda: x * 2)], default=lambda: x * 10, exclusive=True)
    as_dict = tf.case({x < 0: lambda: -x, x > 5: lambda: x * 3}, default=lambda: x)
    with tf.Session() as sess:
        # recorded from TF 2.21's tf.compat.v1.case: 2.0, -20.0, 2.0, and the two errors below
        assert sess.run(with_default, {x: 2.0}) == 2.0
        assert sess.run(with_default, {x: -2.0}) == -20.0
        assert sess.run(no_default, {x: 2.0}) == 2.0
        with pytest.raises(InvalidArgumentError, match="None of conditions evaluated as True"):
            sess.run(no_default, {x: -2.0})
        assert sess.run(exclusive, {x: 0.5}) == 0.5
        with pytest.raises(InvalidArgumentError, match="exclusive=True: more than 1 conditions"):
            sess.run(exclusive, {x: 2.0})
        assert [sess.run(as_dict, {x: v}) for v in (-1.0, 7.0, 2.0)] == [1.0, 21.0, 2.0]


def test_case_gradient_check():
    a = np.array([0.3, -0.7, 1.1])

    def build(t):
        s = tf.reduce_sum(t)
        return tf.case([(s > 5.0, lambda: t * 0.0), (s > 0.0, lambda: t * t * t)], default=lambda: tf.exp(t))

    check_graph_gradients(build, [a])
    check_graph_gradients(build, [-a - 1.0])


# -- while_loop ------------------------------------------------------------------------------

def test_while_loop_results_and_structures():
    i = tf.constant(0)
    one = tf.while_loop(lambda i: i < 10, lambda i: i + 1, [i])
    pair = tf.while_loop(lambda i, j: i < 10, lambda i, j: (i + 1, j * 2), (i, tf.constant(1.0)))
    capped = tf.while_loop(lambda i, j: i < 10, lambda i, j: [i + 1, j * 2], [i, tf.constant(1.0)],
                           maximum_iterations=3)
    same = tf.while_loop(lambda i: i < 10, lambda i: [i + 1], [i], return_same_structure=True)
    assert isinstance(one, tf.Tensor) and isinstance(pair, tuple) and isinstance(capped, list)
    assert isinstance(same, list)
    with tf.Session() as sess:
        # recorded from TF 2.21's tf.compat.v1.while_loop
        assert sess.run([one, pair, capped]) == [10, (10, 1024.0), [3, 8.0]]
        assert sess.run(same) == [10]


def test_while_loop_nested_tuples_and_namedtuples():
    State = collections.namedtuple("State", "count total")
    x = tf.placeholder(tf.float32, [3])

    def body(i, s):
        return i + 1, State(s.count + 1, s.total + x * tf.cast(i, tf.float32))

    i, s = tf.while_loop(lambda i, s: i < 4, body, [tf.constant(0), State(tf.constant(0), tf.zeros([3]))])
    assert isinstance(s, State)
    with tf.Session() as sess:
        out = sess.run(s, {x: [1.0, 2.0, 3.0]})
        assert out.count == 4 and np.allclose(out.total, [6.0, 12.0, 18.0])


def test_while_loop_shape_invariants():
    start = tf.zeros([1])
    with pytest.raises(ValueError, match="enters the loop with shape .1,., but has shape .2,. after one iteration"):
        tf.while_loop(lambda a: tf.shape(a)[0] < 5, lambda a: tf.concat([a, a], 0), [start])
    grown = tf.while_loop(lambda a: tf.shape(a)[0] < 5, lambda a: tf.concat([a, a + 1], 0), [start],
                          shape_invariants=[tf.TensorShape([None])])
    assert grown.shape.as_list() == [None]
    with tf.Session() as sess:
        assert sess.run(grown).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]


def test_while_loop_gradient_power_and_back_prop_false():
    x = tf.placeholder(tf.float32, [])
    _, p = tf.while_loop(lambda i, p: i < 3, lambda i, p: (i + 1, p * x), [0, tf.constant(1.0)])
    _, q = tf.while_loop(lambda i, p: i < 3, lambda i, p: (i + 1, p * x), [0, tf.constant(1.0)], back_prop=False)
    g = tf.gradients(p, x)[0]
    gq = tf.gradients(q + x, x)[0]
    with tf.Session() as sess:
        assert sess.run([p, g], {x: 2.0}) == [8.0, 12.0]
        assert sess.run(gq, {x: 2.0}) == 1.0


def test_while_loop_float64_gradient_check_unrolled_recurrence():
    rs = np.random.RandomState(0)
    w0, h0 = rs.randn(3, 3) * 0.5, rs.randn(2, 3)

    def build(w, h):
        _, out = tf.while_loop(lambda k, h: k < 4, lambda k, h: (k + 1, tf.tanh(tf.matmul(h, w)) + h * 0.5),
                               [tf.constant(0), h])
        return out

    check_graph_gradients(build, [w0, h0])


def test_while_loop_trains_a_variable_through_the_loop():
    w = tf.Variable(0.5)
    _, y = tf.while_loop(lambda i, y: i < 4, lambda i, y: (i + 1, y * w + 1.0), [0, tf.constant(0.0)])
    loss = tf.square(y - 3.0)
    step = tf.train.GradientDescentOptimizer(0.05).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = sess.run(loss)
        for _ in range(30):
            sess.run(step)
        assert sess.run(loss) < first / 100


def test_while_loop_with_a_tensor_maximum_iterations_and_errors():
    n = tf.placeholder(tf.int32, [])
    r = tf.while_loop(lambda i: i < 100, lambda i: i + 2, [tf.constant(0)], maximum_iterations=n)
    with tf.Session() as sess:
        assert sess.run(r, {n: 4}) == 8
    with pytest.raises(ValueError, match="list or tuple"):
        tf.while_loop(lambda i: i < 3, lambda i: i + 1, tf.constant(0))
    with pytest.raises(ValueError, match="structure of loop_vars"):
        tf.while_loop(lambda i, j: i < 3, lambda i, j: i + 1, [tf.constant(0), tf.constant(1)])
    with pytest.raises(TypeError, match="dtype"):
        tf.while_loop(lambda i: i < 3, lambda i: tf.cast(i, tf.float32), [tf.constant(0)])


def test_cond_inside_while_loop():
    x = tf.placeholder(tf.float32, [])

    def body(i, acc):
        return i + 1, tf.cond(tf.equal(i % 2, 0), lambda: acc + x, lambda: acc * x)

    _, acc = tf.while_loop(lambda i, a: i < 4, body, [tf.constant(0), tf.constant(0.0)])
    g = tf.gradients(acc, x)[0]
    with tf.Session() as sess:
        # ((x) * x + x) * x with x = 2: 12; d/dx of x^3 + x^2 = 3x^2 + 2x = 16
        assert sess.run([acc, g], {x: 2.0}) == [12.0, 16.0]


# -- control_dependencies and identity -------------------------------------------------------

def test_identity_under_control_dependencies_reads_after_the_update():
    v = tf.Variable(1.0)
    inc = tf.assign_add(v, 1.0)
    with tf.control_dependencies([inc]):
        after = tf.identity(v)
        plain = v          # TF1's trap: no new op, so no dependency
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(after) == 2.0
        assert sess.run(plain) == 2.0          # the update did not run again
        assert sess.run([v, after]) == [2.0, 3.0]


def test_two_minimize_ops_in_one_run_use_the_same_forward_values():
    w, v = tf.Variable(2.0), tf.Variable(3.0)
    d_step = tf.train.GradientDescentOptimizer(0.1).minimize(w * v, var_list=[w])
    g_step = tf.train.GradientDescentOptimizer(0.1).minimize(tf.square(w * v), var_list=[v])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        _, _, w1, v1 = sess.run([d_step, g_step, w, v])
        # both gradients at w=2, v=3: d(wv)/dw = 3, d((wv)^2)/dv = 2*6*2 = 24
        assert np.isclose(w1, 2.0 - 0.3) and np.isclose(v1, 3.0 - 2.4)


def test_two_optimizers_of_one_variable_in_one_run_sum_like_tf1():
    w = tf.Variable(2.0)
    a = tf.train.GradientDescentOptimizer(0.1).minimize(w * 3.0)
    b = tf.train.GradientDescentOptimizer(0.1).minimize(w * 3.0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run([a, b])
        assert np.isclose(sess.run(w), 2.0 - 0.6)


# -- TensorArray ------------------------------------------------------------------------------

def _rnn_by_hand(x, W, steps):
    inputs = tf.TensorArray(tf.float32 if x.dtype == np.float32 else tf.float64, size=steps).unstack(x)
    outs = tf.TensorArray(inputs.dtype, size=steps)

    def body(t, h, outs):
        h = tf.tanh(tf.matmul(h, W) + inputs.read(t))
        return t + 1, h, outs.write(t, h)

    _, h, outs = tf.while_loop(lambda t, h, o: t < steps, body, [0, tf.zeros_like(inputs.read(0)), outs])
    return h, outs


def test_tensor_array_rnn_by_hand_matches_tf():
    rs = np.random.RandomState(0)
    xv = rs.randn(4, 2, 3).astype(np.float32)
    x = tf.placeholder(tf.float32, [4, 2, 3])
    W = tf.Variable((rs.randn(3, 3) * 0.5).astype(np.float32))
    h, outs = _rnn_by_hand(x, W, 4)
    seq = outs.stack()
    assert seq.shape.as_list() == [None, 2, 3] and h.shape.as_list() == [2, 3]
    loss = tf.reduce_sum(seq * tf.constant(np.arange(24.0).reshape(4, 2, 3).astype(np.float32)))
    g = tf.gradients(loss, W)[0]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sv, gv, lv, n = sess.run([seq, g, loss, outs.size()], {x: xv})
    # recorded from TF 2.21's tf.compat.v1 (the same program with TensorArray and while_loop)
    np.testing.assert_allclose(sv[-1], [[0.901905, -0.967536, -0.996436], [0.912854, 0.61608, 0.095107]], atol=2e-6)
    np.testing.assert_allclose(gv, [[9.456174, 78.732269, 42.900673], [-0.153651, 40.956825, 14.249518],
                                    [0.97788, 1.701024, -5.143606]], rtol=2e-5, atol=2e-5)
    assert abs(lv - 60.87096) < 1e-3 and n == 4


def test_tensor_array_float64_gradient_check():
    rs = np.random.RandomState(5)
    check_graph_gradients(lambda x, w: _rnn_by_hand(x, w, 3)[1].stack(), [rs.randn(3, 2, 2), rs.randn(2, 2) * 0.5])


def test_tensor_array_read_gather_concat_dynamic_size_and_errors():
    ta = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    ta = ta.write(0, [1.0, 2.0]).write(2, [5.0, 6.0]).write(1, [3.0, 4.0])
    fixed = tf.TensorArray(tf.float32, size=2)
    twice = fixed.write(0, [1.0]).write(0, [2.0])
    past = fixed.write(2, [1.0])
    unread = fixed.write(1, [1.0]).stack()
    with tf.Session() as sess:
        assert sess.run(ta.size()) == 3
        assert sess.run(ta.read(1)).tolist() == [3.0, 4.0]
        assert sess.run(ta.gather([2, 0])).tolist() == [[5.0, 6.0], [1.0, 2.0]]
        assert sess.run(ta.concat()).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        with pytest.raises(InvalidArgumentError, match="already been written"):
            sess.run(twice.read(0))
        with pytest.raises(InvalidArgumentError, match="out of range"):
            sess.run(past.read(0))
        with pytest.raises(InvalidArgumentError, match="not yet been written"):
            sess.run(unread)
    with pytest.raises(ValueError, match="Inconsistent shapes"):
        tf.TensorArray(tf.float32, size=2).write(0, [1.0]).write(1, [1.0, 2.0])
