# A MonitoredTrainingSession loop as TF 1.x training scripts (and Horovod's
# examples) wrote it: a global step, StopAtStepHook to end training,
# LoggingTensorHook for the log, a hook of our own for the printed lines,
# checkpoints in a directory only the chief writes, and with DISTRIBUTED=1 the
# Horovod line plus BroadcastGlobalVariablesHook(0).
import os
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 20))
BATCH = 32
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
tf.logging.set_verbosity(tf.logging.INFO)

rng = np.random.RandomState(42)
features = rng.randn(512, 10).astype(np.float32)
true_w = rng.randn(10, 3).astype(np.float32)
labels = np.argmax(features @ true_w + 0.3 * rng.randn(512, 3), axis=1).astype(np.int64)

x = tf.placeholder(tf.float32, [None, 10], name="x")
y = tf.placeholder(tf.int64, [None], name="y")
with tf.variable_scope("mlp"):
    w1 = tf.get_variable("w1", initializer=(np.random.RandomState(1).randn(10, 16) * 0.3).astype(np.float32))
    b1 = tf.get_variable("b1", [16], initializer=tf.zeros_initializer())
    w2 = tf.get_variable("w2", initializer=(np.random.RandomState(2).randn(16, 3) * 0.3).astype(np.float32))
    b2 = tf.get_variable("b2", [3], initializer=tf.zeros_initializer())
hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
logits = tf.matmul(hidden, w2) + b2
loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))

global_step = tf.train.get_or_create_global_step()
opt = tf.train.MomentumOptimizer(0.1, momentum=0.9)
if DISTRIBUTED:
    opt = tf.DistributedOptimizer(opt)
train_op = opt.minimize(loss, global_step=global_step)

rank = tf.distributed.rank() if DISTRIBUTED else 0


class PrintHook(tf.train.SessionRunHook):
    """Prints the step and the loss every few steps (on the chief)."""

    def before_run(self, run_context):
        return tf.train.SessionRunArgs({"step": global_step, "loss": loss})

    def after_run(self, run_context, run_values):
        step, value = run_values.results["step"], run_values.results["loss"]
        if rank == 0 and (step % 5 == 0 or step == 1):
            print("step %d loss %.6f" % (step, value))


hooks = [tf.train.StopAtStepHook(last_step=STEPS),
         tf.train.LoggingTensorHook({"loss": loss, "step": global_step}, every_n_iter=10),
         PrintHook()]
if DISTRIBUTED:
    hooks.append(tf.distributed.BroadcastGlobalVariablesHook(0))
checkpoint_dir = tempfile.mkdtemp(prefix="mts_") if rank == 0 else None
config = tf.ConfigProto()
config.gpu_options.allow_growth = True
config.gpu_options.visible_device_list = str(rank)

final, i = None, 0
with tf.train.MonitoredTrainingSession(checkpoint_dir=checkpoint_dir, is_chief=(rank == 0), hooks=hooks,
                                       save_checkpoint_steps=10, save_summaries_steps=None,
                                       log_step_count_steps=None, config=config) as sess:
    while not sess.should_stop():
        # (a bare sess.run(global_step) here would run the hooks too, which need the feeds)
        start = (i * BATCH) % len(features)
        i += 1
        xs, ys = features[start:start + BATCH], labels[start:start + BATCH]
        if DISTRIBUTED:
            xs, ys = tf.distributed.shard(xs, ys)
        _, acc, final = sess.run([train_op, accuracy, [w1, b1, w2, b2]], feed_dict={x: xs, y: ys})

if rank == 0:
    print("checkpoint", int(tf.train.latest_checkpoint(checkpoint_dir).rsplit("-", 1)[1]))
    print("final weights", " ".join("%.6f" % v for v in final[2].ravel()[:6]))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], w1=final[0], b1=final[1], w2=final[2], b2=final[3])
