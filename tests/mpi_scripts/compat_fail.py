"""Run under mpiexec by tests/test_compat_v1.py: a TF1 program whose rank 1
fails (a bad feed) while rank 0 waits in the step's all-reduce.  The whole job
must end with an error naming rank 1, not hang."""
from __future__ import annotations

import numpy as np

import distnet.compat.v1 as tf

x = tf.placeholder(tf.float32, [None, 3])
w = tf.Variable(tf.zeros([3, 1]))
loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - 1.0))
train = tf.DistributedOptimizer(tf.train.GradientDescentOptimizer(0.1)).minimize(loss)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    batch = np.ones((4, 3), np.float32) if tf.distributed.rank() == 0 else np.ones((4, 5), np.float32)
    sess.run(train, {x: batch})
print("unreachable on rank 1")
