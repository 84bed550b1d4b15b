# tf.while_loop as TF1 programs used it for a computation inside the graph:
# power iteration estimates the largest singular value of a weight matrix
# (a spectral-norm penalty), with a fixed number of iterations through
# maximum_iterations, and the penalty is trained through the loop.  A second
# loop with a tensor-dependent stopping condition unrolls a recurrence
# h <- tanh(h W + x) until a step count fed at run time.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 20))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
rng = np.random.RandomState(4)
data_x = rng.randn(64, 6).astype(np.float32)
data_y = (data_x @ rng.randn(6, 4) * 3.0).astype(np.float32)

x = tf.placeholder(tf.float32, [None, 6])
y = tf.placeholder(tf.float32, [None, 4])
W = tf.Variable(rng.randn(6, 4).astype(np.float32), name="W")
u0 = tf.constant((np.ones((1, 6)) / np.sqrt(6.0)).astype(np.float32))


def power_step(k, u, v):
    v = tf.nn.l2_normalize(tf.matmul(u, W), axis=1)
    u = tf.nn.l2_normalize(tf.matmul(v, W, transpose_b=True), axis=1)
    return k + 1, u, v


_, u, v = tf.while_loop(lambda k, u, v: k < 100, power_step, (tf.constant(0), u0, tf.zeros([1, 4])),
                        maximum_iterations=8)
sigma = tf.reduce_sum(tf.matmul(u, W) * v)
fit = tf.reduce_mean(tf.square(tf.matmul(x, W) - y))
loss = fit + 0.5 * sigma
optimizer = tf.train.GradientDescentOptimizer(0.02)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)

n_steps = tf.placeholder(tf.int32, [])
R = tf.Variable(rng.randn(4, 4).astype(np.float32) * 0.5, name="R")
seq_in = tf.placeholder(tf.float32, [None, 4])
_, h_final = tf.while_loop(lambda t, h: t < n_steps, lambda t, h: (t + 1, tf.tanh(tf.matmul(h, R) + seq_in)),
                           [tf.constant(0), tf.zeros_like(seq_in)])
recurrence_grad = tf.gradients(tf.reduce_sum(h_final), R)[0]

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        bx, by = data_x, data_y
        if DISTRIBUTED:
            bx, by = tf.distributed.shard(bx, by)
        _, s, f = sess.run([train_op, sigma, fit], feed_dict={x: bx, y: by})
        if step % 5 == 0 or step == STEPS - 1:
            if DISTRIBUTED:
                f = tf.distributed.allreduce(f, weight=len(bx))
            print("step %d sigma %.5f fit %.5f" % (step, s, f))
    print("svd sigma %.5f" % np.linalg.svd(sess.run(W), compute_uv=False)[0])
    h, g = sess.run([h_final, recurrence_grad], feed_dict={n_steps: 5, seq_in: data_x[:3, :4]})
    print("recurrence", " ".join("%.5f" % v for v in h.ravel()))
    print("recurrence grad", " ".join("%.5f" % v for v in g.ravel()))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], W=sess.run(W), R=sess.run(R))
