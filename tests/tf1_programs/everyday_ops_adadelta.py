# A TF 1.15-era classifier written against `tf.compat.v1` from `import
# tensorflow as tf`, using the everyday calls TF1 code leaned on: inputs
# l2-normalized, a leaky-ReLU layer whose bias is tiled to the batch, two
# heads from tf.split, the cross-entropy by hand (reduce_logsumexp minus the
# label's logit picked with gather_nd), class weights from a placeholder with
# an int shape, a pull toward the start weights with squared_difference,
# top-2 accuracy with nn.top_k, the deprecated arg_max, and Adadelta.
import os

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()

STEPS = int(os.environ.get("STEPS", 30))
NUM_CLASSES, BATCH = 4, 40
DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
rng = np.random.RandomState(17)
centers = rng.randn(NUM_CLASSES, 8) * 1.5
all_y = rng.randint(0, NUM_CLASSES, 400).astype(np.int32)
all_x = (centers[all_y] + rng.randn(400, 8)).astype(np.float32)

v1 = tf.compat.v1
x = v1.placeholder(tf.float32, shape=(None, 8), name="x")
labels = v1.placeholder(tf.int32, shape=(None,), name="labels")
class_weights = v1.placeholder(tf.float32, shape=(NUM_CLASSES), name="class_weights")   # an int shape

w0 = (rng.randn(8, 24) * 0.3).astype(np.float32)
w_hidden = tf.Variable(w0, name="w_hidden")
b_hidden = tf.Variable(np.full(24, 0.05, np.float32), name="b_hidden")
w_a = tf.Variable((rng.randn(12, NUM_CLASSES) * 0.3).astype(np.float32), name="w_a")
w_b = tf.Variable((rng.randn(12, NUM_CLASSES) * 0.3).astype(np.float32), name="w_b")

inputs = v1.nn.l2_normalize(x, axis=1) * 3.0
batch_bias = tf.tile(tf.expand_dims(b_hidden, 0), [tf.shape(x)[0], 1])
hidden = v1.nn.leaky_relu(tf.matmul(inputs, w_hidden) + batch_bias, alpha=0.1)
head_a, head_b = tf.split(hidden, num_or_size_splits=2, axis=1)
logits = tf.matmul(head_a, w_a) + tf.matmul(head_b, w_b)

rows = tf.range(tf.shape(logits)[0])
picked = tf.gather_nd(logits, tf.stack([rows, labels], axis=1))
nll = v1.reduce_logsumexp(logits, axis=1) - picked
weighted = nll * tf.gather(class_weights, labels)
pull = 0.01 * v1.reduce_sum(v1.squared_difference(w_hidden, w0))
loss = v1.reduce_mean(weighted) + pull

_, top2 = v1.nn.top_k(logits, k=2)
top2_hit = v1.reduce_any(tf.equal(top2, tf.expand_dims(labels, 1)), axis=1)
top2_accuracy = v1.reduce_mean(tf.cast(top2_hit, tf.float32))
accuracy = v1.reduce_mean(tf.cast(tf.equal(v1.arg_max(logits, 1), tf.cast(labels, tf.int64)), tf.float32))
n_elements = v1.reduce_prod(tf.shape(x))

optimizer = v1.train.AdadeltaOptimizer(learning_rate=1.0, rho=0.9)
if DISTRIBUTED:
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss)
cw = np.array([1.0, 2.0, 1.0, 0.5], np.float32)

with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    for step in range(STEPS):
        idx = np.arange(step * BATCH, step * BATCH + BATCH) % 400
        bx, by = all_x[idx], all_y[idx]
        if DISTRIBUTED:
            bx, by = tf.distributed.shard(bx, by)
        _, value = sess.run([train_op, loss], feed_dict={x: bx, labels: by, class_weights: cw})
        if step % 10 == 0 or step == STEPS - 1:
            acc, acc2, n = sess.run([accuracy, top2_accuracy, n_elements],
                                    feed_dict={x: all_x, labels: all_y, class_weights: cw})
            print("step %d accuracy %.4f top2 %.4f elements %d" % (step, acc, acc2, n))
    print("loss all %.6f" % sess.run(loss, feed_dict={x: all_x, labels: all_y, class_weights: cw}))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in v1.trainable_variables()})
