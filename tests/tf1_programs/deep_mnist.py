# A small convolutional classifier in the style of TF1's "deep MNIST"
# lessons: an InteractiveSession, helper functions that make weights and
# layers, two convolution + 2x2 max-pool stages, a fully connected layer
# with dropout whose keep probability is a placeholder (0.5 to train, 1.0 to
# measure), Adam at 1e-4, `accuracy.eval(...)` for progress and
# `train_step.run(...)` for the steps.  Data from input_data; STEPS from the
# environment.  DISTRIBUTED=1: the wrapper line, each worker's share of the
# batch, and the printed accuracy made global.
import os

import numpy as np
import distnet.compat.v1 as tf
from distnet.compat.v1 import input_data

STEPS = int(os.environ.get("STEPS", 2000))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
LEADER = not DISTRIBUTED or tf.distributed.rank() == 0

images = input_data.read_data_sets("MNIST_data", one_hot=True)
tf.set_random_seed(3)
session = tf.InteractiveSession()


def weights(shape, name):
    return tf.Variable(tf.truncated_normal(shape, stddev=0.1), name=name)


def biases(size, name):
    return tf.Variable(tf.constant(0.1, shape=[size]), name=name)


def conv_pool(inputs, in_channels, out_channels, scope):
    """5x5 convolution, ReLU, then a 2x2 max-pool that halves height and width."""
    with tf.name_scope(scope):
        kernel = weights([5, 5, in_channels, out_channels], "kernel")
        shift = biases(out_channels, "bias")
        conv = tf.nn.conv2d(inputs, kernel, strides=[1, 1, 1, 1], padding="SAME")
        active = tf.nn.relu(tf.nn.bias_add(conv, shift))
        return tf.nn.max_pool(active, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")


pixels = tf.placeholder(tf.float32, [None, 784])
onehot = tf.placeholder(tf.float32, [None, 10])
keep = tf.placeholder(tf.float32)

grid = tf.reshape(pixels, [-1, 28, 28, 1])
stage1 = conv_pool(grid, 1, 8, "stage1")                # 14 x 14 x 8
stage2 = conv_pool(stage1, 8, 16, "stage2")             # 7 x 7 x 16
flat = tf.reshape(stage2, [-1, 7 * 7 * 16])
with tf.name_scope("dense"):
    dense = tf.nn.relu(tf.matmul(flat, weights([7 * 7 * 16, 128], "w")) + biases(128, "b"))
    dropped = tf.nn.dropout(dense, keep)
with tf.name_scope("readout"):
    logits = tf.matmul(dropped, weights([128, 10], "w")) + biases(10, "b")

xent = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits))
adam = tf.train.AdamOptimizer(1e-4)
if DISTRIBUTED:
    adam = tf.DistributedOptimizer(adam)
train_step = adam.minimize(xent)
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), tf.argmax(onehot, 1)), tf.float32))

tf.global_variables_initializer().run()
for step in range(STEPS):
    xs, ys = images.train.next_batch(50)
    if DISTRIBUTED:
        xs, ys = tf.distributed.shard(xs, ys)
    if step % 100 == 0:
        seen = accuracy.eval(feed_dict={pixels: xs, onehot: ys, keep: 1.0})
        if DISTRIBUTED:
            seen = tf.distributed.allreduce(seen, weight=len(xs))
        if LEADER:
            print("step %d batch accuracy %.6f" % (step, seen))
    train_step.run(feed_dict={pixels: xs, onehot: ys, keep: 0.5})

final = accuracy.eval(feed_dict={pixels: images.test.images, onehot: images.test.labels, keep: 1.0})
if LEADER:
    print("test accuracy %.4f" % final)
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: v.eval() for v in tf.trainable_variables()})
