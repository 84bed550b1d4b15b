"""tf.contrib.framework.arg_scope and tf.contrib.layers (arg_scope.py,
contrib_layers.py): names, defaults and values recorded from tf-slim 1.1 on
TensorFlow 2.21 (TF 1.x's contrib code) for the same program, and arg_scope's
rules."""
from __future__ import annotations

import numpy as np
import pytest

import distnet.compat.v1 as tf

layers = tf.contrib.layers
arg_scope = tf.contrib.framework.arg_scope

TF_NAMES = ["Conv/weights:0", "Conv/biases:0", "Conv_1/weights:0", "Conv_1/biases:0", "inner/weights:0",
            "inner/biases:0", "fully_connected/weights:0", "fully_connected/biases:0", "fully_connected_1/weights:0",
            "fully_connected_1/biases:0", "rep/rep_1/weights:0", "rep/rep_1/biases:0", "rep/rep_2/weights:0",
            "rep/rep_2/biases:0"]
TF_SHAPES = [[2, 5, 5, 3], [2, 2, 2, 3], [2, 3, 3, 2], [2, 2, 2, 3], [2, 4], [2, 5, 3], [2, 5, 5, 2], [2, 4]]
# (first 6 values, sum) of c, c2, c3, p, f, f3, r, d from tf-slim
TF_VALUES = [
    ([0.153593, 0.0, 0.0, 0.0, 0.091551, 0.284787], 14.49232),
    ([-0.156612, -0.055955, -0.087572, -0.28598, -0.2513, 0.039966], -1.89454),
    ([0.138409, 0.276026, -0.005253, -0.215429, 0.266154, -0.261486], -0.50644),
    ([0.20849, 0.091551, 0.429121, 0.520404, 0.29446, 0.275339], 6.13396),
    ([0.07762, 0.193687, 0.091334, 0.08244, 0.0, 0.046215], 0.64272),
    ([-0.141492, -0.216069, 0.103139, -0.099643, -0.558939, -0.061321], -0.31814),
    ([0.05] * 6, 4.96186),
    ([0.07762, 0.193687, 0.091334, 0.08244, 0.0, 0.046215], 0.64272),
]


def init(shape, dtype=None, partition_info=None):
    return tf.constant((np.arange(np.prod(shape)).reshape(shape) % 7 - 3).astype(np.float32) * 0.1)


def test_contrib_layers_under_arg_scope_match_tf_slim():
    tf.reset_default_graph()
    x = tf.constant(np.random.RandomState(0).rand(2, 5, 5, 2).astype(np.float32))
    with arg_scope([layers.conv2d, layers.fully_connected], weights_initializer=init,
                   biases_initializer=tf.constant_initializer(0.05)):
        c = layers.conv2d(x, 3, [3, 3], outputs_collections=["outs"])
        c2 = layers.conv2d(x, 3, 2, stride=2, padding="VALID", activation_fn=None)
        with arg_scope([layers.conv2d], padding="VALID", activation_fn=tf.nn.tanh):
            c3 = layers.conv2d(x, 2, [3, 3], scope="inner")
        p = layers.max_pool2d(c, 2)
        f = layers.fully_connected(layers.flatten(p), 4)
        f3 = layers.fully_connected(tf.reshape(x, [2, 5, 10]), 3, activation_fn=None)
        r = tf.contrib.slim.repeat(x, 2, layers.conv2d, 2, [1, 1], scope="rep")
    d = layers.dropout(f, 0.5, is_training=False)
    assert [v.name for v in tf.global_variables()] == TF_NAMES
    assert [v.name for v in tf.model_variables()] == TF_NAMES
    assert tf.get_collection("outs") == [c]
    outs = [c, c2, c3, p, f, f3, r, d]
    assert [t.shape.as_list() for t in outs] == TF_SHAPES
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for got, (head, total) in zip(sess.run(outs), TF_VALUES):
            np.testing.assert_allclose(got.ravel()[:6], head, atol=2e-6)
            assert float(got.sum()) == pytest.approx(total, abs=2e-5)


def test_defaults_are_tf1s_relu_xavier_zeros():
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 6])
    y = layers.fully_connected(x, 3)
    assert y.op.type == "Relu" and y.name == "fully_connected/Relu:0"
    w, b = tf.trainable_variables()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        wv, bv = sess.run([w, b])
    limit = np.sqrt(6.0 / (6 + 3))                      # Xavier (Glorot) uniform
    assert np.all(np.abs(wv) <= limit) and wv.std() > limit / 4 and np.all(bv == 0)
    no_bias = layers.conv2d(tf.zeros([1, 4, 4, 1]), 2, 3, biases_initializer=None, scope="nb")
    assert [v.op.name for v in tf.global_variables()][-1] == "nb/weights" and no_bias.op.type == "Relu"


