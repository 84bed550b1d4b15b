# Epoch-based training with an initializable iterator, as TF 1.4+ tutorials
# taught it: the data go in through placeholders when the iterator starts
# (so big arrays are not baked into the graph), one `sess.run(iterator.
# initializer, feed_dict=...)` per epoch, and `tf.errors.OutOfRangeError`
# ending the loop over the batches.  The same iterator is then restarted on
# the held-out arrays to measure the loss and accuracy of the epoch.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

EPOCHS = int(os.environ.get("EPOCHS", 4))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
BATCH = 20

rs = np.random.RandomState(5)
centers = rs.randn(3, 4).astype(np.float32) * 0.8
labels_all = rs.randint(0, 3, size=240)
inputs_all = (centers[labels_all] + rs.randn(240, 4)).astype(np.float32)
train_x, train_y = inputs_all[:200], labels_all[:200]
valid_x, valid_y = inputs_all[200:], labels_all[200:]

x_source = tf.placeholder(tf.float32, [None, 4], name="x_source")
y_source = tf.placeholder(tf.int64, [None], name="y_source")
dataset = tf.data.Dataset.from_tensor_slices((x_source, y_source))
if DISTRIBUTED:
    dataset = dataset.shard(tf.distributed.size(), tf.distributed.rank())
    dataset = dataset.batch(BATCH // tf.distributed.size())
else:
    dataset = dataset.batch(BATCH)
iterator = dataset.make_initializable_iterator()
x, y = iterator.get_next()

w = tf.Variable(rs.randn(4, 3).astype(np.float32) * 0.1, name="w")
b = tf.Variable(np.zeros(3, np.float32), name="b")
logits = tf.matmul(x, w) + b
loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
batch_size = tf.shape(x)[0]

optimizer = tf.train.MomentumOptimizer(0.05, momentum=0.9)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)


def total(value):
    """A sum over the workers (one process: the value)."""
    return tf.distributed.allreduce(value, average=False) if DISTRIBUTED else value


with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for epoch in range(EPOCHS):
        sess.run(iterator.initializer, feed_dict={x_source: train_x, y_source: train_y})
        batches, loss_sum = 0, 0.0
        while True:
            try:
                _, value = sess.run([train_op, loss])
            except tf.errors.OutOfRangeError:
                break
            batches += 1
            loss_sum += value
        sess.run(iterator.initializer, feed_dict={x_source: valid_x, y_source: valid_y})
        seen, right, summed = 0, 0.0, 0.0
        while True:
            try:
                n, r, v = sess.run([batch_size, correct, loss])
            except tf.errors.OutOfRangeError:
                break
            seen, right, summed = seen + n, right + r, summed + v * n
        seen, right, summed = total(seen), total(right), total(summed)
        if not DISTRIBUTED or tf.distributed.rank() == 0:
            print("epoch %d batches %d valid loss %.6f accuracy %.4f examples %d"
                  % (epoch, batches, summed / seen, right / seen, seen))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], w=sess.run(w), b=sess.run(b))
