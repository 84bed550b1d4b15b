"""TF1's batch normalization, transposed convolution and average pooling names in
graph mode, against TF 2.21's recorded values (tests/tf_reference/nn_values.json);
the UPDATE_OPS idiom, contrib's in-place updates, and TF1's variable names."""
import json
from pathlib import Path

import numpy as np
import pytest

import distnet.compat.v1 as tf

TF = json.loads((Path(__file__).parent / "tf_reference" / "nn_values.json").read_text())


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def draw(seed, *shape, scale=1.0, shift=0.0):
    return (np.random.RandomState(seed).randn(*shape) * scale + shift).astype(np.float32)


def case_inputs(case):
    shape = tuple(TF[case]["shape"])
    c = shape[-1]
    return draw(1, *shape, scale=2.0, shift=1.0), draw(2, *shape), draw(3, c) * 0.5 + 1.0, draw(4, c)


def by_name():
    return {v.op.name.split("/")[-1]: v for v in tf.global_variables()}


@pytest.mark.parametrize("case", ["bn4", "bn2"])
def test_layers_batch_normalization_matches_tf(case):
    x, r, gamma, beta = case_inputs(case)
    ref = {k: np.asarray(v, np.float32) for k, v in TF[case]["layer"].items()}
    xt = tf.constant(x)
    y = tf.layers.batch_normalization(xt, training=True, momentum=0.9, epsilon=1e-3,
                                      gamma_initializer=tf.constant_initializer(gamma),
                                      beta_initializer=tf.constant_initializer(beta))
    assert [v.name for v in tf.global_variables()] == [
        "batch_normalization/gamma:0", "batch_normalization/beta:0", "batch_normalization/moving_mean:0",
        "batch_normalization/moving_variance:0"]
    assert [v.name for v in tf.trainable_variables()] == ["batch_normalization/gamma:0", "batch_normalization/beta:0"]
    assert tf.moving_average_variables() == []   # TF 2.21's tf.compat.v1.layers puts them in no such collection
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert [op.name for op in updates] == ["batch_normalization/AssignMovingAvg",
                                           "batch_normalization/AssignMovingAvg_1"]
    v = by_name()
    with tf.control_dependencies(updates):
        loss = tf.reduce_sum(y * r)
    dx, dg, db = tf.gradients(loss, [xt, v["gamma"], v["beta"]])
    y_inf = tf.layers.batch_normalization(xt, training=False, momentum=0.9, name="batch_normalization", reuse=True)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got = dict(zip(["y", "dx", "dgamma", "dbeta"], sess.run([y, dx, dg, db])))
        got["moving_mean"], got["moving_variance"] = sess.run([v["moving_mean"], v["moving_variance"]])
        got["y_inference_after_one_update"] = sess.run(y_inf)
    for key, want in ref.items():
        np.testing.assert_allclose(got[key], want, rtol=1e-4, atol=1e-5, err_msg=key)


def test_forgetting_update_ops_leaves_the_moving_statistics_alone():
    x = draw(1, 8, 3, scale=2.0, shift=1.0)
    xp = tf.placeholder(tf.float32, [None, 3])
    y = tf.layers.batch_normalization(xp, training=True)
    loss = tf.reduce_mean(tf.square(y))
    forgot = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        idiom = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    mm = by_name()["moving_mean"]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(forgot, {xp: x})
        np.testing.assert_array_equal(sess.run(mm), np.zeros(3))
        sess.run(idiom, {xp: x})
        np.testing.assert_allclose(sess.run(mm), 0.01 * x.mean(axis=0), rtol=1e-5)


def test_training_placeholder_switches_statistics_and_updates():
    x = draw(1, 6, 2, 2, 3, scale=2.0, shift=1.0)
    xp, training = tf.placeholder(tf.float32, [None, 2, 2, 3]), tf.placeholder(tf.bool, [])
    y = tf.layers.batch_normalization(xp, training=training, momentum=0.5)
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    v = by_name()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        out, _ = sess.run([y, updates], {xp: x, training: False})
        np.testing.assert_allclose(out, x / np.sqrt(1 + 1e-3), rtol=1e-5)      # moving stats 0 and 1
        np.testing.assert_array_equal(sess.run(v["moving_variance"]), np.ones(3))   # no update
        out, _ = sess.run([y, updates], {xp: x, training: True})
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
        n = 6 * 2 * 2
        np.testing.assert_allclose(sess.run(v["moving_variance"]), 0.5 + 0.5 * var * n / (n - 1), rtol=1e-5)


