"""tf.contrib.layers.optimize_loss (distnet/compat/v1/optimize_loss.py) against
tf-slim 1.1's (TF 1.x's contrib code) on TensorFlow 2.21, recorded for the same
model: a float learning rate with a decay function, clipping by global norm and
every summary; Momentum by name with gradient multipliers; a function making
Adam."""
from __future__ import annotations

import numpy as np
import pytest

import distnet.compat.v1 as tf

# Recorded from tf_slim.layers.optimize_loss on TF 2.21 (tf.compat.v1).
TF_TAGS = ['OptimizeLoss/global_norm/clipped_gradient_norm', 'OptimizeLoss/global_norm/gradient_norm', 'OptimizeLoss/gradient_norm/b_0', 'OptimizeLoss/gradient_norm/w_0', 'OptimizeLoss/gradients/b_0', 'OptimizeLoss/gradients/w_0', 'OptimizeLoss/learning_rate_1', 'OptimizeLoss/loss']
# sgd: per step the train tensor's value, global_norm/gradient_norm, global_norm/clipped_gradient_norm,
# learning_rate_1, loss and gradient_norm/w_0 summaries
TF_SGD = [[39.642254, 43.40647506713867, 1.0, 0.10000000149011612, 39.64225387573242, 0.9416142702102661], [35.492283, 39.621551513671875, 1.0, 0.10000000149011612, 35.49228286743164, 0.947554349899292], [31.715027, 35.956298828125, 0.9999999403953552, 0.05000000074505806, 31.71502685546875, 0.9539081454277039], [29.961786, 34.1822624206543, 0.9999999403953552, 0.05000000074505806, 29.9617862701416, 0.9571405053138733]]
TF_SGD_FINAL = [0.3871714174747467, 0.27738696336746216, 0.36386042833328247, -0.09511497616767883, 4.0]   # w (3), b, global step
TF_MOMENTUM = [[39.642254, 0.05771756172180176, -0.2901843190193176, 0.026631027460098267, -0.7307342886924744, 0.0], [18.726679, 0.09691021591424942, -1.08808171749115, -0.6381235122680664, -0.6947320699691772, 0.0], [20.198524, 0.7705038785934448, -1.5425795316696167, -0.9935953617095947, 0.2049858570098877, 0.0]]      # value, w (3), b, global step
TF_ADAM = [[18.250761, 0.6705039143562317, -1.4425795078277588, -0.8935953378677368, 1.0], [14.786034, 0.6074691414833069, -1.3446687459945679, -0.7942620515823364, 2.0], [12.198578, 0.6087280511856079, -1.2456417083740234, -0.6961798667907715, 3.0]]              # value, w (3), global step


def _model():
    x = tf.constant(np.random.RandomState(0).randn(8, 3).astype(np.float32))
    y = tf.constant(np.random.RandomState(1).randn(8, 1).astype(np.float32))
    w = tf.Variable(np.full((3, 1), 0.5, np.float32), name="w")
    b = tf.Variable(np.zeros(1, np.float32), name="b")
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b - y)) * 10.0
    return w, b, loss, tf.train.get_or_create_global_step()


def test_sgd_with_decay_clipping_and_summaries_matches_tf_slim():
    tf.reset_default_graph()
    w, b, loss, gs = _model()
    train = tf.contrib.layers.optimize_loss(
        loss, gs, 0.1, "SGD", clip_gradients=1.0,
        summaries=["loss", "learning_rate", "global_gradient_norm", "gradient_norm", "gradients"],
        learning_rate_decay_fn=lambda lr, s: tf.train.exponential_decay(lr, s, 2, 0.5, staircase=True))
    assert sorted(s.op.name for s in tf.get_collection(tf.GraphKeys.SUMMARIES)) == TF_TAGS
    assert "OptimizeLoss/learning_rate" in [v.op.name for v in tf.global_variables()]
    merged = tf.summary.merge_all()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for want in TF_SGD:
            value, summary = sess.run([train, merged])
            got = {tag: v for kind, tag, v in summary.values if kind == "scalar"}
            row = [value] + [got["OptimizeLoss/" + k] for k in ("global_norm/gradient_norm",
                                                                "global_norm/clipped_gradient_norm",
                                                                "learning_rate_1", "loss", "gradient_norm/w_0")]
            np.testing.assert_allclose(row, want, rtol=1e-5)
        final = list(sess.run(w).ravel()) + list(sess.run(b)) + [sess.run(gs)]
    np.testing.assert_allclose(final, TF_SGD_FINAL, rtol=1e-5)


def test_momentum_multipliers_and_an_optimizer_function_match_tf_slim():
    tf.reset_default_graph()
    w, b, loss, gs = _model()
    # TF1: "b" is not b's tensor name ("b:0"), so only w's gradient is halved.
    momentum = tf.contrib.layers.optimize_loss(loss, gs, 0.05, "Momentum", gradient_multipliers={w: 0.5, "b": 2.0},
                                               increment_global_step=False, name="second", summaries=[])
    adam = tf.contrib.layers.optimize_loss(loss, None, None, lambda: tf.train.AdamOptimizer(0.1), name="third",
                                           summaries=["loss"])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for want in TF_MOMENTUM:
            row = [sess.run(momentum)] + list(sess.run(w).ravel()) + list(sess.run(b)) + [sess.run(gs)]
            np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-6)
        for want in TF_ADAM:
            row = [sess.run(adam)] + list(sess.run(w).ravel()) + [sess.run(gs)]
            np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-6)


def test_bad_arguments_say_what_is_expected():
    tf.reset_default_graph()
    w, b, loss, gs = _model()
    with pytest.raises(ValueError, match="Optimizer name should be one of"):
        tf.contrib.layers.optimize_loss(loss, gs, 0.1, "Nesterov")
    with pytest.raises(ValueError, match="Summaries should be one of"):
        tf.contrib.layers.optimize_loss(loss, gs, 0.1, "SGD", summaries=["weights"])
    with pytest.raises(ValueError, match="Learning rate should be 0d Tensor or float"):
        tf.contrib.layers.optimize_loss(loss, gs, 1, "SGD")
    with pytest.raises(ValueError, match="gradient_noise_scale is not supported"):
        tf.contrib.layers.optimize_loss(loss, gs, 0.1, "SGD", gradient_noise_scale=0.1)
    with pytest.raises(ValueError, match="Expect: a scalar loss"):
        tf.contrib.layers.optimize_loss(tf.stack([loss, loss]), gs, 0.1, "SGD")
