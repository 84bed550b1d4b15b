# The gradient-clipping idiom of TF1 RNN and seq2seq code, on a small
# regression net: compute_gradients, clip_by_global_norm on the list of
# gradients (None kept for a variable the loss does not use), apply_gradients
# with the global step; the global norm before clipping is printed.  Under
# DISTRIBUTED=1 the optimizer is wrapped, so the gradients are the global
# batch's and the clipping sees the global norm: 2 ranks end with 1 rank's
# weights.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 25))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
rng = np.random.RandomState(8)
features = rng.randn(200, 6).astype(np.float32)
targets = np.sin(features[:, :1] * 2.0) + features[:, 1:2] ** 2 - 0.5 * features[:, 2:3]

x = tf.placeholder(tf.float32, [None, 6])
t = tf.placeholder(tf.float32, [None, 1])
with tf.variable_scope("net"):
    w1 = tf.get_variable("w1", initializer=(rng.randn(6, 32) * 0.5).astype(np.float32))
    b1 = tf.get_variable("b1", [32], initializer=tf.zeros_initializer())
    w2 = tf.get_variable("w2", initializer=(rng.randn(32, 1) * 0.5).astype(np.float32))
    unused = tf.get_variable("unused", [3], initializer=tf.ones_initializer())
prediction = tf.matmul(tf.nn.tanh(tf.matmul(x, w1) + b1), w2)
loss = tf.reduce_mean(tf.squared_difference(prediction, t))

global_step = tf.Variable(0, trainable=False, name="global_step")
optimizer = tf.train.MomentumOptimizer(0.3, momentum=0.9)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
grads_and_vars = optimizer.compute_gradients(loss)
grads, variables = zip(*grads_and_vars)
clipped, global_norm = tf.clip_by_global_norm(grads, clip_norm=1.0)
train_op = optimizer.apply_gradients([(g, v) for g, v in zip(clipped, variables) if g is not None],
                                     global_step=global_step)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    print("none_kept %d" % sum(g is None for g in clipped))
    for step in range(STEPS):
        idx = np.arange(step * 40, step * 40 + 40) % 200
        bx, bt = features[idx], targets[idx]
        if DISTRIBUTED:
            bx, bt = tf.distributed.shard(bx, bt)
        _, norm, value = sess.run([train_op, global_norm, loss], feed_dict={x: bx, t: bt})
        if step % 5 == 0 or step == STEPS - 1:
            if DISTRIBUTED:
                value = tf.distributed.allreduce(value, weight=len(bx))
            print("step %d global_norm %.5f loss %.6f" % (step, norm, value))
    print("full loss %.6f" % sess.run(loss, feed_dict={x: features, t: targets}))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
