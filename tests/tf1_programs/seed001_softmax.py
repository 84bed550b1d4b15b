# Seed 001's program (../shared/seeds/001): softmax regression with an L2 term,
# GradientDescentOptimizer(0.5).minimize(loss) and session.run([optimizer, loss,
# train_prediction]) in a loop, as in the course it quotes.  Changed: the import
# line and the data loading (input_data: 1000 of the Fashion-MNIST images distnet finds, instead of notMNIST).
# DISTRIBUTED=1 adds the wrapper line, and each rank builds its part of the
# training set into the graph.
import os
import numpy as np
import distnet.compat.v1 as tf
from distnet.compat.v1 import input_data

DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints, as Horovod programs do)
image_size, num_labels, beta = 28, 10, 0.01
num_steps = int(os.environ.get("STEPS", 101))
mnist = input_data.read_data_sets('notMNIST', one_hot=True)
# float32 labels, as the course's notMNIST reformat() made them (input_data's one-hot rows are float64).
train_dataset, train_labels = mnist.train.images[:1000], mnist.train.labels[:1000].astype(np.float32)
test_dataset, test_labels = mnist.test.images[:500], mnist.test.labels[:500].astype(np.float32)
if DISTRIBUTED:
    train_dataset, train_labels = tf.distributed.shard(train_dataset, train_labels)


def accuracy(predictions, labels):
    return 100.0 * np.sum(np.argmax(predictions, 1) == np.argmax(labels, 1)) / predictions.shape[0]


graph = tf.Graph()
with graph.as_default():
    tf.set_random_seed(1)
    tf_train_dataset = tf.constant(train_dataset)
    tf_train_labels = tf.constant(train_labels)
    tf_test_dataset = tf.constant(test_dataset)

    weights = tf.Variable(
        tf.truncated_normal([image_size * image_size, num_labels]))
    biases = tf.Variable(tf.zeros([num_labels]))

    logits = tf.matmul(tf_train_dataset, weights) + biases
    loss = tf.reduce_mean(
        tf.nn.softmax_cross_entropy_with_logits(labels=tf_train_labels, logits=logits))
    loss = loss + tf.multiply(beta, tf.nn.l2_loss(weights))

    opt = tf.train.GradientDescentOptimizer(0.5)
    if DISTRIBUTED:
        opt = tf.DistributedOptimizer(opt)
    optimizer = opt.minimize(loss)

    train_prediction = tf.nn.softmax(logits)
    test_prediction = tf.nn.softmax(tf.matmul(tf_test_dataset, weights) + biases)

with tf.Session(graph=graph) as session:
    tf.global_variables_initializer().run()
    for step in range(num_steps):
        _, l, predictions = session.run([optimizer, loss, train_prediction])
        if step % 50 == 0:
            print('Minibatch loss at step %d: %f' % (step, l))
            print('Minibatch accuracy: %.1f%%' % accuracy(predictions, train_labels))
    print('Test accuracy: %.1f%%' % accuracy(test_prediction.eval(), test_labels))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], weights=session.run(weights), biases=session.run(biases))
