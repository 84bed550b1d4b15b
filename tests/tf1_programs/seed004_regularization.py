# Seed 004 (../shared/seeds/004): the two ways to add L2 -- a regularizer given to
# get_variable / tf.layers.conv2d, collected in REGULARIZATION_LOSSES and summed
# by tf.losses.get_regularization_loss() or tf.add_n(tf.get_collection(...)) --
# and seed 003's way (a), weight_decay * sum of l2_loss over the trainable
# variables.  Both collected sums are the same number (the seed's point), and
# training adds it to the base loss.  Changed: the import line; the data are
# random images of a fixed seed.  DISTRIBUTED=1 adds the wrapper line.
import os
import numpy as np
import distnet.compat.v1 as tf

DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints, as Horovod programs do)
tf.set_random_seed(4)
inputs = tf.placeholder(tf.float32, [None, 8, 8, 3])
labels = tf.placeholder(tf.int64, [None])

with tf.variable_scope('block'):
    input_c = 3
    dwise_weight = tf.get_variable(name='depthwise_weights', dtype=tf.float32, trainable=True,
                                   shape=(3, 3, input_c, 4),
                                   initializer=tf.random_normal_initializer(stddev=0.01),
                                   regularizer=tf.contrib.layers.l2_regularizer(0.0005))
    x = tf.nn.relu(tf.nn.conv2d(inputs, dwise_weight, strides=[1, 1, 1, 1], padding='SAME'))
conv = tf.layers.conv2d(
    inputs=x, filters=6,
    kernel_size=3, strides=[1, 1], kernel_initializer=tf.glorot_uniform_initializer(),
    padding='SAME', kernel_regularizer=tf.contrib.layers.l2_regularizer(scale=5e-4), use_bias=True, name='conv')
pooled = tf.layers.max_pooling2d(conv, 2, 2)
logits = tf.layers.dense(tf.layers.flatten(pooled), 5, kernel_regularizer=tf.contrib.layers.l2_regularizer(5e-4))

base_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
l2_loss_1 = tf.losses.get_regularization_loss()
reg_losses = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
l2_loss_2 = tf.add_n(reg_losses)
loss = tf.add_n([base_loss] + reg_losses, name="loss")

weight_decay = 0.001
l2_loss_a = weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in tf.trainable_variables()])
loss_a = base_loss + l2_loss_a

opt = tf.train.MomentumOptimizer(0.1, 0.9)
if DISTRIBUTED:
    opt = tf.DistributedOptimizer(opt)
train = opt.minimize(loss)

rng = np.random.RandomState(0)
X = rng.rand(64, 8, 8, 3).astype(np.float32)
Y = rng.randint(0, 5, size=64)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    print('regularization terms', len(reg_losses), [t.name for t in tf.trainable_variables()])
    for step in range(int(os.environ.get("STEPS", 30))):
        xb, yb = X[(step * 16) % 64:(step * 16) % 64 + 16], Y[(step * 16) % 64:(step * 16) % 64 + 16]
        if DISTRIBUTED:
            xb, yb = tf.distributed.shard(xb, yb)
        _, l, r1, r2 = sess.run([train, loss, l2_loss_1, l2_loss_2], {inputs: xb, labels: yb})
        if step % 10 == 0:
            print('step', step, 'loss', l, 'get_regularization_loss', repr(float(r1)), 'add_n', repr(float(r2)))
    print('reg sum numpy', repr(float(sum(sess.run(reg_losses)))))
    print('way a', repr(float(sess.run(l2_loss_a))), 'numpy',
          repr(float(weight_decay * sum(float((sess.run(v).astype(np.float64) ** 2).sum()) / 2
                                          for v in tf.trainable_variables()))))
    print('final loss', repr(float(sess.run(loss, {inputs: X, labels: Y}))))
    if os.environ.get("OUT") and (not DISTRIBUTED or tf.distributed.rank() == 0):
        np.savez(os.environ["OUT"], **{v.op.name.replace('/', '.'): sess.run(v) for v in tf.trainable_variables()})
