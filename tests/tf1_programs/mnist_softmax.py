# "MNIST for ML beginners" as TF1 tutorials wrote it (tf.app.run, FLAGS, a
# placeholder-fed loop, softmax_cross_entropy_with_logits, in-graph accuracy).
# Changed: the import line and the data loading (distnet's embedded
# Fashion-MNIST subset).  DISTRIBUTED=1 adds the wrapper line and the shard line.
import argparse
import os
import sys

import numpy as np
import distnet.compat.v1 as tf
import _data as input_data

FLAGS = None
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints, as Horovod programs do)


def main(_):
    mnist = input_data.read_data_sets(FLAGS.data_dir, one_hot=True)
    tf.set_random_seed(0)
    x = tf.placeholder(tf.float32, [None, 784])
    W = tf.Variable(tf.zeros([784, 10]))
    b = tf.Variable(tf.zeros([10]))
    y = tf.matmul(x, W) + b
    y_ = tf.placeholder(tf.float32, [None, 10])
    cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=y))
    opt = tf.train.GradientDescentOptimizer(0.5)
    if DISTRIBUTED:
        opt = tf.DistributedOptimizer(opt)
    train_step = opt.minimize(cross_entropy)

    sess = tf.InteractiveSession()
    tf.global_variables_initializer().run()
    for step in range(FLAGS.steps):
        batch_xs, batch_ys = mnist.train.next_batch(100)
        if DISTRIBUTED:
            batch_xs, batch_ys = tf.distributed.shard(batch_xs, batch_ys)
        sess.run(train_step, feed_dict={x: batch_xs, y_: batch_ys})

    correct_prediction = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))
    print('accuracy', sess.run(accuracy, feed_dict={x: mnist.test.images, y_: mnist.test.labels}))
    if FLAGS.out and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(FLAGS.out, W=sess.run(W), b=sess.run(b))


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument('--data_dir', type=str, default='/tmp/tensorflow/mnist/input_data')
    parser.add_argument('--steps', type=int, default=1000)
    parser.add_argument('--out', type=str, default='')
    FLAGS, unparsed = parser.parse_known_args()
    tf.app.run(main=main, argv=[sys.argv[0]] + unparsed)
