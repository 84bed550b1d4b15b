# The contrib-era training op: tf.contrib.layers.optimize_loss with an
# optimizer by name (or, data parallel, a function wrapping it, as Horovod users
# wrote it), a float learning rate decayed by a function, gradient clipping by
# global norm and the default summaries; the model from contrib.layers.
import os

import numpy as np
import tensorflow as tf
from tensorflow.contrib import layers

STEPS = int(os.environ.get("STEPS", 20))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"

rs = np.random.RandomState(17)
X = rs.randn(256, 5).astype(np.float32)
Y = (np.sin(X[:, :1] * 2.0) + X[:, 1:2] * X[:, 2:3] + 0.1 * rs.randn(256, 1)).astype(np.float32)


def init(shape, dtype=None, partition_info=None):
    return tf.constant((np.random.RandomState(sum(shape)).randn(*shape) * 0.5).astype(np.float32))


x = tf.placeholder(tf.float32, [None, 5])
y = tf.placeholder(tf.float32, [None, 1])
hidden = layers.fully_connected(x, 32, activation_fn=tf.nn.tanh, weights_initializer=init)
prediction = layers.fully_connected(hidden, 1, activation_fn=None, weights_initializer=init)
loss = tf.losses.mean_squared_error(y, prediction)
global_step = tf.train.get_or_create_global_step()

if DISTRIBUTED:
    optimizer = lambda lr: tf.DistributedOptimizer(tf.train.AdamOptimizer(lr))  # noqa: E731
else:
    optimizer = "Adam"
train_op = layers.optimize_loss(loss, global_step, learning_rate=0.05, optimizer=optimizer, clip_gradients=2.0,
                                learning_rate_decay_fn=lambda lr, step: tf.train.exponential_decay(lr, step, 5, 0.7))
summaries = tf.summary.merge_all()
rank = tf.distributed.rank() if DISTRIBUTED else 0

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        start = (step * 64) % 256
        xs, ys = X[start:start + 64], Y[start:start + 64]
        if DISTRIBUTED:
            xs, ys = tf.distributed.shard(xs, ys)
        value, summary = sess.run([train_op, summaries], {x: xs, y: ys})
        scalars = {tag: v for kind, tag, v in summary.values} if hasattr(summary, "values") else \
            {v.tag: v.simple_value for v in tf.Summary.FromString(summary).value}
        if rank == 0 and step % 4 == 0:
            print("step %d train loss %.6f gradient norm %.6f learning rate %.6f" % (
                step, scalars["OptimizeLoss/loss"], scalars["OptimizeLoss/global_norm/gradient_norm"],
                scalars["OptimizeLoss/learning_rate_1"]))
    weights = {v.op.name.replace("/", "_"): sess.run(v) for v in tf.trainable_variables()}
    if rank == 0:
        print("step", sess.run(global_step), "final loss %.6f" % sess.run(loss, {x: X, y: Y}))
        if os.environ.get("OUT"):
            np.savez(os.environ["OUT"], **weights)
