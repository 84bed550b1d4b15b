# One script, two jobs, as TF1 course projects split training from
# evaluation: `--mode=train` builds the network in its own tf.Graph under
# name scopes, decays a momentum optimizer's learning rate with the global
# step, keeps moving averages of the weights (updated with each step through
# control_dependencies) and writes checkpoints with a Saver that keeps the
# last two; `--mode=eval`, in a new process, finds the newest checkpoint
# with get_checkpoint_state, loads the *averaged* weights into the plain
# variables through ema.variables_to_restore(), and scores the test images
# with in_top_k.  Flags through tf.app.flags; data from input_data.
import os

import distnet.compat.v1 as tf
from distnet.compat.v1 import input_data

tf.app.flags.DEFINE_string("mode", "train", "train or eval")
tf.app.flags.DEFINE_string("ckpt_dir", "/tmp/tf1_train_eval", "checkpoint directory")
tf.app.flags.DEFINE_integer("steps", 200, "training steps")
tf.app.flags.DEFINE_float("average_decay", 0.99, "decay of the weights' moving averages")
FLAGS = tf.app.flags.FLAGS
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
HIDDEN, BATCH, WEIGHT_DECAY = 64, 64, 1e-4


def network(images):
    """784 -> HIDDEN (ReLU) -> 10 logits; the variables are w1, b1, w2, b2."""
    with tf.name_scope("hidden"):
        w1 = tf.get_variable("w1", [784, HIDDEN], initializer=tf.truncated_normal_initializer(stddev=0.1))
        b1 = tf.get_variable("b1", [HIDDEN], initializer=tf.constant_initializer(0.1))
        activation = tf.nn.relu(tf.matmul(images, w1) + b1)
    with tf.name_scope("logits"):
        w2 = tf.get_variable("w2", [HIDDEN, 10], initializer=tf.truncated_normal_initializer(stddev=0.1))
        b2 = tf.get_variable("b2", [10], initializer=tf.zeros_initializer())
        return tf.matmul(activation, w2) + b2


def inputs():
    return (tf.placeholder(tf.float32, [None, 784], name="images"),
            tf.placeholder(tf.int64, [None], name="labels"))


def train(data):
    with tf.Graph().as_default():
        tf.set_random_seed(5)
        images, labels = inputs()
        logits = network(images)
        step = tf.train.get_or_create_global_step()
        weight_terms = [tf.nn.l2_loss(v) for v in tf.trainable_variables() if v.op.name.startswith("w")]
        data_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        total_loss = data_loss + WEIGHT_DECAY * tf.add_n(weight_terms)
        rate = tf.train.exponential_decay(0.1, step, decay_steps=100, decay_rate=0.9, staircase=True)
        optimizer = tf.train.MomentumOptimizer(rate, momentum=0.9)
        if DISTRIBUTED:
            optimizer = tf.DistributedOptimizer(optimizer)
        update = optimizer.minimize(total_loss, global_step=step)
        averages = tf.train.ExponentialMovingAverage(FLAGS.average_decay, step)
        average_op = averages.apply(tf.trainable_variables())
        with tf.control_dependencies([update, average_op]):
            train_op = tf.no_op(name="train")
        saver = tf.train.Saver(max_to_keep=2)
        tf.gfile.MakeDirs(FLAGS.ckpt_dir)
        leader = not DISTRIBUTED or tf.distributed.rank() == 0
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for i in range(FLAGS.steps):
                xs, ys = data.train.next_batch(BATCH)
                if DISTRIBUTED:
                    xs, ys = tf.distributed.shard(xs, ys)
                _, value, done = sess.run([train_op, total_loss, step], feed_dict={images: xs, labels: ys})
                if i % 100 == 0 or i == FLAGS.steps - 1:
                    if DISTRIBUTED:
                        value = tf.distributed.allreduce(value, weight=len(xs))
                    if leader:
                        print("trained steps %d batch loss %g" % (done, value))
                    saver.save(sess, os.path.join(FLAGS.ckpt_dir, "model.ckpt"), global_step=step)


def evaluate(data):
    with tf.Graph().as_default():
        images, labels = inputs()
        logits = network(images)
        top1 = tf.reduce_mean(tf.cast(tf.nn.in_top_k(logits, labels, 1), tf.float32))
        averages = tf.train.ExponentialMovingAverage(FLAGS.average_decay)
        restore_map = averages.variables_to_restore()
        loader = tf.train.Saver(restore_map)
        state = tf.train.get_checkpoint_state(FLAGS.ckpt_dir)
        if not (state and state.model_checkpoint_path):
            print("no checkpoint in %s" % FLAGS.ckpt_dir)
            return
        with tf.Session() as sess:
            loader.restore(sess, state.model_checkpoint_path)
            trained = state.model_checkpoint_path.rsplit("-", 1)[-1]
            score = sess.run(top1, feed_dict={images: data.test.images, labels: data.test.labels})
            print("checkpoint of step %s test accuracy %g" % (trained, score))
            print("averages loaded", sorted(restore_map))


def main(_):
    data = input_data.read_data_sets("MNIST_data", one_hot=False)
    if FLAGS.mode == "train":
        train(data)
    else:
        evaluate(data)


if __name__ == "__main__":
    tf.app.run()
