# A train-then-evaluate pair as TF1 courses wrote it: tf.app.run with flags, a
# graph built in tf.Graph().as_default() under name scopes, a global step, a
# decayed learning rate, a moving average run with the step under
# control_dependencies, tf.train.Saver checkpoints (max_to_keep), and an
# evaluation in a *new process* that restores the averaged weights through
# ema.variables_to_restore() from tf.train.get_checkpoint_state, scoring with
# tf.nn.in_top_k.  Changed: the import line and the data loading.
import os

import distnet.compat.v1 as tf
import _data as input_data

flags = tf.app.flags
flags.DEFINE_string('mode', 'train', 'train or eval')
flags.DEFINE_string('ckpt_dir', '/tmp/tf1_ckpt', 'where the checkpoints go')
flags.DEFINE_integer('steps', 200, 'training steps')
flags.DEFINE_float('decay', 0.99, 'moving average decay')
FLAGS = flags.FLAGS
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints, as Horovod programs do)


def inference(x):
    with tf.name_scope('hidden'):
        w1 = tf.get_variable('w1', [784, 64], initializer=tf.truncated_normal_initializer(stddev=0.1))
        b1 = tf.get_variable('b1', [64], initializer=tf.constant_initializer(0.1))
        h = tf.nn.relu(tf.matmul(x, w1) + b1)
    with tf.name_scope('softmax_linear'):
        w2 = tf.get_variable('w2', [64, 10], initializer=tf.truncated_normal_initializer(stddev=0.1))
        b2 = tf.get_variable('b2', [10], initializer=tf.zeros_initializer())
        return tf.matmul(h, w2) + b2


def train():
    mnist = input_data.read_data_sets('MNIST_data', one_hot=False)
    with tf.Graph().as_default():
        tf.set_random_seed(5)
        x = tf.placeholder(tf.float32, [None, 784], name='x-input')
        y_ = tf.placeholder(tf.int64, [None], name='y-input')
        logits = inference(x)
        global_step = tf.train.get_or_create_global_step()
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_, logits=logits)) \
            + 1e-4 * tf.add_n([tf.nn.l2_loss(v) for v in tf.trainable_variables() if 'w' in v.op.name])
        lr = tf.train.exponential_decay(0.2, global_step, 100, 0.9, staircase=True)
        opt = tf.train.MomentumOptimizer(lr, 0.9)
        if DISTRIBUTED:
            opt = tf.DistributedOptimizer(opt)
        train_step = opt.minimize(loss, global_step=global_step)
        ema = tf.train.ExponentialMovingAverage(FLAGS.decay, global_step)
        ema_op = ema.apply(tf.trainable_variables())
        with tf.control_dependencies([train_step, ema_op]):
            train_op = tf.no_op(name='train')
        saver = tf.train.Saver(max_to_keep=2)
        if not tf.gfile.Exists(FLAGS.ckpt_dir):
            tf.gfile.MakeDirs(FLAGS.ckpt_dir)
        with tf.Session() as sess:
            tf.global_variables_initializer().run()
            for i in range(FLAGS.steps):
                xs, ys = mnist.train.next_batch(64)
                if DISTRIBUTED:
                    xs, ys = tf.distributed.shard(xs, ys)
                _, loss_value, step = sess.run([train_op, loss, global_step], feed_dict={x: xs, y_: ys})
                if i % 100 == 0 or i == FLAGS.steps - 1:
                    if DISTRIBUTED:
                        loss_value = tf.distributed.allreduce(loss_value, weight=len(xs))
                    print("After %d training step(s), loss on training batch is %g." % (step, loss_value))
                    saver.save(sess, os.path.join(FLAGS.ckpt_dir, 'model.ckpt'), global_step=global_step)


def evaluate():
    mnist = input_data.read_data_sets('MNIST_data', one_hot=False)
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 784], name='x-input')
        y_ = tf.placeholder(tf.int64, [None], name='y-input')
        logits = inference(x)
        top1 = tf.reduce_mean(tf.to_float(tf.nn.in_top_k(logits, y_, 1)))
        ema = tf.train.ExponentialMovingAverage(FLAGS.decay)
        saver = tf.train.Saver(ema.variables_to_restore())
        with tf.Session() as sess:
            ckpt = tf.train.get_checkpoint_state(FLAGS.ckpt_dir)
            if ckpt and ckpt.model_checkpoint_path:
                saver.restore(sess, ckpt.model_checkpoint_path)
                global_step = ckpt.model_checkpoint_path.split('/')[-1].split('-')[-1]
                acc = sess.run(top1, feed_dict={x: mnist.test.images, y_: mnist.test.labels})
                print("After %s training step(s), validation accuracy = %g" % (global_step, acc))
                print("restored", sorted(ema.variables_to_restore()))
            else:
                print('No checkpoint file found')


def main(argv=None):
    if FLAGS.mode == 'train':
        train()
    else:
        evaluate()


if __name__ == '__main__':
    tf.app.run()
