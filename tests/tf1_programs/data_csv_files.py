# CSV shards read with tf.data, the TF 1.8+ idiom of Estimator-era input
# functions: Dataset.list_files over the shards, interleave of
# TextLineDataset(file).skip(1) (each file has a header), a map that parses
# each line with decode_csv into a dict of features and a label, batch and
# repeat; a linear model on the dict's columns.  Data parallel by files: each
# worker reads its own shards (list_files(...).shard(size, rank)) and half
# the batch -- with lines taken from the shards in turn, the workers' halves
# make the batch one process reads.  The shards are written first, in a
# temporary directory.
import os
import shutil
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
SHARDS, BATCH = 2, 8
COLUMNS = ["sepal", "petal", "stem", "score"]

folder = tempfile.mkdtemp(prefix="csv_shards_")
rs = np.random.RandomState(4)
for shard in range(SHARDS):
    with open(os.path.join(folder, "part-%05d.csv" % shard), "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for _ in range(40):
            a, b, c = rs.uniform(0, 3, size=3)
            f.write("%.3f,%.3f,%.3f,%.4f\n" % (a, b, c, 1.5 * a - 0.5 * b + 0.25 * c + rs.normal(0, 0.1)))


def parse(line):
    fields = tf.decode_csv(line, record_defaults=[[0.0], [0.0], [0.0], [0.0]])
    features = dict(zip(COLUMNS[:3], fields[:3]))
    return features, fields[3]


files = tf.data.Dataset.list_files(os.path.join(folder, "part-*.csv"), shuffle=False)
workers = tf.distributed.size() if DISTRIBUTED else 1
if DISTRIBUTED:
    files = files.shard(workers, tf.distributed.rank())
lines = files.interleave(lambda name: tf.data.TextLineDataset(name).skip(1), cycle_length=SHARDS)
dataset = lines.map(parse).batch(BATCH // workers).repeat()
features, target = dataset.make_one_shot_iterator().get_next()

inputs = tf.stack([features[name] for name in COLUMNS[:3]], axis=1)
coefficients = tf.get_variable("coefficients", shape=[3, 1], initializer=tf.zeros_initializer())
intercept = tf.get_variable("intercept", shape=[], initializer=tf.zeros_initializer())
estimate = tf.squeeze(tf.matmul(inputs, coefficients), axis=1) + intercept
loss = tf.losses.mean_squared_error(labels=target, predictions=estimate)
optimizer = tf.train.GradientDescentOptimizer(0.05)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss, global_step=tf.train.get_or_create_global_step())

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        _, value = sess.run([train_op, loss])
        if DISTRIBUTED:
            value = tf.distributed.allreduce(value)
        if step % 10 == 0 and (not DISTRIBUTED or tf.distributed.rank() == 0):
            print("step %d loss %.6f" % (step, value))
    found_w, found_b = sess.run([coefficients, intercept])
    if not DISTRIBUTED or tf.distributed.rank() == 0:
        print("coefficients", " ".join("%.6f" % v for v in found_w.ravel()), "intercept %.6f" % found_b)
        if os.environ.get("OUT"):
            np.savez(os.environ["OUT"], coefficients=found_w, intercept=found_b)
shutil.rmtree(folder)
