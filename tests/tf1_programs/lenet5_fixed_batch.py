# LeNet-5 the way the TF1 books wrote it: the input placeholder has a FIXED
# batch of 100 ([100, 28, 28, 1]) while the labels' batch is None, the logits
# meet the labels in sparse_softmax_cross_entropy_with_logits(labels=
# tf.argmax(y_, 1)) (TF1 merges [?] with [100]), the flattening size comes
# from get_shape().as_list(), L2 terms go to a 'losses' collection, and the
# learning rate decays with the global step while a moving average follows
# the weights.  Data: the Fashion-MNIST subset shipped with distnet, read from
# its IDX files with gzip + numpy (as the old input_data did).
import gzip
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 10))
BATCH_SIZE = 100
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "distnet", "data", "embedded",
                    "fashion-mnist-subset")
rng = np.random.RandomState(5)


def read_idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


images = read_idx("train-images-idx3-ubyte.gz")[:2000].astype(np.float32) / 255.0
labels = np.eye(10, dtype=np.float32)[read_idx("train-labels-idx1-ubyte.gz")[:2000]]


def init(shape, scale):
    return tf.constant_initializer(rng.randn(*shape).astype(np.float32) * scale)


def inference(input_tensor, regularizer):
    with tf.variable_scope("layer1-conv1"):
        w = tf.get_variable("weight", [5, 5, 1, 6], initializer=init([5, 5, 1, 6], 0.1))
        b = tf.get_variable("bias", [6], initializer=tf.constant_initializer(0.0))
        relu1 = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(input_tensor, w, strides=[1, 1, 1, 1], padding="SAME"), b))
    with tf.name_scope("layer2-pool1"):
        pool1 = tf.nn.max_pool(relu1, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    with tf.variable_scope("layer3-conv2"):
        w = tf.get_variable("weight", [5, 5, 6, 16], initializer=init([5, 5, 6, 16], 0.1))
        b = tf.get_variable("bias", [16], initializer=tf.constant_initializer(0.0))
        relu2 = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(pool1, w, strides=[1, 1, 1, 1], padding="VALID"), b))
    with tf.name_scope("layer4-pool2"):
        pool2 = tf.nn.max_pool(relu2, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    pool_shape = pool2.get_shape().as_list()
    nodes = pool_shape[1] * pool_shape[2] * pool_shape[3]
    reshaped = tf.reshape(pool2, [pool_shape[0], nodes])
    with tf.variable_scope("layer5-fc1"):
        w = tf.get_variable("weight", [nodes, 120], initializer=init([nodes, 120], 0.05))
        tf.add_to_collection("losses", regularizer(w))
        b = tf.get_variable("bias", [120], initializer=tf.constant_initializer(0.1))
        fc1 = tf.nn.relu(tf.matmul(reshaped, w) + b)
    with tf.variable_scope("layer6-fc2"):
        w = tf.get_variable("weight", [120, 10], initializer=init([120, 10], 0.1))
        tf.add_to_collection("losses", regularizer(w))
        b = tf.get_variable("bias", [10], initializer=tf.constant_initializer(0.1))
        return tf.matmul(fc1, w) + b


x = tf.placeholder(tf.float32, [BATCH_SIZE, 28, 28, 1], name="x-input")
y_ = tf.placeholder(tf.float32, [None, 10], name="y-input")
y = inference(x, lambda w: 0.0001 * tf.nn.l2_loss(w))
global_step = tf.Variable(0, trainable=False)
variable_averages = tf.train.ExponentialMovingAverage(0.99, global_step)
variables_averages_op = variable_averages.apply(tf.trainable_variables())
cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=y, labels=tf.argmax(y_, 1))
cross_entropy_mean = tf.reduce_mean(cross_entropy)
loss = cross_entropy_mean + tf.add_n(tf.get_collection("losses"))
learning_rate = tf.train.exponential_decay(0.05, global_step, 5, 0.9, staircase=True)
train_step = tf.train.MomentumOptimizer(learning_rate, 0.9).minimize(loss, global_step=global_step)
with tf.control_dependencies([train_step, variables_averages_op]):
    train_op = tf.no_op(name="train")
correct = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

with tf.Session() as sess:
    tf.global_variables_initializer().run()
    print("shapes", cross_entropy.get_shape().as_list()[0], y.get_shape().as_list()[0])
    for i in range(STEPS):
        start = (i * BATCH_SIZE) % 1000
        xs = images[start:start + BATCH_SIZE].reshape(BATCH_SIZE, 28, 28, 1)
        ys = labels[start:start + BATCH_SIZE]
        _, loss_value, step = sess.run([train_op, loss, global_step], feed_dict={x: xs, y_: ys})
        print("step %d loss %.5f" % (step, loss_value))
    evals = []
    for k in range(2):
        xs = images[1000 + k * BATCH_SIZE:1100 + k * BATCH_SIZE].reshape(BATCH_SIZE, 28, 28, 1)
        evals.append(sess.run([accuracy, cross_entropy_mean],
                              feed_dict={x: xs, y_: labels[1000 + k * BATCH_SIZE:1100 + k * BATCH_SIZE]}))
    print("eval accuracy %.4f loss %.5f" % tuple(np.mean(evals, axis=0)))
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], **{v.op.name: sess.run(v) for v in tf.trainable_variables()})
