# TF 1.x era: tf.contrib.layers.batch_norm between fully connected layers, with an
# `is_training` placeholder switching batch and moving statistics and
# updates_collections=None, so the moving averages are updated in place by every
# training forward pass (no UPDATE_OPS dependency needed), as many 2016-2017 posts
# recommended.
import os

import numpy as np
import tensorflow as tf

STEPS = int(os.environ.get("STEPS", 25))

rng = np.random.RandomState(11)
centers = rng.randn(3, 20).astype(np.float32) * 1.5
labels = rng.randint(0, 3, size=300)
features = (centers[labels] + rng.randn(300, 20).astype(np.float32) * 2.0 + 4.0).astype(np.float32)

init = np.random.RandomState(1)
x = tf.placeholder(tf.float32, [None, 20])
y = tf.placeholder(tf.int64, [None])
is_training = tf.placeholder(tf.bool, [])


def dense_bn_relu(inputs, units, scope):
    with tf.variable_scope(scope):
        w = tf.get_variable("weights", initializer=(init.randn(int(inputs.shape[1]), units) * 0.2).astype(np.float32))
        h = tf.matmul(inputs, w)
        h = tf.contrib.layers.batch_norm(h, decay=0.9, center=True, scale=True, is_training=is_training,
                                         updates_collections=None, scope="bn")
        return tf.nn.relu(h)


h1 = dense_bn_relu(x, 16, "layer1")
h2 = dense_bn_relu(h1, 16, "layer2")
w_out = tf.Variable((init.randn(16, 3) * 0.2).astype(np.float32), name="w_out")
logits = tf.matmul(h2, w_out)
loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
correct = tf.equal(tf.argmax(logits, 1), y)
accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

opt = tf.train.AdamOptimizer(0.01)
if os.environ.get("DISTRIBUTED") == "1":
    opt = tf.DistributedOptimizer(opt)
train_step = opt.minimize(loss)

sess = tf.Session()
sess.run(tf.global_variables_initializer())
for i in range(STEPS):
    lo = (i * 50) % 300
    bx, by = features[lo:lo + 50], labels[lo:lo + 50]
    if os.environ.get("DISTRIBUTED") == "1":
        bx, by = tf.distributed.shard(bx, by)
    _, l = sess.run([train_step, loss], feed_dict={x: bx, y: by, is_training: True})
    if i % 5 == 0 or i == STEPS - 1:
        print("step %d loss %.5f" % (i, l))
l, a = sess.run([loss, accuracy], feed_dict={x: features, y: labels, is_training: False})
print("test loss %.5f accuracy %.4f" % (l, a))
names = [v.op.name for v in tf.global_variables()]
values = sess.run(tf.global_variables())
for n, v in zip(names, values):
    if n.endswith("moving_mean") or n.endswith("moving_variance"):
        print("%s %s" % (n.split("/")[-1].replace("_", " "), " ".join("%.4f" % t for t in v[:6])))
if os.environ.get("OUT") and (os.environ.get("DISTRIBUTED") != "1" or tf.distributed.rank() == 0):
    np.savez(os.environ["OUT"], **{n.replace("/", "__"): v for n, v in zip(names, values)})
