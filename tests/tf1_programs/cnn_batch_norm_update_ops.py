# A tutorial-style convolutional classifier with batch normalization after each
# convolution (tf.layers.batch_normalization with a `training` placeholder), and
# the UPDATE_OPS idiom that TF1 tutorials insist on: the moving mean/variance
# are only updated because the train op depends on the update ops.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 20))
BATCH = 24

# 10x10 grey images of 4 classes: a bright 4x4 square in one quadrant, plus noise.
rng = np.random.RandomState(3)
labels = rng.randint(0, 4, size=240)
images = rng.rand(240, 10, 10, 1).astype(np.float32) * 0.8
for i, c in enumerate(labels):
    r, q = divmod(int(c), 2)
    images[i, 1 + 5 * r:5 + 5 * r, 1 + 5 * q:5 + 5 * q, 0] += 0.4
onehot = np.eye(4, dtype=np.float32)[labels]

init = np.random.RandomState(0)
x = tf.placeholder(tf.float32, [None, 10, 10, 1], name="x")
y_ = tf.placeholder(tf.float32, [None, 4], name="y_")
is_training = tf.placeholder(tf.bool, name="is_training")

conv1 = tf.layers.conv2d(x, 8, 3, padding="same", use_bias=False,
                         kernel_initializer=tf.constant_initializer(init.randn(3, 3, 1, 8) * 0.3))
bn1 = tf.nn.relu(tf.layers.batch_normalization(conv1, training=is_training, momentum=0.9))
pool1 = tf.layers.max_pooling2d(bn1, 2, 2)
conv2 = tf.layers.conv2d(pool1, 8, 3, padding="same", use_bias=False,
                         kernel_initializer=tf.constant_initializer(init.randn(3, 3, 8, 8) * 0.2))
bn2 = tf.nn.relu(tf.layers.batch_normalization(conv2, training=is_training, momentum=0.9))
flat = tf.reshape(bn2, [-1, 5 * 5 * 8])
logits = tf.layers.dense(flat, 4, kernel_initializer=tf.constant_initializer(init.randn(200, 4) * 0.1))

loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=y_, logits=logits))
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), tf.argmax(y_, 1)), tf.float32))

optimizer = tf.train.MomentumOptimizer(0.01, 0.9)
if os.environ.get("DISTRIBUTED") == "1":
    # distnet: statistics of the global batch; SYNC_BN=0 keeps each rank's own (TF's and Horovod's way).
    optimizer = tf.DistributedOptimizer(optimizer, sync_batch_norm=os.environ.get("SYNC_BN", "1") == "1")
update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = optimizer.minimize(loss)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        lo = (step * BATCH) % 240
        bx, by = images[lo:lo + BATCH], onehot[lo:lo + BATCH]
        if os.environ.get("DISTRIBUTED") == "1":
            bx, by = tf.distributed.shard(bx, by)
        _, l = sess.run([train_op, loss], feed_dict={x: bx, y_: by, is_training: True})
        if step % 5 == 0 or step == STEPS - 1:
            print("step %d loss %.5f" % (step, l))
    # Evaluation with the moving statistics (the whole set on every rank).
    l, a = sess.run([loss, accuracy], feed_dict={x: images, y_: onehot, is_training: False})
    print("eval loss %.5f accuracy %.4f" % (l, a))
    names = [v.op.name for v in tf.global_variables()]
    values = sess.run(tf.global_variables())
    for name, value in zip(names, values):
        if "moving" in name:   # one line per statistic, the layers in order
            print("%s %s" % (name.split("/")[-1].replace("_", " "), " ".join("%.5f" % v for v in value)))
    if os.environ.get("OUT") and (os.environ.get("DISTRIBUTED") != "1" or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], **{n.replace("/", "__"): v for n, v in zip(names, values)})
