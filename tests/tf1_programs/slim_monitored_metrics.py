# TF-Slim era training: `slim = tf.contrib.slim`, a VGG-like stack built with
# slim.arg_scope and slim.repeat, trained in a MonitoredTrainingSession with
# NanTensorHook, a FinalOpsHook reading the final weights, summaries saved
# every few steps, and a running training accuracy from tf.metrics.accuracy
# whose update op rides along with each step (the session initializes its
# local variables).
import os
import tempfile

import numpy as np
import tensorflow as tf

slim = tf.contrib.slim
STEPS = int(os.environ.get("STEPS", 12))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
LOGDIR = os.environ.get("LOGDIR") or tempfile.mkdtemp(prefix="slim_")


def numpy_init(shape, dtype=None, partition_info=None):
    rs = np.random.RandomState(int(np.prod(shape)) % 1000)
    return tf.constant((rs.randn(*shape) * np.sqrt(2.0 / np.prod(shape[:-1]))).astype(np.float32))


rs = np.random.RandomState(5)
labels_all = rs.randint(0, 2, size=128)
images_all = rs.rand(128, 6, 6, 2).astype(np.float32)
images_all[labels_all == 1, :3, :, 0] += 0.7          # class 1: the top half of channel 0 is brighter

images = tf.placeholder(tf.float32, [None, 6, 6, 2])
labels = tf.placeholder(tf.int64, [None])
with slim.arg_scope([slim.conv2d, slim.fully_connected], weights_initializer=numpy_init,
                    weights_regularizer=slim.l2_regularizer(0.0005)):
    net = slim.repeat(images, 2, slim.conv2d, 4, [3, 3], scope="conv1")
    net = slim.max_pool2d(net, [2, 2], scope="pool1")
    net = slim.flatten(net)
    net = slim.fully_connected(net, 8, scope="fc2")
    logits = slim.fully_connected(net, 2, activation_fn=None, scope="fc3")

loss = tf.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
total_loss = tf.losses.get_total_loss()
tf.summary.scalar("total_loss", total_loss)
accuracy, accuracy_update = tf.metrics.accuracy(labels, tf.argmax(logits, 1))
global_step = tf.train.get_or_create_global_step()
opt = tf.train.AdamOptimizer(0.01)
if DISTRIBUTED:
    opt = tf.DistributedOptimizer(opt)
train_op = opt.minimize(total_loss, global_step=global_step)
rank = tf.distributed.rank() if DISTRIBUTED else 0

final_weights = tf.train.FinalOpsHook(tf.trainable_variables())
hooks = [tf.train.StopAtStepHook(last_step=STEPS), tf.train.NanTensorHook(total_loss), final_weights]
with tf.train.MonitoredTrainingSession(checkpoint_dir=LOGDIR if rank == 0 else None, is_chief=rank == 0,
                                       hooks=hooks, save_summaries_steps=4, save_checkpoint_secs=None,
                                       log_step_count_steps=None) as sess:
    i = 0
    while not sess.should_stop():
        start = (i * 32) % 128
        xs, ys = images_all[start:start + 32], labels_all[start:start + 32]
        if DISTRIBUTED:
            xs, ys = tf.distributed.shard(xs, ys)
        _, step, running = sess.run([train_op, global_step, accuracy_update], feed_dict={images: xs, labels: ys})
        i += 1
        if rank == 0 and step % 4 == 0:
            print("step %d running accuracy %.6f" % (step, running))

names = [v.op.name for v in tf.trainable_variables()]
if rank == 0:
    print("variables", " ".join(names))
    print("fc3 weights", " ".join("%.6f" % v for v in final_weights.final_ops_values[names.index("fc3/weights")].ravel()[:6]))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{n.replace("/", "_"): v for n, v in zip(names, final_weights.final_ops_values)})
