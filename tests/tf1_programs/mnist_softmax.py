# Softmax regression on 28x28 images, the first program of most TF1 courses:
# command-line flags parsed by argparse and handed to tf.app.run, the image
# rows fed through placeholders, one weight matrix and one bias, plain
# gradient descent on the mean cross-entropy, and the share of test images
# classified right at the end.  It reads its images with input_data (local
# IDX files; here the Fashion-MNIST that distnet finds).  DISTRIBUTED=1 adds
# the wrapper line and each worker's share of the batch.
import argparse
import os
import sys

import numpy as np
import distnet.compat.v1 as tf
from distnet.compat.v1 import input_data

DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
args = None


def softmax_model(n_inputs, n_classes):
    """Placeholders, the two variables, the logits and the loss."""
    pixels = tf.placeholder(tf.float32, shape=[None, n_inputs], name="pixels")
    truth = tf.placeholder(tf.float32, shape=[None, n_classes], name="truth")
    weights = tf.Variable(tf.zeros([n_inputs, n_classes]), name="weights")
    biases = tf.Variable(tf.zeros([n_classes]), name="biases")
    scores = tf.add(tf.matmul(pixels, weights), biases)
    mean_xent = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=truth, logits=scores))
    return pixels, truth, weights, biases, scores, mean_xent


def run(_):
    data = input_data.read_data_sets(args.data_dir, one_hot=True)
    pixels, truth, weights, biases, scores, mean_xent = softmax_model(784, 10)
    sgd = tf.train.GradientDescentOptimizer(learning_rate=0.5)
    if DISTRIBUTED:
        sgd = tf.DistributedOptimizer(sgd)
    minimize = sgd.minimize(mean_xent)
    hit = tf.equal(tf.argmax(scores, axis=1), tf.argmax(truth, axis=1))
    share_right = tf.reduce_mean(tf.cast(hit, tf.float32))

    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(args.steps):
            images, labels = data.train.next_batch(100)
            if DISTRIBUTED:
                images, labels = tf.distributed.shard(images, labels)
            sess.run(minimize, feed_dict={pixels: images, truth: labels})
        score = sess.run(share_right, feed_dict={pixels: data.test.images, truth: data.test.labels})
        if not DISTRIBUTED or tf.distributed.rank() == 0:
            print("test set accuracy %.4f" % score)
            if args.out:
                np.savez(args.out, weights=sess.run(weights), biases=sess.run(biases))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="softmax regression on MNIST-style images")
    parser.add_argument("--data_dir", default="/tmp/mnist_data", help="directory of the IDX files")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of 100 images")
    parser.add_argument("--out", default="", help="write the trained weights to this .npz")
    args, rest = parser.parse_known_args()
    tf.app.run(main=run, argv=[sys.argv[0]] + rest)
