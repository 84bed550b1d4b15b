# A GAN that learns a 1-D Gaussian, written the way the TF1 GAN tutorials were:
# generator and discriminator in their own variable scopes (the discriminator
# reused for real and fake samples), each trained by its own Adam on its own
# variables, both steps fetched in ONE sess.run (TF1 computes both gradients
# from the same forward values, then applies both updates).  The noise and the
# real samples come from numpy with a seed so the run compares with TensorFlow.
# Resource variables (TF 1.15's enable_resource_variables) make TensorFlow's
# reads ordered, so its numbers are the same on every run: with the old ref
# variables TF1 left it to thread timing whether the generator's step saw the
# discriminator before or after its update.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()
tf.enable_resource_variables()

STEPS = int(os.environ.get("STEPS", 40))
BATCH = 64
HIDDEN = 16
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
rng = np.random.RandomState(3)


def init(shape, scale=0.3):
    return tf.constant_initializer(rng.randn(*shape).astype(np.float32) * scale)


def generator(z):
    with tf.variable_scope("generator"):
        h = tf.layers.dense(z, HIDDEN, activation=tf.nn.softplus, kernel_initializer=init([1, HIDDEN]),
                            name="hidden")
        return tf.layers.dense(h, 1, kernel_initializer=init([HIDDEN, 1]), name="out")


def discriminator(x, reuse=False):
    with tf.variable_scope("discriminator", reuse=reuse):
        h = tf.nn.leaky_relu(tf.layers.dense(x, HIDDEN, kernel_initializer=init([1, HIDDEN]), name="hidden"))
        h = tf.nn.leaky_relu(tf.layers.dense(h, HIDDEN, kernel_initializer=init([HIDDEN, HIDDEN]), name="hidden2"))
        return tf.layers.dense(h, 1, kernel_initializer=init([HIDDEN, 1]), name="logit")


real = tf.placeholder(tf.float32, [None, 1], name="real")
noise = tf.placeholder(tf.float32, [None, 1], name="noise")
fake = generator(noise)
d_real = discriminator(real)
d_fake = discriminator(fake, reuse=True)

d_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(logits=d_real, labels=tf.ones_like(d_real))) + \
    tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(logits=d_fake, labels=tf.zeros_like(d_fake)))
g_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(logits=d_fake, labels=tf.ones_like(d_fake)))

t_vars = tf.trainable_variables()
d_vars = [v for v in t_vars if v.name.startswith("discriminator/")]
g_vars = [v for v in t_vars if v.name.startswith("generator/")]
d_opt = tf.train.AdamOptimizer(0.01, beta1=0.5)
g_opt = tf.train.AdamOptimizer(0.01, beta1=0.5)
if DISTRIBUTED:
    d_opt = tf.DistributedOptimizer(d_opt)
    g_opt = tf.DistributedOptimizer(g_opt)
d_train = d_opt.minimize(d_loss, var_list=d_vars)
g_train = g_opt.minimize(g_loss, var_list=g_vars)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        x_batch = (rng.randn(BATCH, 1) * 0.5 + 2.0).astype(np.float32)
        z_batch = rng.uniform(-1.0, 1.0, size=(BATCH, 1)).astype(np.float32)
        if DISTRIBUTED:
            x_batch, z_batch = tf.distributed.shard(x_batch, z_batch)
        _, _, dl, gl = sess.run([d_train, g_train, d_loss, g_loss], feed_dict={real: x_batch, noise: z_batch})
        if step % 10 == 0 or step == STEPS - 1:
            if DISTRIBUTED:
                dl, gl = tf.distributed.allreduce(dl), tf.distributed.allreduce(gl)
            print("step %d d_loss %.6f g_loss %.6f" % (step, dl, gl))
    z_eval = np.linspace(-1.0, 1.0, 9, dtype=np.float32).reshape(-1, 1)
    samples = sess.run(fake, feed_dict={noise: z_eval})
    print("samples", " ".join("%.6f" % v for v in samples.ravel()))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in t_vars})