def test_contrib_batch_norm_names_defaults_and_in_place_updates():
    x = draw(1, 5, 2, 2, 4, scale=2.0, shift=1.0)
    xp, is_training = tf.placeholder(tf.float32, [None, 2, 2, 4]), tf.placeholder(tf.bool, [])
    y = tf.contrib.layers.batch_norm(xp, is_training=is_training, updates_collections=None, scope="bn")
    assert [v.name for v in tf.global_variables()] == ["bn/beta:0", "bn/moving_mean:0", "bn/moving_variance:0"]
    assert [v.name for v in tf.trainable_variables()] == ["bn/beta:0"]   # scale=False by default
    assert tf.get_collection(tf.GraphKeys.UPDATE_OPS) == []
    assert len(tf.get_collection(tf.GraphKeys.MODEL_VARIABLES)) == 3
    z = tf.contrib.layers.batch_norm(xp, scale=True)
    assert [v.name for v in tf.global_variables()][3:] == ["BatchNorm/beta:0", "BatchNorm/gamma:0",
                                                           "BatchNorm/moving_mean:0", "BatchNorm/moving_variance:0"]
    assert len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)) == 2
    v = by_name()
    mm = [t for t in tf.global_variables() if t.op.name == "bn/moving_mean"][0]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(y, {xp: x, is_training: True})       # fetching the output updates (decay 0.999)
        np.testing.assert_allclose(sess.run(mm), 0.001 * x.mean(axis=(0, 1, 2)), rtol=1e-4)
        before = sess.run(mm)
        sess.run(y, {xp: x, is_training: False})
        np.testing.assert_array_equal(sess.run(mm), before)
        sess.run(z, {xp: x})
        np.testing.assert_array_equal(sess.run(v["moving_mean"]), np.zeros(4))   # UPDATE_OPS not run


@pytest.mark.parametrize("case", ["bn4", "bn2"])
def test_nn_moments_and_batch_normalization_match_tf(case):
    x, r, gamma, beta = case_inputs(case)
    ref = {k: np.asarray(v, np.float32) for k, v in TF[case]["nn"].items()}
    xt = tf.constant(x)
    axes = list(range(x.ndim - 1))
    m, v = tf.nn.moments(xt, axes)
    mk, vk = tf.nn.moments(xt, axes, keep_dims=True)
    assert mk.shape.as_list() == [1] * (x.ndim - 1) + [x.shape[-1]] and m.shape.as_list() == [x.shape[-1]]
    y = tf.nn.batch_normalization(xt, m, v, tf.constant(beta), tf.constant(gamma), 1e-3)
    dx = tf.gradients(tf.reduce_sum(y * r), [xt])[0]
    with tf.Session() as sess:
        got = dict(zip(["mean", "variance", "mean_keep", "variance_keep", "y", "dx"],
                       sess.run([m, v, mk, vk, y, dx])))
    for key, want in ref.items():
        np.testing.assert_allclose(got[key], want, rtol=1e-4, atol=1e-5, err_msg=key)


