# Batch normalization written by hand, as blog posts of 2016 taught it before
# tf.layers had it: tf.nn.moments for the batch statistics, population
# statistics in non-trainable variables moved with tf.assign under
# control_dependencies, tf.nn.batch_normalization to apply them -- one path for
# training and one for inference, sharing variables through get_variable.
# (One process: moments are per-process statistics, as in TF.)
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
EPSILON = 1e-3
DECAY = 0.95

rng = np.random.RandomState(5)
inputs = rng.rand(400, 12).astype(np.float32) * 4.0 + 2.0
targets = (np.sin(inputs[:, :1]) + 0.3 * inputs[:, 1:2] - 0.1 * inputs[:, 2:3] ** 2).astype(np.float32)

init = np.random.RandomState(2)
w1_init = (init.randn(12, 32) * 0.3).astype(np.float32)
w2_init = (init.randn(32, 1) * 0.3).astype(np.float32)


def batch_norm_wrapper(x, is_training, scope):
    with tf.variable_scope(scope, reuse=tf.AUTO_REUSE):
        size = int(x.get_shape()[-1])
        scale = tf.get_variable("scale", initializer=tf.ones([size]))
        beta = tf.get_variable("beta", initializer=tf.zeros([size]))
        pop_mean = tf.get_variable("pop_mean", initializer=tf.zeros([size]), trainable=False)
        pop_var = tf.get_variable("pop_var", initializer=tf.ones([size]), trainable=False)
    if is_training:
        batch_mean, batch_var = tf.nn.moments(x, [0])
        train_mean = tf.assign(pop_mean, pop_mean * DECAY + batch_mean * (1 - DECAY))
        train_var = tf.assign(pop_var, pop_var * DECAY + batch_var * (1 - DECAY))
        with tf.control_dependencies([train_mean, train_var]):
            return tf.nn.batch_normalization(x, batch_mean, batch_var, beta, scale, EPSILON)
    return tf.nn.batch_normalization(x, pop_mean, pop_var, beta, scale, EPSILON)


def model(x, is_training):
    with tf.variable_scope("net", reuse=tf.AUTO_REUSE):
        w1 = tf.get_variable("w1", initializer=w1_init)
        w2 = tf.get_variable("w2", initializer=w2_init)
        b2 = tf.get_variable("b2", initializer=tf.zeros([1]))
    h = tf.nn.relu(batch_norm_wrapper(tf.matmul(x, w1), is_training, "bn1"))
    return tf.matmul(h, w2) + b2


x = tf.placeholder(tf.float32, [None, 12])
y = tf.placeholder(tf.float32, [None, 1])
train_loss = tf.reduce_mean(tf.square(model(x, True) - y))
test_loss = tf.reduce_mean(tf.square(model(x, False) - y))
train_op = tf.train.GradientDescentOptimizer(0.05).minimize(train_loss)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        lo = (step * 40) % 400
        _, l = sess.run([train_op, train_loss], {x: inputs[lo:lo + 40], y: targets[lo:lo + 40]})
        if step % 5 == 0 or step == STEPS - 1:
            print("step %d train loss %.5f" % (step, l))
    print("test loss %.5f" % sess.run(test_loss, {x: inputs, y: targets}))
    with tf.variable_scope("bn1", reuse=True):
        pm, pv = sess.run([tf.get_variable("pop_mean"), tf.get_variable("pop_var")])
    print("population mean", " ".join("%.4f" % v for v in pm[:8]))
    print("population variance", " ".join("%.4f" % v for v in pv[:8]))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name.replace("/", "__"): val
                                      for v, val in zip(tf.global_variables(), sess.run(tf.global_variables()))})
