# TensorBoard summaries as TF 1.x tutorials wrote them, on a small
# autoencoder of 4x4 images: scalars (the loss, the learning rate), a
# histogram of the weights, the input and reconstructed images, and the run's
# settings as text, merged with merge_all() and written by a FileWriter every
# few steps.  With DISTRIBUTED=1 every rank runs the summaries and rank 0
# writes; the loss written is the global batch's.
import json
import os
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
LOGDIR = os.environ.get("LOGDIR") or tempfile.mkdtemp(prefix="summaries_")
settings = {"learning_rate": 0.5, "hidden": 6, "batch": 24}

rs = np.random.RandomState(21)
basis = rs.rand(3, 16).astype(np.float32)
images = np.clip(rs.rand(240, 3).astype(np.float32) @ basis / 1.5, 0.0, 1.0)

x = tf.placeholder(tf.float32, [None, 16], name="images")
with tf.name_scope("encoder"):
    w_enc = tf.Variable((np.random.RandomState(1).randn(16, settings["hidden"]) * 0.2).astype(np.float32),
                        name="weights")
    code = tf.nn.sigmoid(tf.matmul(x, w_enc))
with tf.name_scope("decoder"):
    w_dec = tf.Variable((np.random.RandomState(2).randn(settings["hidden"], 16) * 0.2).astype(np.float32),
                        name="weights")
    reconstruction = tf.nn.sigmoid(tf.matmul(code, w_dec))
loss = tf.reduce_mean(tf.square(reconstruction - x))

global_step = tf.train.get_or_create_global_step()
learning_rate = tf.train.exponential_decay(settings["learning_rate"], global_step, 10, 0.8, staircase=True)
opt = tf.train.GradientDescentOptimizer(learning_rate)
if DISTRIBUTED:
    opt = tf.DistributedOptimizer(opt)
train_op = opt.minimize(loss, global_step=global_step)

with tf.name_scope("summaries"):
    tf.summary.scalar("loss", loss)
    tf.summary.scalar("learning_rate", learning_rate)
tf.summary.histogram("encoder/weights", w_enc)
tf.summary.image("input", tf.reshape(x, [-1, 4, 4, 1]), max_outputs=2)
tf.summary.image("reconstruction", tf.reshape(reconstruction, [-1, 4, 4, 1]), max_outputs=2)
config_text = tf.summary.text("settings", tf.constant(json.dumps(settings, sort_keys=True)))
merged = tf.summary.merge_all()
rank = tf.distributed.rank() if DISTRIBUTED else 0

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    writer = tf.summary.FileWriter(LOGDIR, sess.graph)
    for step in range(STEPS):
        start = (step * settings["batch"]) % len(images)
        batch = images[start:start + settings["batch"]]
        if DISTRIBUTED:
            batch = tf.distributed.shard(batch)
        if step % 5 == 0:
            summary, _, value = sess.run([merged, train_op, loss], feed_dict={x: batch})
            writer.add_summary(summary, step)
            if rank == 0:
                print("step %d loss %.6f" % (step, value))
        else:
            sess.run(train_op, feed_dict={x: batch})
    writer.close()
    final = sess.run([w_enc, w_dec])
    if rank == 0:
        print("final decoder", " ".join("%.6f" % v for v in final[1].ravel()[:6]))
    if os.environ.get("OUT") and rank == 0:
        np.savez(os.environ["OUT"], w_enc=final[0], w_dec=final[1])