def test_fused_batch_norm_matches_tf():
    x, r, gamma, beta = case_inputs("bn4")
    ref = {k: np.asarray(v, np.float32) for k, v in TF["bn4"]["fused"].items()}
    xt = tf.constant(x)
    y, m, v = tf.nn.fused_batch_norm(xt, tf.constant(gamma), tf.constant(beta), epsilon=1e-3, is_training=True)
    yi, _, _ = tf.nn.fused_batch_norm(xt, tf.constant(gamma), tf.constant(beta), mean=m, variance=v, epsilon=1e-3,
                                      is_training=False)
    dx = tf.gradients(tf.reduce_sum(y * r), [xt])[0]
    with tf.Session() as sess:
        got = dict(zip(["y", "mean", "variance", "dx", "y_inference"], sess.run([y, m, v, dx, yi])))
    for key, want in ref.items():
        np.testing.assert_allclose(got[key], want, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("case", TF["conv2d_transpose"], ids=lambda c: f"{c['output_shape']}-{c['padding']}")
def test_nn_conv2d_transpose_matches_tf(case):
    x, w, r = draw(7, *case["input_shape"]), draw(8, *case["filter_shape"]), draw(9, *case["output_shape"])
    xt, wt = tf.constant(x), tf.constant(w)
    s = case["strides"]
    y = tf.nn.conv2d_transpose(xt, wt, case["output_shape"], [1, s, s, 1], case["padding"])
    assert y.shape.as_list() == case["output_shape"]
    dx, dw = tf.gradients(tf.reduce_sum(y * r), [xt, wt])
    with tf.Session() as sess:
        got = sess.run([y, dx, dw])
    for g, key in zip(got, ["y", "dx", "dw"]):
        np.testing.assert_allclose(g, case[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_conv2d_transpose_with_a_computed_output_shape():
    """DCGAN code passes tf.stack([tf.shape(x)[0], h, w, c]) as the output shape."""
    xp = tf.placeholder(tf.float32, [None, 3, 3, 4])
    w = tf.constant(draw(8, 3, 3, 2, 4))
    y = tf.nn.conv2d_transpose(xp, w, tf.stack([tf.shape(xp)[0], 6, 6, 2]), [1, 2, 2, 1], "SAME")
    with tf.Session() as sess:
        assert sess.run(y, {xp: np.ones((5, 3, 3, 4), np.float32)}).shape == (5, 6, 6, 2)


@pytest.mark.parametrize("h, k, s, pad, out", TF["conv2d_transpose_layer_sizes"])
def test_layers_conv2d_transpose_variables_and_sizes(h, k, s, pad, out):
    xp = tf.placeholder(tf.float32, [None, h, h, 3])
    y = tf.layers.conv2d_transpose(xp, 2, k, s, padding=pad, activation=tf.nn.relu)
    assert [v.name for v in tf.trainable_variables()] == ["conv2d_transpose/kernel:0", "conv2d_transpose/bias:0"]
    assert tf.trainable_variables()[0].shape.as_list() == [k, k, 2, 3]
    assert y.shape.as_list() == [None, out, out, 2]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(y, {xp: np.ones((2, h, h, 3), np.float32)}).shape == (2, out, out, 2)


@pytest.mark.parametrize("case", TF["avg_pool"], ids=lambda c: f"{c['shape']}-{c['ksize']}-{c['padding']}")
def test_avg_pool_names_match_tf(case):
    x = draw(5, *case["shape"])
    k, s = case["ksize"], case["strides"]
    kk = [k, k] if isinstance(k, int) else k
    ss = [s, s] if isinstance(s, int) else s
    xt = tf.constant(x)
    ys = [tf.nn.avg_pool(xt, [1, *kk, 1], [1, *ss, 1], case["padding"]),
          tf.layers.average_pooling2d(xt, kk, ss, padding=case["padding"].lower()),
          tf.contrib.layers.avg_pool2d(xt, kk, ss, padding=case["padding"])]
    with tf.Session() as sess:
        for got in sess.run(ys):
            np.testing.assert_allclose(got, case["y"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", TF["bn_moving_variance_choice"], ids=lambda c: f"axis{c['axis']}-fused{c['fused']}")
def test_which_batch_variance_feeds_the_moving_variance_is_tfs(case):
    """TF1's layer feeds the unbiased batch variance where it runs its fused kernel (4-D input,
    axis 1 or 3, fused not False), the biased one elsewhere: TF 2.21's recorded moving variances."""
    x = draw(10, 4, 3, 5, 2, scale=2.0, shift=1.0)
    xt = tf.constant(x)
    tf.layers.batch_normalization(xt, axis=case["axis"], training=True, momentum=0.5, fused=case["fused"])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(tf.get_collection(tf.GraphKeys.UPDATE_OPS))
        got = sess.run(by_name()["moving_variance"])
    np.testing.assert_allclose(got, case["moving_variance"], rtol=1e-6)


def test_an_integer_input_is_refused_when_the_layer_is_built():
    with tf.Graph().as_default():
        x = tf.placeholder(tf.int32, [None, 3])
        with pytest.raises(TypeError, match="Expect: a floating-point tensor .* Actual: int32"):
            tf.layers.batch_normalization(x, training=True)
        assert tf.global_variables() == []
