# The train/eval pair of TF 1.x tutorials (cifar10_train.py / cifar10_eval.py's
# pattern) in one file: the training graph keeps an exponential moving average
# of the weights and saves checkpoints with tf.train.Saver; a second, fresh
# graph restores the averaged weights through ema.variables_to_restore() and
# evaluates them with tf.metrics.accuracy over the test batches.
import os
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
MOVING_AVERAGE_DECAY = 0.9

data = np.random.RandomState(3)
centers = data.randn(4, 6).astype(np.float32) * 0.6
train_y = data.randint(0, 4, size=400)
train_x = (centers[train_y] + data.randn(400, 6)).astype(np.float32)
test_y = data.randint(0, 4, size=200)
test_x = (centers[test_y] + data.randn(200, 6)).astype(np.float32)


def inference(images):
    with tf.variable_scope("softmax_linear"):
        weights = tf.get_variable("weights", initializer=(np.random.RandomState(5).randn(6, 4) * 0.1)
                                  .astype(np.float32))
        biases = tf.get_variable("biases", [4], initializer=tf.constant_initializer(0.0))
        return tf.add(tf.matmul(images, weights), biases, name="logits")


train_dir = os.environ.get("TRAIN_DIR") or tempfile.mkdtemp(prefix="ema_train_")   # shared by the ranks
rank = 0

# ---- training (the _train.py half) ----
with tf.Graph().as_default():
    global_step = tf.train.get_or_create_global_step()
    images = tf.placeholder(tf.float32, [None, 6])
    labels = tf.placeholder(tf.int64, [None])
    logits = inference(images)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    opt = tf.train.GradientDescentOptimizer(0.2)
    if DISTRIBUTED:
        opt = tf.DistributedOptimizer(opt)
        rank = tf.distributed.rank()
    apply_gradient_op = opt.minimize(loss, global_step=global_step)
    variable_averages = tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY, global_step)
    with tf.control_dependencies([apply_gradient_op]):
        train_op = variable_averages.apply(tf.trainable_variables())
    saver = tf.train.Saver(tf.global_variables())
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for step in range(STEPS):
            start = (step * 40) % 400
            xs, ys = train_x[start:start + 40], train_y[start:start + 40]
            if DISTRIBUTED:
                xs, ys = tf.distributed.shard(xs, ys)
            _, loss_value = sess.run([train_op, loss], feed_dict={images: xs, labels: ys})
            if step % 10 == 0 and rank == 0:
                print("train step %d loss %.6f" % (step, loss_value))
        checkpoint_path = saver.save(sess, os.path.join(train_dir, "model.ckpt"), global_step=global_step)
        raw = sess.run(tf.trainable_variables())

# ---- evaluation (the _eval.py half): a new graph, the averaged weights ----
with tf.Graph().as_default() as g:
    images = tf.placeholder(tf.float32, [None, 6])
    labels = tf.placeholder(tf.int64, [None])
    logits = inference(images)
    predictions = tf.argmax(logits, 1)
    accuracy, update_accuracy = tf.metrics.accuracy(labels, predictions)
    variable_averages = tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY)
    saver = tf.train.Saver(variable_averages.variables_to_restore())
    if DISTRIBUTED:
        tf.distributed.rank()   # (the eval graph's ranks share the test set: each evaluates its part)
    with tf.Session() as sess:
        ckpt = tf.train.get_checkpoint_state(train_dir)
        saver.restore(sess, ckpt.model_checkpoint_path)
        step = int(ckpt.model_checkpoint_path.split("/")[-1].split("-")[-1])
        sess.run(tf.local_variables_initializer())
        for start in range(0, 200, 50):
            xs, ys = test_x[start:start + 50], test_y[start:start + 50]
            if DISTRIBUTED:
                xs, ys = tf.distributed.shard(xs, ys)
            running = sess.run(update_accuracy, feed_dict={images: xs, labels: ys})
            if rank == 0:
                print("eval batch %d running accuracy %.6f" % (start // 50, running))
        averaged = sess.run(tf.trainable_variables())
        if rank == 0:
            print("global step %d precision %.6f" % (step, sess.run(accuracy)))
            print("averaged weights", " ".join("%.6f" % v for v in averaged[0].ravel()[:6]))
            print("raw weights", " ".join("%.6f" % v for v in raw[0].ravel()[:6]))
        if os.environ.get("OUT") and rank == 0:
            np.savez(os.environ["OUT"], weights=raw[0], biases=raw[1], ema_weights=averaged[0],
                     ema_biases=averaged[1])
