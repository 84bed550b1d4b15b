# A tf.data input pipeline the way TF 1.x programs fed a model once they left
# feed_dict behind: numpy arrays -> from_tensor_slices -> shuffle -> batch ->
# repeat, a one-shot iterator whose get_next() tensors *are* the model's
# input, and a loop that simply runs the training op.  Data parallel the
# Horovod way: each worker takes its shard of the shuffled stream
# (dataset.shard(size, rank)) and a part of the global batch.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 40))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
GLOBAL_BATCH = 32
workers, me = (tf.distributed.size(), tf.distributed.rank()) if DISTRIBUTED else (1, 0)

# Two noisy classes in 6 dimensions.
rs = np.random.RandomState(11)
points = rs.randn(256, 6).astype(np.float32)
classes = (points @ rs.randn(6) + 0.3 * rs.randn(256) > 0).astype(np.int64)

tf.set_random_seed(2)
dataset = tf.data.Dataset.from_tensor_slices((points, classes))
dataset = dataset.shuffle(buffer_size=256)
if DISTRIBUTED:
    dataset = dataset.shard(workers, me)
dataset = dataset.batch(GLOBAL_BATCH // workers).repeat()
features, labels = dataset.make_one_shot_iterator().get_next()

hidden = tf.layers.dense(features, 8, activation=tf.nn.tanh,
                         kernel_initializer=tf.constant_initializer(rs.randn(6, 8) * 0.4))
logits = tf.layers.dense(hidden, 2, kernel_initializer=tf.constant_initializer(rs.randn(8, 2) * 0.4))
loss = tf.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)

optimizer = tf.train.GradientDescentOptimizer(0.3)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)

# The whole set, to judge the model by (a second pipeline, one batch).
everything = tf.data.Dataset.from_tensor_slices((points, classes)).batch(256)
all_x, all_y = everything.make_one_shot_iterator().get_next()
with tf.variable_scope("", reuse=True):
    h_all = tf.nn.tanh(tf.matmul(all_x, tf.get_variable("dense/kernel")) + tf.get_variable("dense/bias"))
    out_all = tf.matmul(h_all, tf.get_variable("dense_1/kernel")) + tf.get_variable("dense_1/bias")
full_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=all_y, logits=out_all))
full_acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(out_all, 1), all_y), tf.float32))

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        sess.run(train_op)
    final_loss, final_acc = sess.run([full_loss, full_acc])
    if me == 0:
        print("final loss %.5f accuracy %.4f" % (final_loss, final_acc))
    if os.environ.get("OUT") and me == 0:
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
