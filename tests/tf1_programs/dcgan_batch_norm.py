# A small DCGAN in the style of the 2016-2017 TensorFlow implementations: the
# generator projects noise, reshapes it and up-samples with tf.nn.conv2d_transpose
# (output shape built with tf.stack from the batch size), batch normalization
# after every layer but the last; the discriminator is strided convolutions with
# leaky ReLUs and batch normalization; two Adam optimizers, each with its own
# var_list and its own scope's UPDATE_OPS, run in turn.  Noise comes from numpy.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 12))
BATCH, Z = 16, 8

rng = np.random.RandomState(21)
yy, xx = np.mgrid[0:12, 0:12]
real_images = np.zeros((64, 12, 12, 1), np.float32)
for i in range(64):
    cy, cx = rng.uniform(3, 9, size=2)
    real_images[i, :, :, 0] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0) * 2 - 1
noise = np.random.RandomState(22)
init = np.random.RandomState(23)


def weights(name, *shape, scale=0.1):
    return tf.get_variable(name, initializer=(init.randn(*shape) * scale).astype(np.float32))


def lrelu(x, leak=0.2):
    return tf.maximum(x, leak * x)


def generator(z, training):
    with tf.variable_scope("generator"):
        h0 = tf.matmul(z, weights("w0", Z, 3 * 3 * 16))
        h0 = tf.reshape(h0, [-1, 3, 3, 16])
        h0 = tf.nn.relu(tf.layers.batch_normalization(h0, training=training, name="bn0"))
        batch = tf.shape(z)[0]
        h1 = tf.nn.conv2d_transpose(h0, weights("w1", 3, 3, 8, 16), tf.stack([batch, 6, 6, 8]),
                                    strides=[1, 2, 2, 1], padding="SAME")
        h1 = tf.nn.relu(tf.layers.batch_normalization(h1, training=training, name="bn1"))
        h2 = tf.nn.conv2d_transpose(h1, weights("w2", 4, 4, 1, 8), tf.stack([batch, 12, 12, 1]),
                                    strides=[1, 2, 2, 1], padding="SAME")
        return tf.nn.tanh(h2)


def discriminator(images, reuse=False):
    with tf.variable_scope("discriminator", reuse=reuse):
        h0 = lrelu(tf.nn.conv2d(images, weights("w0", 3, 3, 1, 8, scale=0.2), [1, 2, 2, 1], "SAME"))
        h1 = tf.nn.conv2d(h0, weights("w1", 3, 3, 8, 16), [1, 2, 2, 1], "SAME")
        h1 = lrelu(tf.layers.batch_normalization(h1, training=True, name="bn1"))
        return tf.matmul(tf.reshape(h1, [-1, 3 * 3 * 16]), weights("w2", 144, 1))


z = tf.placeholder(tf.float32, [None, Z], name="z")
real = tf.placeholder(tf.float32, [None, 12, 12, 1], name="real")
fake = generator(z, training=True)
d_real = discriminator(real)
d_fake = discriminator(fake, reuse=True)

xent = tf.nn.sigmoid_cross_entropy_with_logits
d_loss = (tf.reduce_mean(xent(logits=d_real, labels=tf.ones_like(d_real)))
          + tf.reduce_mean(xent(logits=d_fake, labels=tf.zeros_like(d_fake))))
g_loss = tf.reduce_mean(xent(logits=d_fake, labels=tf.ones_like(d_fake)))

t_vars = tf.trainable_variables()
d_vars = [v for v in t_vars if v.name.startswith("discriminator/")]
g_vars = [v for v in t_vars if v.name.startswith("generator/")]
d_opt = tf.train.AdamOptimizer(0.002, beta1=0.5)
g_opt = tf.train.AdamOptimizer(0.002, beta1=0.5)
if os.environ.get("DISTRIBUTED") == "1":
    d_opt, g_opt = tf.DistributedOptimizer(d_opt), tf.DistributedOptimizer(g_opt)
with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS, scope="discriminator")):
    d_optim = d_opt.minimize(d_loss, var_list=d_vars)
with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS, scope="generator")):
    g_optim = g_opt.minimize(g_loss, var_list=g_vars)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    print("trainable", len(t_vars), "update ops", len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)),
          "moving statistics", len([v for v in tf.global_variables() if "moving_" in v.name]))
    for step in range(STEPS):
        lo = (step * BATCH) % 64
        batch_z = noise.uniform(-1, 1, size=(BATCH, Z)).astype(np.float32)
        batch_real = real_images[lo:lo + BATCH]
        if os.environ.get("DISTRIBUTED") == "1":
            batch_z, batch_real = tf.distributed.shard(batch_z, batch_real)
        _, dl = sess.run([d_optim, d_loss], feed_dict={z: batch_z, real: batch_real})
        _, gl = sess.run([g_optim, g_loss], feed_dict={z: batch_z})
        if step % 3 == 0 or step == STEPS - 1:
            print("step %d d loss %.5f g loss %.5f" % (step, dl, gl))
    sample = sess.run(fake, feed_dict={z: noise.uniform(-1, 1, size=(4, Z)).astype(np.float32)})
    print("sample", " ".join("%.4f" % v for v in sample[0, 5, 3:9, 0]))
    with tf.variable_scope("generator/bn1", reuse=True):
        print("generator moving variance", " ".join(
            "%.4f" % v for v in sess.run(tf.get_variable("moving_variance"))))
    if os.environ.get("OUT") and (os.environ.get("DISTRIBUTED") != "1" or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], **{v.op.name.replace("/", "__"): val
                                      for v, val in zip(tf.global_variables(), sess.run(tf.global_variables()))})
