# A variational autoencoder in the style of the TF1 VAE tutorials: a dense
# encoder giving the mean and log-variance of q(z|x), the reparameterisation
# z = mu + sigma * eps with eps ~ N(0, stddev) (stddev a tensor), a dense
# Bernoulli decoder, and the loss = reconstruction cross-entropy + KL term.
# For numbers comparable with TensorFlow the training feeds eps from numpy
# (TF1 lets any tensor be fed, the random draw included); the last lines
# sample from the graph's own draw and print only what does not depend on it.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
BATCH, N_IN, N_HID, N_Z = 32, 16, 12, 2
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
rng = np.random.RandomState(11)

# 4x4 binary "images": two bars, randomly placed, plus noise
def make_batch(n):
    imgs = np.zeros((n, 4, 4), np.float32)
    for i in range(n):
        if rng.rand() < 0.5:
            imgs[i, rng.randint(4), :] = 1.0
        else:
            imgs[i, :, rng.randint(4)] = 1.0
    flip = rng.rand(n, 4, 4) < 0.05
    return np.abs(imgs - flip).reshape(n, N_IN).astype(np.float32)


def weight(shape, name):
    return tf.Variable((rng.randn(*shape) * np.sqrt(1.0 / shape[0])).astype(np.float32), name=name)


x = tf.placeholder(tf.float32, shape=[None, N_IN], name="x")
with tf.name_scope("encoder"):
    w_h, b_h = weight([N_IN, N_HID], "w_h"), tf.Variable(tf.zeros([N_HID]), name="b_h")
    h = tf.nn.tanh(tf.matmul(x, w_h) + b_h)
    w_mu, b_mu = weight([N_HID, N_Z], "w_mu"), tf.Variable(tf.zeros([N_Z]), name="b_mu")
    w_lv, b_lv = weight([N_HID, N_Z], "w_lv"), tf.Variable(tf.zeros([N_Z]), name="b_lv")
    z_mean = tf.matmul(h, w_mu) + b_mu
    z_log_var = tf.matmul(h, w_lv) + b_lv
with tf.name_scope("sample"):
    noise_std = tf.constant(1.0, name="noise_std")
    eps = tf.random_normal(tf.shape(z_mean), mean=0.0, stddev=noise_std, dtype=tf.float32, name="eps")
    z = z_mean + tf.sqrt(tf.exp(z_log_var)) * eps
with tf.name_scope("decoder"):
    w_d, b_d = weight([N_Z, N_HID], "w_d"), tf.Variable(tf.zeros([N_HID]), name="b_d")
    w_o, b_o = weight([N_HID, N_IN], "w_o"), tf.Variable(tf.zeros([N_IN]), name="b_o")
    logits = tf.matmul(tf.nn.tanh(tf.matmul(z, w_d) + b_d), w_o) + b_o
    reconstruction = tf.nn.sigmoid(logits)

recon_loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), 1)
kl = -0.5 * tf.reduce_sum(1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), 1)
cost = tf.reduce_mean(recon_loss + kl)
optimizer = tf.train.AdamOptimizer(learning_rate=0.01)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(cost)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        batch = make_batch(BATCH)
        noise = rng.randn(BATCH, N_Z).astype(np.float32)
        if DISTRIBUTED:
            batch, noise = tf.distributed.shard(batch, noise)
        _, c = sess.run([train_op, cost], feed_dict={x: batch, eps: noise})
        if step % 10 == 0 or step == STEPS - 1:
            if DISTRIBUTED:
                c = tf.distributed.allreduce(c, weight=len(batch))
            print("step %d cost %.6f" % (step, c))
    test = make_batch(8)
    mean = sess.run(z_mean, feed_dict={x: test})
    print("z_mean", " ".join("%.6f" % v for v in mean.ravel()))
    drawn = sess.run(eps, feed_dict={x: test})
    print("drawn shape %d %d" % drawn.shape)
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
