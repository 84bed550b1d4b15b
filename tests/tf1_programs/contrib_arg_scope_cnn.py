# A TF 1.x contrib/slim-style CNN: layers from tf.contrib.layers configured
# once with arg_scope (activation, initializer, L2 regularizer for every conv
# and dense layer; a nested scope changes the padding), max pooling, dropout
# switched by an is_training placeholder, the regularization losses added to
# the data loss, and a numpy-seeded initializer so the run is comparable.
import os

import numpy as np
import tensorflow as tf
from tensorflow.contrib import layers
from tensorflow.contrib.framework import arg_scope

STEPS = int(os.environ.get("STEPS", 15))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"


def seeded_initializer(shape, dtype=None, partition_info=None):
    """Weights drawn by numpy (seeded by the shape), so every framework starts from the same values."""
    seed = int(np.prod(shape)) % 9973
    fan_in = int(np.prod(shape[:-1]))
    return tf.constant((np.random.RandomState(seed).randn(*shape) / np.sqrt(fan_in)).astype(np.float32))


rs = np.random.RandomState(8)
n = 192
labels_all = rs.randint(0, 3, size=n)
images_all = rs.rand(n, 8, 8, 1).astype(np.float32) * 0.5
for i, c in enumerate(labels_all):          # class c: a bright band at rows 2c..2c+2
    images_all[i, 2 * c:2 * c + 3, :, 0] += 0.8

images = tf.placeholder(tf.float32, [None, 8, 8, 1])
labels = tf.placeholder(tf.int64, [None])
is_training = tf.placeholder(tf.bool, [])

with arg_scope([layers.conv2d, layers.fully_connected], activation_fn=tf.nn.relu,
               weights_initializer=seeded_initializer, weights_regularizer=layers.l2_regularizer(0.001)):
    net = layers.conv2d(images, 8, [3, 3], scope="conv1")
    net = layers.max_pool2d(net, [2, 2], scope="pool1")
    with arg_scope([layers.conv2d], padding="VALID"):
        net = layers.conv2d(net, 12, [3, 3], scope="conv2")
    net = layers.flatten(net)
    net = layers.fully_connected(net, 16, scope="fc3")
    net = layers.dropout(net, keep_prob=0.5, is_training=is_training)
    logits = layers.fully_connected(net, 3, activation_fn=None, scope="logits")

data_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
reg_loss = tf.add_n(tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES))
total_loss = data_loss + reg_loss
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
opt = tf.train.MomentumOptimizer(0.05, 0.9)
if DISTRIBUTED:
    opt = tf.DistributedOptimizer(opt)
train_op = opt.minimize(total_loss)
rank = tf.distributed.rank() if DISTRIBUTED else 0

if rank == 0:
    print("variables", len(tf.trainable_variables()), "regularized", len(tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)))
    print("logits shape", logits.get_shape().as_list()[1], "dense input", int(np.prod(net.get_shape().as_list()[1:])))

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        start = (step * 48) % n
        xs, ys = images_all[start:start + 48], labels_all[start:start + 48]
        if DISTRIBUTED:
            xs, ys = tf.distributed.shard(xs, ys)
        # keep_prob 0.5 only when training is on: compared runs keep it off (dropout masks differ by framework)
        _, loss_value, reg_value = sess.run([train_op, total_loss, reg_loss],
                                            feed_dict={images: xs, labels: ys, is_training: False})
        if rank == 0 and step % 5 == 0:
            print("step %d loss %.6f reg %.6f" % (step, loss_value, reg_value))
    acc = sess.run(accuracy, feed_dict={images: images_all, labels: labels_all, is_training: False})
    trained = {v.op.name.replace("/", "_"): sess.run(v) for v in tf.trainable_variables()}
    if rank == 0:
        print("train accuracy %.6f" % acc)
        print("fc3 weights", " ".join("%.6f" % v for v in trained["fc3_weights"].ravel()[:5]))
        print("names", " ".join(sorted(trained)))
    if os.environ.get("OUT") and rank == 0:
        np.savez(os.environ["OUT"], **trained)
