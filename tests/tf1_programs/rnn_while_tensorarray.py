# An RNN written by hand the way TF1 code did before (and under) dynamic_rnn:
# the inputs unstacked into a TensorArray (time major), a tf.while_loop over
# the time steps whose body reads step t, updates the state and writes the
# output into a second TensorArray, then stack() and a loss on every step's
# prediction (the running mean of the inputs so far).  Adam with gradient
# clipping by global norm; the sequence length is a placeholder fed per run.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
T, BATCH, N_IN, N_HID = 6, 32, 2, 8
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
rng = np.random.RandomState(12)

x = tf.placeholder(tf.float32, [None, None, N_IN], name="x")          # [time, batch, features]
target = tf.placeholder(tf.float32, [None, None, 1], name="target")
seq_len = tf.placeholder(tf.int32, [], name="seq_len")
W_x = tf.Variable((rng.randn(N_IN, N_HID) * 0.5).astype(np.float32), name="W_x")
W_h = tf.Variable((rng.randn(N_HID, N_HID) * 0.3).astype(np.float32), name="W_h")
b_h = tf.Variable(np.zeros(N_HID, np.float32), name="b_h")
W_o = tf.Variable((rng.randn(N_HID, 1) * 0.5).astype(np.float32), name="W_o")

inputs_ta = tf.TensorArray(tf.float32, size=seq_len).unstack(x)
outputs_ta = tf.TensorArray(tf.float32, size=seq_len)
h0 = tf.zeros([tf.shape(x)[1], N_HID])


def step(t, h, outputs):
    h = tf.tanh(tf.matmul(inputs_ta.read(t), W_x) + tf.matmul(h, W_h) + b_h)
    return t + 1, h, outputs.write(t, tf.matmul(h, W_o))


_, last_state, outputs_ta = tf.while_loop(lambda t, h, o: t < seq_len, step, (tf.constant(0), h0, outputs_ta))
predictions = outputs_ta.stack()
loss = tf.reduce_mean(tf.square(predictions - target))

optimizer = tf.train.AdamOptimizer(0.02)
if DISTRIBUTED:
    # time-major data: a rank's samples are the batch axis (axis 1), not the first size
    optimizer = tf.DistributedOptimizer(optimizer, sample_count=tf.shape(x)[1])
grads, variables = zip(*optimizer.compute_gradients(loss))
grads, norm = tf.clip_by_global_norm(grads, 2.0)
train_op = optimizer.apply_gradients(zip(grads, variables))


def batch(n, length):
    seq = rng.uniform(-1.0, 1.0, size=(length, n, N_IN)).astype(np.float32)
    running = np.cumsum(seq[:, :, :1] + seq[:, :, 1:], axis=0) / np.arange(1, length + 1)[:, None, None]
    return seq, running.astype(np.float32)


with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for i in range(STEPS):
        bx, by = batch(BATCH, T)
        if DISTRIBUTED:    # split the batch axis (axis 1) over the ranks
            part = tf.distributed.shard(np.swapaxes(bx, 0, 1), np.swapaxes(by, 0, 1))
            bx, by = np.swapaxes(part[0], 0, 1), np.swapaxes(part[1], 0, 1)
        _, value, n = sess.run([train_op, loss, norm], feed_dict={x: bx, target: by, seq_len: T})
        if i % 10 == 0 or i == STEPS - 1:
            print("step %d loss %.6f norm %.5f" % (i, value, n))
    tx, ty = batch(16, 9)     # longer sequences than in training
    print("test loss %.6f" % sess.run(loss, feed_dict={x: tx, target: ty, seq_len: 9}))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
