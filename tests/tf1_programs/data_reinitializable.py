# One iterator for two datasets, the "reinitializable iterator" of TF 1.4's
# input-pipeline guide: Iterator.from_structure built from the training set's
# types and shapes, one make_initializer per dataset, and a loop that switches
# between training and validation every epoch by running the matching
# initializer.  Features and labels come from two datasets zipped together;
# a map after batch standardizes the features with the training set's
# column means and deviations.  The loop
# keeps the weights of the best validation loss (a hand-written early stop).
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

EPOCHS = int(os.environ.get("EPOCHS", 5))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
BATCH = 16
workers = tf.distributed.size() if DISTRIBUTED else 1

rs = np.random.RandomState(13)
signal = rs.randn(5).astype(np.float32)
x_all = (rs.randn(224, 5) * [1.0, 3.0, 0.5, 2.0, 1.0] + [0.0, 5.0, -1.0, 2.0, 0.0]).astype(np.float32)
y_all = (x_all @ signal + rs.randn(224).astype(np.float32) > 1.0).astype(np.float32)


center = tf.constant(x_all[:160].mean(axis=0))
spread = tf.constant(x_all[:160].std(axis=0))


def pipeline(x, y, batch):
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(x), tf.data.Dataset.from_tensor_slices(y)))
    if DISTRIBUTED:
        ds = ds.shard(workers, tf.distributed.rank())
    ds = ds.batch(batch // workers)
    return ds.map(lambda f, t: ((f - center) / spread, t))


train_set = pipeline(x_all[:160], y_all[:160], BATCH)
valid_set = pipeline(x_all[160:], y_all[160:], 32)
iterator = tf.data.Iterator.from_structure(train_set.output_types, train_set.output_shapes)
features, target = iterator.get_next()
use_train = iterator.make_initializer(train_set)
use_valid = iterator.make_initializer(valid_set)

w = tf.Variable(np.full((5, 1), 0.01, np.float32), name="w")
b = tf.Variable(0.0, name="b")
logit = tf.squeeze(tf.matmul(features, w), axis=1) + b
loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logit))
rows = tf.cast(tf.shape(target)[0], tf.float32)
optimizer = tf.train.RMSPropOptimizer(0.01)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    best, best_weights = None, None
    for epoch in range(EPOCHS):
        sess.run(use_train)
        while True:
            try:
                sess.run(train_op)
            except tf.errors.OutOfRangeError:
                break
        sess.run(use_valid)
        total, count = 0.0, 0.0
        while True:
            try:
                value, n = sess.run([loss, rows])
            except tf.errors.OutOfRangeError:
                break
            total, count = total + value * n, count + n
        if DISTRIBUTED:
            total, count = tf.distributed.allreduce([total, count], average=False)
        valid_loss = total / count
        if best is None or valid_loss < best:
            best, best_weights = valid_loss, sess.run([w, b])
        if not DISTRIBUTED or tf.distributed.rank() == 0:
            print("epoch %d validation loss %.6f best %.6f" % (epoch, valid_loss, best))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], w=best_weights[0], b=best_weights[1])
