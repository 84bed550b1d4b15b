"""The everyday TF1 calls of issue 20 in distnet.compat.v1 and their native ops:
values against numbers recorded from TensorFlow 2.21's tf.compat.v1
(tests/tf1_reference/ops_extra.json, written by record_ops_extra.py), float64
gradient checks, and TF1's conveniences (int shapes, tf.compat.v1, deprecated
aliases, numpy interop, tensor stddev, shape merging, RunOptions)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import distnet
import distnet.compat.v1 as tf
from distnet import registry
from distnet.errors import InvalidArgumentError, ShapeError
from distnet.gradcheck import check_gradients
from tf1_gradcheck import check_graph_gradients

REF = json.loads((Path(__file__).parent / "tf1_reference" / "ops_extra.json").read_text())
A = np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.5]], np.float32)
B = np.array([4.0, -1.0], np.float32)
X64 = np.array([[1.0, -2.0, 0.0], [0.5, 0.0, -1.5]])


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def run(fetches, feed=None):
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return sess.run(fetches, feed)


def close(actual, key, rtol=1e-6, atol=1e-7):
    expected = REF[key]
    if isinstance(actual, (list, tuple)):
        assert len(actual) == len(expected), key
        for a, e in zip(actual, expected):
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=atol,
                                       err_msg=key)
    else:
        np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol,
                                   atol=atol, err_msg=key)


# -- clipping --------------------------------------------------------------------------------

def test_clip_by_global_norm_matches_tf_and_keeps_none():
    a, b = tf.constant(A), tf.constant(B)
    clipped, norm = tf.clip_by_global_norm([a, None, b], 2.0)
    assert clipped[1] is None
    close(run([clipped[0], clipped[2], norm]), "cgn")
    clipped, norm = tf.clip_by_global_norm([a, b], 2.0, use_norm=tf.constant(10.0))
    close(run([clipped[0], clipped[1], norm]), "cgn_use")
    clipped, norm = tf.clip_by_global_norm((a, b), 100.0)
    close(run([clipped[0], norm]), "cgn_big")
    with pytest.raises(TypeError, match="list or tuple"):
        tf.clip_by_global_norm(a, 1.0)


def test_clip_by_global_norm_of_an_infinite_norm_is_nan_as_tf1():
    clipped, norm = tf.clip_by_global_norm([tf.constant([np.inf, 1.0])], 1.0)
    values, n = run([clipped[0], norm])
    assert np.isinf(n) and np.isnan(values).all()


def test_clip_by_norm_matches_tf():
    a = tf.constant(A)
    close(run(tf.clip_by_norm(a, 2.0)), "cbn")
    close(run(tf.clip_by_norm(a, 2.0, axes=[1])), "cbn_axes")
    close(run(tf.clip_by_norm(tf.zeros([3]), 1.0)), "cbn_zero")


def test_clipping_gradients_float64():
    close(_graph_grad(lambda x: tf.clip_by_norm(x, 1.0)), "g_cbn", rtol=1e-12)
    check_graph_gradients(lambda x: tf.clip_by_norm(x, 1.0, axes=[1]), [X64 + 0.3])
    check_graph_gradients(lambda x, y: tf.clip_by_global_norm([x, y], 1.5)[0][0] * 2.0
                          + tf.reduce_sum(tf.clip_by_global_norm([x, y], 1.5)[0][1]), [X64, np.array([0.4, -2.0])])


def _graph_grad(fn):
    x = tf.placeholder(tf.float64, [2, 3])
    loss = tf.reduce_sum(fn(x) * tf.constant(np.arange(6.0).reshape(2, 3)))
    return run(tf.gradients(loss, x)[0], {x: X64})


def test_gradient_clipping_loop_with_compute_and_apply():
    w = tf.Variable(np.array([3.0, 4.0], np.float32))
    loss = tf.reduce_sum(w * w)
    opt = tf.train.GradientDescentOptimizer(0.5)
    grads, variables = zip(*opt.compute_gradients(loss))
    clipped, norm = tf.clip_by_global_norm(grads, 1.0)
    step = opt.apply_gradients(zip(clipped, variables))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        _, n = sess.run([step, norm])
        assert np.isclose(n, 10.0)
        # gradient [6, 8] clipped to [0.6, 0.8]
        np.testing.assert_allclose(sess.run(w), [3.0 - 0.3, 4.0 - 0.4], rtol=1e-6)


# -- reductions and element-wise ops ---------------------------------------------------------

def test_reduce_logsumexp_and_prod_match_tf():
    a = tf.constant(A)
    close(run(tf.reduce_logsumexp(a)), "lse")
    close(run(tf.reduce_logsumexp(a, axis=1)), "lse_ax")
    close(run(tf.reduce_logsumexp(a, 0, keepdims=True)), "lse_keep")
    assert run(tf.reduce_logsumexp(tf.constant([-np.inf, -np.inf]))) == -np.inf
    close(run(tf.reduce_prod(a)), "prod")
    close(run(tf.reduce_prod(a, 1)), "prod_ax")
    close(run(tf.reduce_prod(a, 0, keep_dims=True)), "prod_ax0")


def test_reduction_gradients_match_tf_and_finite_differences():
    close(_graph_grad_scalar(lambda x: tf.reduce_prod(x, 1)), "g_prod", rtol=1e-12)
    close(_graph_grad_scalar(lambda x: tf.reduce_prod(x + 1.0)), "g_prod_all", rtol=1e-12)
    close(_graph_grad_scalar(lambda x: tf.reduce_logsumexp(x, 1)), "g_lse", rtol=1e-12)
    rs = np.random.RandomState(0)
    check_gradients(lambda t: distnet.reduce_prod(t, axis=(0, 2)), [rs.randn(3, 2, 4)])
    check_gradients(lambda t: distnet.reduce_prod(t, axis=1, keepdims=True), [np.array([[0.0, 2.0, 3.0],
                                                                                       [0.0, 0.0, 1.5]])])
    check_gradients(lambda t: distnet.reduce_logsumexp(t, axis=(1,)), [rs.randn(3, 5) * 3])
    check_gradients(lambda t: distnet.reduce_logsumexp(t), [rs.randn(2, 3)])


def _graph_grad_scalar(fn):
    x = tf.placeholder(tf.float64, [2, 3])
    return run(tf.gradients(fn(x), x)[0], {x: X64})


def test_leaky_relu_matches_tf_and_is_an_activation():
    a = tf.constant(A)
    close(run(tf.nn.leaky_relu(a)), "lrelu")
    close(run(tf.nn.leaky_relu(a, alpha=0.01)), "lrelu_a")
    close(_graph_grad_scalar(lambda x: tf.nn.leaky_relu(x)), "g_lrelu", rtol=1e-12)   # alpha at exactly 0
    check_gradients(lambda t: distnet.nn.leaky_relu(t, alpha=0.3), [np.random.RandomState(1).randn(4, 3)])
    found = registry.lookup("activation", "leaky_relu")
    assert found is not None and found.obj is distnet.nn.leaky_relu
    layer = distnet.layers.Dense(2, activation="leaky_relu", kernel_initializer="ones")
    out = layer(distnet.constant([[-1.0, -2.0]]))
    np.testing.assert_allclose(out.numpy(), [[-0.6, -0.6]], rtol=1e-6)


def test_softplus_elu_selu_follow_tfs_documented_formulas_and_gradients():
    v = np.array([-30.0, -1.0, 0.0, 0.5, 40.0])
    t = tf.constant(v)
    sp, el, se = run([tf.nn.softplus(t), tf.nn.elu(t), tf.nn.selu(t)])
    # log(1 + u) rounds where TF's kernel has log1p: an absolute error of a few 1e-17 near x = -30
    np.testing.assert_allclose(sp, np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(el, np.where(v > 0, v, np.expm1(v)), rtol=1e-12)
    alpha, scale = 1.6732632423543772, 1.0507009873554805        # TF's documented SELU constants
    np.testing.assert_allclose(se, scale * np.where(v > 0, v, alpha * np.expm1(v)), rtol=1e-12)
    for fn in (tf.nn.softplus, tf.nn.elu, tf.nn.selu):
        check_graph_gradients(fn, [np.array([[-1.3, -0.2, 0.4], [1.7, 2.5, -3.0]])])
    g = run(tf.gradients(tf.reduce_sum(tf.nn.elu(t)), t)[0])      # no NaN from the unpicked branch at 40
    assert np.isfinite(g).all() and g[-1] == 1.0


def test_squared_difference_and_l2_normalize_match_tf():
    a = tf.constant(A)
    close(run(tf.squared_difference(a, tf.constant(B)[:1])), "sqd")
    close(run(tf.nn.l2_normalize(a, axis=1)), "l2n")
    close(run(tf.nn.l2_normalize(a, dim=0)), "l2n_dim")
    close(run(tf.nn.l2_normalize(a)), "l2n_all")
    close(run(tf.nn.l2_normalize(tf.constant([1e-4, 0.0]), epsilon=1e-6)), "l2n_eps")
    close(_graph_grad(lambda x: tf.nn.l2_normalize(x, 1)), "g_l2n", rtol=1e-12)
    rs = np.random.RandomState(2)
    check_gradients(lambda x, y: distnet.squared_difference(x, y), [rs.randn(3, 4), rs.randn(4)])
    check_gradients(lambda x: distnet.nn.l2_normalize(x, axis=0), [rs.randn(3, 4)])


# -- shapes: tile, split, top_k, gather_nd ---------------------------------------------------

def test_tile_split_top_k_gather_nd_match_tf():
    a = tf.constant(A)
    close(run(tf.tile(a, [2, 2])), "tile")
    close(run(tf.split(tf.reshape(tf.range(12.0), [2, 6]), 3, axis=1)), "split3")
    close(run(tf.split(tf.reshape(tf.range(12.0), [6, 2]), [1, -1, 2], 0)), "splitsz")
    values, indices = tf.nn.top_k(tf.constant([[1.0, 3.0, 3.0, 2.0], [5.0, 4.0, 6.0, 5.0]]), 3)
    assert indices.dtype == np.int32
    close(run([values, indices]), "topk")     # ties: the lower index first, as TF
    res = run(tf.nn.top_k(tf.constant([2.0, 1.0]), k=1))
    assert res.values.tolist() == [2.0] and res.indices.tolist() == [0]
    close(run(tf.gather_nd(a, [[1, 0], [0, 2]])), "gnd")
    close(run(tf.gather_nd(a, [[1], [0]])), "gnd_rows")
    close(run(tf.gather_nd(tf.reshape(tf.range(24.0), [2, 3, 4]), [[[0, 1], [1, 2]]])), "gnd3")


def test_shape_op_static_shapes_and_errors():
    x = tf.placeholder(tf.float32, [None, 6])
    assert [p.shape.as_list() for p in tf.split(x, [1, 2, -1], axis=1)] == [[None, 1], [None, 2], [None, 3]]
    assert tf.tile(x, [2, 1]).shape.as_list() == [None, 6]
    assert [t.shape.as_list() for t in tf.nn.top_k(x, 2)] == [[None, 2], [None, 2]]
    with pytest.raises(InvalidArgumentError, match="divisible"):
        tf.split(x, 4, axis=1)
    with pytest.raises(InvalidArgumentError, match="summing to 6"):
        tf.split(x, [1, 2], axis=1)
    with pytest.raises(ShapeError, match="multiples"):
        tf.tile(x, [2])
    with pytest.raises(InvalidArgumentError, match="k an int"):
        tf.nn.top_k(x, 7)
    with pytest.raises(distnet.ops.IndexOutOfRangeError, match="out of range"):
        distnet.gather_nd(distnet.constant(A), [[2, 0]])


def test_shape_op_gradients_float64():
    rs = np.random.RandomState(3)
    check_gradients(lambda t: distnet.tile(t, [2, 1, 3]), [rs.randn(2, 3, 2)])
    check_gradients(lambda t: distnet.gather_nd(t, [[1, 0], [1, 0], [0, 2]]), [rs.randn(2, 3)])  # repeated index
    check_gradients(lambda t: distnet.gather_nd(t, [[1], [0]]), [rs.randn(2, 3, 2)])
    check_gradients(lambda t: distnet.split(t, [1, 3], axis=1)[1] * 2.0, [rs.randn(2, 4)])
    check_gradients(lambda t: distnet.nn.top_k(t, 2)[0], [rs.randn(3, 5)])
    check_graph_gradients(lambda x: tf.split(x, 3, axis=1)[2] - tf.split(x, 3, axis=1)[0], [rs.randn(2, 6)])


# -- Adadelta --------------------------------------------------------------------------------

def _adadelta_by_hand(w, grad_fn, lr, rho, eps, steps):
    accum, accum_update, out = np.zeros_like(w), np.zeros_like(w), []
    for _ in range(steps):
        g = grad_fn(w)
        accum = rho * accum + (1 - rho) * g * g
        update = np.sqrt(accum_update + eps) / np.sqrt(accum + eps) * g
        w = w - lr * update
        accum_update = rho * accum_update + (1 - rho) * update * update
        out.append(w.copy())
    return out


def test_adadelta_native_first_steps_by_hand():
    target, scale = np.array([0.3, 0.1, -0.2]), np.array([1.0, 2.0, 3.0])
    w = distnet.Variable(np.array([1.0, -2.0, 0.5]), name="w")
    opt = distnet.optimizers.Adadelta(1.0, rho=0.9, epsilon=1e-6)
    expected = _adadelta_by_hand(w.numpy().copy(), lambda v: 2 * scale * (v - target), 1.0, 0.9, 1e-6, 3)
    for step in range(3):
        opt.minimize(lambda: distnet.reduce_sum(distnet.square(w - target) * scale), [w])
        np.testing.assert_allclose(w.numpy(), expected[step], rtol=1e-12)
    assert opt.slot_names == ("accum", "accum_update")
    assert distnet.optimizers.get("adadelta").learning_rate == 0.001


@pytest.mark.parametrize("kwargs,key", [({}, "adadelta_default"),
                                        ({"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6}, "adadelta_custom")])
def test_adadelta_optimizer_matches_tf(kwargs, key):
    w = tf.Variable(np.array([1.0, -2.0, 0.5], np.float32))
    loss = tf.reduce_sum(tf.square(w - tf.constant([0.3, 0.1, -0.2])) * tf.constant([1.0, 2.0, 3.0]))
    step = tf.train.AdadeltaOptimizer(**kwargs).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        seen = []
        for _ in range(3):
            sess.run(step)
            seen.append(sess.run(w))
    close(seen, key, rtol=1e-6, atol=1e-7)


# -- TF1's conveniences ----------------------------------------------------------------------

def test_tf_compat_v1_is_the_module():
    assert tf.compat.v1 is tf
    assert tf.compat.v1.placeholder is tf.placeholder and tf.compat.v1.nn.relu is tf.nn.relu
    x = tf.compat.v1.placeholder(tf.compat.v1.float32, [None, 2])
    assert run(tf.compat.v1.reduce_sum(x), {x: [[1, 2]]}) == 3.0


def test_tf_compat_string_helpers():
    assert tf.compat.as_bytes("héllo") == "héllo".encode() and tf.compat.as_bytes(b"x") == b"x"
    assert tf.compat.as_str(b"abc") == "abc" and tf.compat.as_text("abc") == "abc"
    with pytest.raises(TypeError, match="binary or unicode"):
        tf.compat.as_bytes(3)


def test_deprecated_aliases():
    a = tf.constant(A)
    assert run(tf.arg_max(a, 1)).tolist() == REF["argmax_old"]
    assert run(tf.arg_min(a, 0)).tolist() == REF["argmin_old"]
    assert run([tf.mul(a, 2.0)[0, 0], tf.sub(a, 1.0)[0, 0], tf.neg(a)[0, 0], tf.div(a, 2.0)[0, 0]]) == \
        [2.0, 0.0, -1.0, 0.5]
    assert run(tf.reduce_prod(a, reduction_indices=[1], keep_dims=True)).shape == (2, 1)
    assert run(tf.to_int32(a)[0, 2]) == 3 and tf.to_int64(a).dtype == np.int64
    assert run([tf.floordiv(7, 2), tf.mod(-7, 3), tf.constant(7.5) // 2.0, tf.constant(-7) % 3]) == [3, 2, 3.0, 2]


def test_int_shapes_where_tf1_takes_them():
    batch_size = 5
    labels = tf.placeholder(tf.int32, shape=(batch_size))   # an int, not a tuple
    assert labels.shape.as_list() == [5]
    assert tf.zeros(3).shape.as_list() == [3] and tf.ones(4, tf.int32).shape.as_list() == [4]
    assert tf.get_variable("w", shape=6).shape.as_list() == [6]
    assert run(tf.reduce_sum(labels), {labels: [1, 2, 3, 4, 5]}) == 15
    with pytest.raises(ValueError, match="Shape must be rank 1 but is rank 0"):   # TF1 refuses these too
        tf.random_normal(3)


def test_random_normal_with_tensor_mean_and_stddev_reaches_them():
    mu = tf.placeholder(tf.float32, [None, 4])
    sigma = tf.Variable(np.full(4, 2.0, np.float32))
    z = tf.random_normal(tf.shape(mu), mean=mu, stddev=sigma, seed=1)
    assert z.shape.as_list() == [None, 4]
    g_mu, g_sigma = tf.gradients(tf.reduce_sum(z), [mu, sigma])
    noise = tf.random_normal([20000], stddev=tf.constant(3.0), mean=tf.constant(1.0), seed=2)
    bounded = tf.random_uniform([20000], minval=tf.constant(2.0), maxval=5.0, seed=3)
    trunc = tf.truncated_normal([20000], stddev=tf.constant(0.5), seed=4)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        zv, gm, gs = sess.run([z, g_mu, g_sigma], {mu: np.zeros((3, 4))})
        assert zv.shape == (3, 4) and np.all(gm == 1.0)
        np.testing.assert_allclose(gs, zv.sum(axis=0) / 2.0, rtol=1e-5)   # d z / d sigma = standard draw
        n, u, t = sess.run([noise, bounded, trunc])
    assert abs(n.mean() - 1.0) < 0.1 and abs(n.std() - 3.0) < 0.1
    assert 2.0 <= u.min() and u.max() < 5.0
    assert np.abs(t).max() <= 1.0 and abs(t.std() - 0.44) < 0.03   # truncated at 2 stddev


def test_numpy_values_combine_with_graph_tensors():
    x = tf.placeholder(tf.float32, [None, 3])
    feed = {x: [[1.0, 2.0, 3.0]]}
    cases = [np.float32(2) * x, x * np.array([1.0, 2.0, 3.0]), np.sqrt(2.0) * x, np.array([1.0, 2.0, 3.0]) * x,
             x + np.float64(1), x / np.float32(2), np.exp(1.0) - x]
    for y in cases:
        assert isinstance(y, tf.Tensor) and y.dtype == np.float32
    out = run(cases, feed)
    np.testing.assert_allclose(out[0], [[2, 4, 6]])
    np.testing.assert_allclose(out[1], [[1, 4, 9]])
    np.testing.assert_allclose(out[2], [[np.sqrt(2.0), 2 * np.sqrt(2.0), 3 * np.sqrt(2.0)]], rtol=1e-6)
    np.testing.assert_allclose(out[3], [[1, 4, 9]])
    np.testing.assert_allclose(out[4], [[2, 3, 4]])
    np.testing.assert_allclose(out[5], [[0.5, 1, 1.5]])
    np.testing.assert_allclose(out[6], [[np.e - 1, np.e - 2, np.e - 3]], rtol=1e-6)


def test_fixed_batch_meets_none_batch_as_tf1_merges_shapes():
    labels = tf.placeholder(tf.int64, [None])
    logits = tf.matmul(tf.zeros([100, 784]), tf.zeros([784, 10]))
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    assert xent.shape.as_list() == [100]
    x = tf.placeholder(tf.float32, [None, 10])
    assert (x + tf.zeros([100, 10])).shape.as_list() == [100, 10]
    with pytest.raises(ShapeError):      # two known sizes that differ still fail where the op is made
        tf.zeros([5, 10]) + tf.zeros([100, 10])
    with pytest.raises(ShapeError):
        x + tf.zeros([100, 11])
    np.testing.assert_allclose(run(xent, {labels: np.zeros(100)}), np.full(100, np.log(10.0)), rtol=1e-6)


def test_run_options_and_metadata_are_accepted(tmp_path):
    x = tf.constant(2.0) * 3.0
    options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
    metadata = tf.RunMetadata()
    with tf.Session() as sess:
        assert sess.run(x, options=options, run_metadata=metadata) == 6.0
        with pytest.raises(TypeError, match="RunOptions"):
            sess.run(x, options={"trace_level": 3})
    assert metadata.step_stats.dev_stats == []        # no trace is recorded (docs/tf1.md)
    pytest.importorskip("tensorboardX")
    writer = tf.summary.FileWriter(str(tmp_path))
    writer.add_run_metadata(metadata, "step1", global_step=1)
    writer.close()


def test_floormod_gradient_float64_and_floordiv_has_zero_gradient():
    x0, y0 = np.array([[5.3, -7.2, 2.9]]), np.array([2.0, 3.1, -1.7])   # away from the jumps
    check_graph_gradients(lambda x, y: tf.floormod(x, y), [x0, y0])
    x = tf.placeholder(tf.float64, [3])
    # TF1 has no gradient for floordiv; here it is a zero gradient (the op records no input)
    assert run(tf.gradients(tf.floordiv(x, 2.0) + x * 0.0, x)[0], {x: [1.0, 2.0, 3.0]}).tolist() == [0, 0, 0]


def test_a_shape_error_names_the_op_once():
    x = tf.placeholder(tf.float32, [1, 4, 4, 3])
    with pytest.raises(ShapeError) as info:
        tf.nn.conv2d_transpose(x, tf.ones([3, 3, 2, 5]), [1, 8, 8, 2], [1, 2, 2, 1])
    assert str(info.value).startswith("conv2d_transpose: value has 3 channels")
