# A small TF1 classifier trained with DistributedOptimizer(deterministic=True): two dense
# layers with dropout between them, an L2 term on the weights (a weights-only term of the
# loss), Adam.  Each step's global batch of 24 random rows is shuffled from one seed,
# every rank feeds its part (tf.distributed.shard deals whole pieces of 6 rows), the
# global loss of each step is printed by rank 0, and the final variables are written to
# the .npz named by OUT (with Adam's slots).  `distnet run -n 1` and `-n 2` (or 3) give the same bits.
import os

import numpy as np
import distnet.compat.v1 as tf

STEPS = int(os.environ.get("STEPS", "12"))
PIECE = int(os.environ.get("PIECE", "6"))
OUT = os.environ.get("OUT", "")
DETERMINISTIC = os.environ.get("DETERMINISTIC", "1") == "1"   # 0: the default mode, for comparison
EVEN_SPLIT = os.environ.get("EVEN_SPLIT") == "1"   # 1: feed equal row counts instead of shard's pieces (refused)

rng = np.random.default_rng(0)
features = rng.standard_normal((240, 20)).astype(np.float32)
labels = (features[:, :3].sum(1) > 0).astype(np.int64) + (features[:, 3] > 1).astype(np.int64)

tf.set_random_seed(3)
x = tf.placeholder(tf.float32, [None, 20], name="x")
y = tf.placeholder(tf.int64, [None], name="y")
w1 = tf.Variable(tf.random_normal([20, 32], stddev=0.3, seed=1), name="w1")
b1 = tf.Variable(tf.zeros([32]), name="b1")
w2 = tf.Variable(tf.random_normal([32, 3], stddev=0.3, seed=2), name="w2")
b2 = tf.Variable(tf.zeros([3]), name="b2")
hidden = tf.nn.dropout(tf.nn.relu(tf.matmul(x, w1) + b1), keep_prob=0.8, seed=4)
logits = tf.matmul(hidden, w2) + b2
data_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
loss = data_loss + 1e-3 * (tf.nn.l2_loss(w1) + tf.nn.l2_loss(w2))
if DETERMINISTIC:
    opt = tf.DistributedOptimizer(tf.train.AdamOptimizer(1e-2), deterministic=True, piece_size=PIECE)
    train = opt.minimize(loss)
    global_loss = opt.global_loss()
else:
    opt = tf.DistributedOptimizer(tf.train.AdamOptimizer(1e-2))
    train = opt.minimize(loss)
    global_loss = loss   # rank 0's own loss: the default mode is compared by its final arrays

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    order = np.random.default_rng(1).permutation(240)
    for step in range(STEPS):
        rows = order[(step * 24) % 240: (step * 24) % 240 + 24]
        if EVEN_SPLIT:
            part = np.array_split(rows, tf.distributed.size())[tf.distributed.rank()]
            xs, ys = features[part], labels[part]
        else:
            xs, ys = tf.distributed.shard(features[rows], labels[rows])
        _, value = sess.run([train, global_loss], feed_dict={x: xs, y: ys})
        if tf.distributed.rank() == 0:
            print(f"STEP {step} LOSS {np.float32(value).view(np.uint32):08x} {value:.6f}", flush=True)
    final = {v.op.name: sess.run(v) for v in tf.global_variables()}
    final.update({f"{v.op.name}/{s}": sess.run(opt.get_slot(v, s)) for v in (w1, b1, w2, b2)
                  for s in opt.get_slot_names()})
    if tf.distributed.rank() == 0 and OUT:
        np.savez(OUT, **final)
