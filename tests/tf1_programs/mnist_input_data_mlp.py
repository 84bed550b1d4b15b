# A TF 1.x MNIST script of the kind every course began with, run unchanged:
# `import tensorflow as tf` and the tutorials' own data module,
# `from tensorflow.examples.tutorials.mnist import input_data`, reading
# ./MNIST_data with one-hot labels; a one-hidden-layer network with
# truncated-normal weights, Adam, minibatches from mnist.train.next_batch,
# and the test accuracy at the end.  TensorFlow 2.21 has no
# tensorflow.examples, so this program has no recorded reference: its test
# judges it by properties (the data line, a falling loss, the accuracy).
import os

import numpy as np
import tensorflow as tf
from tensorflow.examples.tutorials.mnist import input_data

FLAGS = tf.app.flags.FLAGS
tf.app.flags.DEFINE_string("data_dir", "MNIST_data", "where the IDX files are")
tf.app.flags.DEFINE_integer("hidden", 64, "hidden units")
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"


def main(_):
    mnist = input_data.read_data_sets(FLAGS.data_dir, one_hot=True)
    tf.set_random_seed(1)
    images = tf.placeholder(tf.float32, [None, 784])
    targets = tf.placeholder(tf.float32, [None, 10])
    w1 = tf.Variable(tf.truncated_normal([784, FLAGS.hidden], stddev=0.05))
    b1 = tf.Variable(tf.zeros([FLAGS.hidden]))
    w2 = tf.Variable(tf.truncated_normal([FLAGS.hidden, 10], stddev=0.05))
    b2 = tf.Variable(tf.zeros([10]))
    hidden = tf.nn.relu(tf.matmul(images, w1) + b1)
    logits = tf.matmul(hidden, w2) + b2
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))
    optimizer = tf.train.AdamOptimizer(1e-3)
    if DISTRIBUTED:
        optimizer = tf.DistributedOptimizer(optimizer)
    train_step = optimizer.minimize(loss)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), tf.argmax(targets, 1)), tf.float32))
    rank0 = not DISTRIBUTED or tf.distributed.rank() == 0

    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for step in range(int(os.environ.get("STEPS", 300))):
            batch_x, batch_y = mnist.train.next_batch(100)
            if DISTRIBUTED:
                batch_x, batch_y = tf.distributed.shard(batch_x, batch_y)
            _, value = sess.run([train_step, loss], feed_dict={images: batch_x, targets: batch_y})
            if step % 25 == 0:
                if DISTRIBUTED:
                    value = tf.distributed.allreduce(value, weight=len(batch_x))
                if rank0:
                    print("step %d loss %.5f" % (step, value))
        test_acc = sess.run(accuracy, feed_dict={images: mnist.test.images, targets: mnist.test.labels})
        if rank0:
            print("test accuracy %.4f" % test_acc)
        if os.environ.get("OUT") and rank0:
            np.savez(os.environ["OUT"], w1=sess.run(w1), b1=sess.run(b1), w2=sess.run(w2), b2=sess.run(b2))


if __name__ == "__main__":
    tf.app.run()
