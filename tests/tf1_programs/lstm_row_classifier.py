# An LSTM that reads an image row by row and classifies it, the way TF 1.x
# recurrent-network examples wrote it: `from tensorflow.contrib import rnn`,
# the image reshaped to [batch, rows, columns] and unstacked into a list of
# rows, rnn.static_rnn over a BasicLSTMCell, the last output through a dense
# layer, softmax cross-entropy, Adam, accuracy.  The images are small
# generated pictures (stripes, blocks and diagonals with noise, ten classes)
# instead of MNIST; the weights start from seeded numpy arrays.
import os

import numpy as np
import tensorflow as tf
from tensorflow.contrib import rnn

STEPS = int(os.environ.get("STEPS", 100))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints)

# Training Parameters
learning_rate = 0.01
batch_size = 32
display_step = 10

# Network Parameters
num_input = 12      # pixels per row
timesteps = 12      # rows
num_hidden = 24
num_classes = 10


def make_images(n, seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, num_classes, n)
    images = np.zeros((n, timesteps, num_input), np.float32)
    for i, k in enumerate(labels):
        img = images[i]
        if k < 3:
            img[k::3, :] = 1.0                      # horizontal stripes, three phases
        elif k < 6:
            img[:, k - 3::3] = 1.0                  # vertical stripes
        elif k == 6:
            img[:6, :6] = img[6:, 6:] = 1.0         # blocks
        elif k == 7:
            img[:6, 6:] = img[6:, :6] = 1.0
        elif k == 8:
            np.fill_diagonal(img, 1.0)
        else:
            np.fill_diagonal(img[:, ::-1], 1.0)
    images += 0.3 * rng.randn(n, timesteps, num_input).astype(np.float32)
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    return images.reshape(n, -1), onehot


train_x, train_y = make_images(640, 1)
test_x, test_y = make_images(200, 2)

X = tf.placeholder("float", [None, timesteps * num_input])
Y = tf.placeholder("float", [None, num_classes])

init = np.random.RandomState(0)
weights = {'out': tf.Variable(init.randn(num_hidden, num_classes).astype(np.float32) * 0.3)}
biases = {'out': tf.Variable(np.zeros(num_classes, np.float32))}
cell_kernel = init.uniform(-0.2, 0.2, (num_input + num_hidden, 4 * num_hidden)).astype(np.float32)


def RNN(x, weights, biases):
    x = tf.reshape(x, [-1, timesteps, num_input])
    # Unstack to get a list of 'timesteps' tensors of shape (batch_size, num_input)
    x = tf.unstack(x, timesteps, 1)
    with tf.variable_scope("lstm", initializer=tf.constant_initializer(cell_kernel)):
        lstm_cell = rnn.BasicLSTMCell(num_hidden, forget_bias=1.0)
        outputs, states = rnn.static_rnn(lstm_cell, x, dtype=tf.float32)
    # Linear activation, using rnn inner loop last output
    return tf.matmul(outputs[-1], weights['out']) + biases['out']


logits = RNN(X, weights, biases)
prediction = tf.nn.softmax(logits)

loss_op = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=Y))
optimizer = tf.train.AdamOptimizer(learning_rate=learning_rate)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss_op)

correct_pred = tf.equal(tf.argmax(prediction, 1), tf.argmax(Y, 1))
accuracy = tf.reduce_mean(tf.cast(correct_pred, tf.float32))

init_op = tf.global_variables_initializer()

with tf.Session() as sess:
    sess.run(init_op)
    for step in range(1, STEPS + 1):
        start = ((step - 1) * batch_size) % len(train_x)
        batch_x, batch_y = train_x[start:start + batch_size], train_y[start:start + batch_size]
        if DISTRIBUTED:
            batch_x, batch_y = tf.distributed.shard(batch_x, batch_y)
        sess.run(train_op, feed_dict={X: batch_x, Y: batch_y})
        if step % display_step == 0 or step == 1:
            loss, acc = sess.run([loss_op, accuracy], feed_dict={X: train_x[:128], Y: train_y[:128]})
            print("Step " + str(step) + ", Minibatch Loss= " + "{:.5f}".format(loss) +
                  ", Training Accuracy= " + "{:.4f}".format(acc))
    print("Optimization Finished!")
    print("Testing Accuracy:", "{:.4f}".format(sess.run(accuracy, feed_dict={X: test_x, Y: test_y})))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