def test_normalizer_fn_replaces_the_biases_and_regularizers_are_collected():
    tf.reset_default_graph()
    seen = {}

    def normalizer(t, scale=1.0):
        seen["scale"] = scale
        return t * scale

    with arg_scope([layers.conv2d], normalizer_fn=normalizer, normalizer_params={"scale": 2.0},
                   weights_regularizer=layers.l2_regularizer(0.5)):
        layers.conv2d(tf.ones([1, 3, 3, 1]), 1, 1, weights_initializer=tf.ones_initializer(), scope="n")
    assert seen == {"scale": 2.0}
    assert [v.op.name for v in tf.global_variables()] == ["n/weights"]
    (reg,) = tf.losses.get_regularization_losses()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        assert sess.run(reg) == pytest.approx(0.25)     # 0.5 * 1**2 / 2


def test_arg_scope_rules():
    tf.reset_default_graph()

    @tf.contrib.framework.add_arg_scope
    def layer(x, a=1, b=2):
        return (x, a, b)

    def plain(x, a=1):
        return x

    with arg_scope([layer], a=10) as outer:
        assert layer(0) == (0, 10, 2)
        assert layer(0, a=5) == (0, 5, 2)              # the call wins
        with arg_scope([layer], b=20):
            assert layer(0) == (0, 10, 20)             # nested: added to the outer scope
        assert layer(0) == (0, 10, 2)
    assert layer(0) == (0, 1, 2)
    with arg_scope(outer):                              # a captured scope, reinstated
        assert layer(0) == (0, 10, 2)
    assert tf.contrib.framework.has_arg_scope(layer) and not tf.contrib.framework.has_arg_scope(plain)
    with pytest.raises(ValueError, match="plain is not decorated with @add_arg_scope"):
        with arg_scope([plain], a=3):
            pass
    with pytest.raises(ValueError, match="kwargs must be empty"):
        with arg_scope(outer, a=1):
            pass
    with pytest.raises(TypeError, match="must either be a list/tuple or reused scope"):
        with arg_scope(layer, a=1):
            pass
    with arg_scope([layer], c=1):                       # an argument the layer does not take fails at the call
        with pytest.raises(TypeError):
            layer(0)


def test_dropout_follows_is_training():
    tf.reset_default_graph()
    x = tf.ones([1000])
    training = tf.placeholder(tf.bool, [])
    d = layers.dropout(x, keep_prob=0.75, is_training=training)
    with tf.Session() as sess:
        off = sess.run(d, {training: False})
        on = sess.run(d, {training: True})
    np.testing.assert_array_equal(off, np.ones(1000))
    kept = on[on > 0]
    np.testing.assert_allclose(kept, 1 / 0.75, rtol=1e-6)
    assert 0.65 < np.mean(on > 0) < 0.85
    with pytest.raises(ValueError, match="0 < keep_prob <= 1"):
        layers.dropout(x, keep_prob=0.0)


def test_one_hot_encoding():
    tf.reset_default_graph()
    y = layers.one_hot_encoding(tf.constant([2, 0]), 3)
    assert y.name.startswith("OneHotEncoding/") and y.dtype == np.float32
    with tf.Session() as sess:
        assert sess.run(y).tolist() == [[0, 0, 1], [1, 0, 0]]


def test_batch_norm_and_avg_pool2d_join_arg_scope():
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 4, 4, 1])
    training = tf.placeholder(tf.bool, [])
    with arg_scope([layers.batch_norm], is_training=training, scale=True):
        with arg_scope([layers.conv2d], normalizer_fn=layers.batch_norm):
            y = layers.conv2d(x, 2, 3)
        with arg_scope([layers.avg_pool2d], kernel_size=2, stride=2):
            z = layers.avg_pool2d(y)
    # The normalizer replaces the biases and lives in the conv's scope (TF1's contrib names);
    # scale=True from the scope made gamma.
    assert [v.op.name for v in tf.global_variables()] == ["Conv/weights", "Conv/BatchNorm/beta", "Conv/BatchNorm/gamma",
                                                          "Conv/BatchNorm/moving_mean",
                                                          "Conv/BatchNorm/moving_variance"]
    assert z.shape.as_list() == [None, 2, 2, 2]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        out = sess.run(y, {x: np.random.RandomState(0).rand(3, 4, 4, 1), training: True})
    # Batch statistics (training from the scope's placeholder), then relu: per channel, a mean of
    # relu(N(0, 1)-like values over the batch, so positive and below 1.
    assert out.shape == (3, 4, 4, 2) and np.all(out >= 0) and 0 < out.mean() < 1
