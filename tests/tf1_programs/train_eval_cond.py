# One graph for training and evaluation, switched by a boolean placeholder
# with a default, as TF1 programs did before tf.estimator: in training the
# input is jittered with numpy noise and the hidden layer goes through
# dropout (keep_prob from the environment, 1.0 for the comparison with
# TensorFlow), both inside tf.cond branches; in evaluation both are skipped.
# A tf.case picks the learning rate from the global step.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
KEEP_PROB = float(os.environ.get("KEEP_PROB", 1.0))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
rng = np.random.RandomState(21)
centers = rng.randn(3, 5).astype(np.float32) * 2.0
train_y = rng.randint(0, 3, 240)
train_x = (centers[train_y] + rng.randn(240, 5)).astype(np.float32)
test_y = rng.randint(0, 3, 90)
test_x = (centers[test_y] + rng.randn(90, 5)).astype(np.float32)

is_training = tf.placeholder_with_default(False, shape=[], name="is_training")
x = tf.placeholder(tf.float32, [None, 5], name="x")
y = tf.placeholder(tf.int64, [None], name="y")
jitter = tf.placeholder_with_default(tf.zeros_like(x), shape=[None, 5], name="jitter")

inputs = tf.cond(is_training, lambda: x + 0.1 * jitter, lambda: x)
w1 = tf.Variable(rng.randn(5, 16).astype(np.float32) * 0.4, name="w1")
b1 = tf.Variable(np.zeros(16, np.float32), name="b1")
hidden = tf.nn.relu(tf.matmul(inputs, w1) + b1)
hidden = tf.cond(is_training, lambda: tf.nn.dropout(hidden, keep_prob=KEEP_PROB), lambda: hidden)
w2 = tf.Variable(rng.randn(16, 3).astype(np.float32) * 0.4, name="w2")
b2 = tf.Variable(np.zeros(3, np.float32), name="b2")
logits = tf.matmul(hidden, w2) + b2
loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))

global_step = tf.train.get_or_create_global_step()
learning_rate = tf.case([(tf.less(global_step, 10), lambda: tf.constant(0.5)),
                         (tf.less(global_step, 20), lambda: tf.constant(0.2))],
                        default=lambda: tf.constant(0.05), exclusive=False)
optimizer = tf.train.GradientDescentOptimizer(learning_rate)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss, global_step=global_step)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        idx = np.arange(step * 24, step * 24 + 24) % 240
        bx, by, noise = train_x[idx], train_y[idx], rng.randn(24, 5).astype(np.float32)
        if DISTRIBUTED:
            bx, by, noise = tf.distributed.shard(bx, by, noise)
        _, lr, train_loss = sess.run([train_op, learning_rate, loss],
                                     feed_dict={x: bx, y: by, jitter: noise, is_training: True})
        if step % 5 == 0 or step == STEPS - 1:
            test_loss, test_acc = sess.run([loss, accuracy], feed_dict={x: test_x, y: test_y})
            print("step %d lr %.3f eval loss %.6f accuracy %.4f" % (step, lr, test_loss, test_acc))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
