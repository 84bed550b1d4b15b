# A streaming evaluation loop as TF 1.x evaluation scripts wrote it: a model
# trained briefly, then tf.metrics.* update ops run batch by batch over the
# test set (accuracy, a weighted mean of the loss, precision/recall/AUC of one
# class against the rest, mean per-class accuracy, mean IoU), the values read
# at the end, local variables reset, and a second pass over another split.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 25))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"

rs = np.random.RandomState(11)
proto = rs.randn(3, 8).astype(np.float32)
def make(n):
    y = rs.randint(0, 3, size=n)
    return (proto[y] + 1.2 * rs.randn(n, 8)).astype(np.float32), y.astype(np.int64)
train_x, train_y = make(300)
test_x, test_y = make(160)
valid_x, valid_y = make(90)

x = tf.placeholder(tf.float32, [None, 8])
y = tf.placeholder(tf.int64, [None])
w = tf.Variable((np.random.RandomState(4).randn(8, 3) * 0.1).astype(np.float32), name="w")
b = tf.Variable(np.zeros(3, np.float32), name="b")
logits = tf.matmul(x, w) + b
probs = tf.nn.softmax(logits)
per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
loss = tf.reduce_mean(per_example)
opt = tf.train.AdamOptimizer(0.05)
if DISTRIBUTED:
    opt = tf.DistributedOptimizer(opt)
train_op = opt.minimize(loss)

predictions = tf.argmax(logits, 1)
is_class0 = tf.equal(y, 0)
with tf.name_scope("eval"):
    metrics = {
        "accuracy": tf.metrics.accuracy(y, predictions),
        "loss": tf.metrics.mean(per_example),
        "weighted_loss": tf.metrics.mean(per_example, weights=tf.cast(y + 1, tf.float32)),
        "precision": tf.metrics.precision(is_class0, tf.equal(predictions, 0)),
        "recall": tf.metrics.recall(is_class0, tf.equal(predictions, 0)),
        "auc": tf.metrics.auc(is_class0, probs[:, 0]),
        "per_class": tf.metrics.mean_per_class_accuracy(y, predictions, 3),
        "iou": tf.metrics.mean_iou(y, predictions, 3),
    }
names = sorted(metrics)
values = [metrics[k][0] for k in names]
updates = [metrics[k][1] for k in names]
rank = tf.distributed.rank() if DISTRIBUTED else 0

with tf.Session() as sess:
    sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
    for step in range(STEPS):
        start = (step * 60) % 300
        xs, ys = train_x[start:start + 60], train_y[start:start + 60]
        if DISTRIBUTED:
            xs, ys = tf.distributed.shard(xs, ys)
        sess.run(train_op, {x: xs, y: ys})
    for split, (sx, sy) in (("test", (test_x, test_y)), ("valid", (valid_x, valid_y))):
        sess.run(tf.local_variables_initializer())        # a new streaming pass
        for start in range(0, len(sx), 40):
            xs, ys = sx[start:start + 40], sy[start:start + 40]
            if DISTRIBUTED:
                xs, ys = tf.distributed.shard(xs, ys)
            acc_now = sess.run(updates, {x: xs, y: ys})[names.index("accuracy")]
            if rank == 0:
                print("%s batch %d accuracy %.6f" % (split, start // 40, acc_now))
        final = sess.run(values)
        if rank == 0:
            for name, value in zip(names, final):
                print("%s %s %.6f" % (split, name.replace("_", " "), value))
    if os.environ.get("OUT") and rank == 0:
        np.savez(os.environ["OUT"], w=sess.run(w), b=sess.run(b))
