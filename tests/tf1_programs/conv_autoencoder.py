# A convolutional autoencoder as the 2017 tutorials wrote it: strided
# tf.layers.conv2d down to a small code, tf.layers.conv2d_transpose back up, a
# sigmoid output and a mean-squared reconstruction loss trained with Adam.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))

# 12x12 images: one or two soft blobs at random places.
rng = np.random.RandomState(9)
yy, xx = np.mgrid[0:12, 0:12]
images = np.zeros((160, 12, 12, 1), np.float32)
for i in range(160):
    for _ in range(1 + i % 2):
        cy, cx, s = rng.uniform(2, 10), rng.uniform(2, 10), rng.uniform(1.0, 2.5)
        images[i, :, :, 0] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
images = np.clip(images, 0, 1)

init = np.random.RandomState(4)


def const(*shape, scale):
    return tf.constant_initializer(init.randn(*shape) * scale)


inputs = tf.placeholder(tf.float32, (None, 12, 12, 1), name="inputs")
# Encoder: 12x12x1 -> 6x6x8 -> 3x3x4
conv1 = tf.layers.conv2d(inputs, 8, (3, 3), strides=2, padding="same", activation=tf.nn.relu,
                         kernel_initializer=const(3, 3, 1, 8, scale=0.4))
encoded = tf.layers.conv2d(conv1, 4, (3, 3), strides=2, padding="same", activation=tf.nn.relu,
                           kernel_initializer=const(3, 3, 8, 4, scale=0.3))
# Decoder: 3x3x4 -> 6x6x8 -> 12x12x1
deconv1 = tf.layers.conv2d_transpose(encoded, 8, (3, 3), strides=2, padding="same", activation=tf.nn.relu,
                                     kernel_initializer=const(3, 3, 8, 4, scale=0.3))
logits = tf.layers.conv2d_transpose(deconv1, 1, (4, 4), strides=2, padding="same",
                                    kernel_initializer=const(4, 4, 1, 8, scale=0.3))
decoded = tf.nn.sigmoid(logits)
loss = tf.reduce_mean(tf.square(decoded - inputs))

opt = tf.train.AdamOptimizer(0.01)
if os.environ.get("DISTRIBUTED") == "1":
    opt = tf.DistributedOptimizer(opt)
train_op = opt.minimize(loss)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        lo = (step * 32) % 160
        batch = images[lo:lo + 32]
        if os.environ.get("DISTRIBUTED") == "1":
            batch = tf.distributed.shard(batch)
        _, l = sess.run([train_op, loss], feed_dict={inputs: batch})
        if step % 5 == 0 or step == STEPS - 1:
            print("step %d reconstruction loss %.6f" % (step, l))
    rec = sess.run(decoded, feed_dict={inputs: images[:4]})
    print("shapes", *rec.shape, *sess.run(encoded, feed_dict={inputs: images[:4]}).shape)
    print("reconstruction", " ".join("%.4f" % v for v in rec[0, 4:8, 6, 0]))
    print("final loss %.6f" % sess.run(loss, feed_dict={inputs: images}))
    names = [v.op.name for v in tf.trainable_variables()]
    if os.environ.get("OUT") and (os.environ.get("DISTRIBUTED") != "1" or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], **{n.replace("/", "__"): v
                                      for n, v in zip(names, sess.run(tf.trainable_variables()))})
