# A TF 1.15-style regression script: `tensorflow.compat.v1` with v2 behaviour
# off, the model's weights in plain Variables, full-batch gradient descent with
# a decaying learning rate, and the weights handed back as numpy at the end.
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

STEPS = int(os.environ.get("STEPS", 30))
data = np.random.RandomState(7)
features = data.randn(96, 4).astype(np.float32)
targets = (features @ np.array([[1.5], [-2.0], [0.5], [0.0]], np.float32) + 0.25
           + 0.1 * data.randn(96, 1).astype(np.float32))

x = tf.placeholder(tf.float32, shape=[None, 4], name="x")
y = tf.placeholder(tf.float32, shape=[None, 1], name="y")
with tf.variable_scope("linear"):
    w = tf.get_variable("w", initializer=np.full((4, 1), 0.1, np.float32))
    b = tf.get_variable("b", shape=[1], initializer=tf.zeros_initializer())
prediction = tf.matmul(x, w) + b
loss = tf.reduce_mean(tf.square(prediction - y))

global_step = tf.train.get_or_create_global_step()
rate = tf.train.exponential_decay(0.1, global_step, decay_steps=10, decay_rate=0.5, staircase=True)
optimizer = tf.train.GradientDescentOptimizer(rate)
if os.environ.get("DISTRIBUTED") == "1":
    optimizer = tf.DistributedOptimizer(optimizer)
train_op = optimizer.minimize(loss, global_step=global_step)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(STEPS):
        _, value = sess.run([train_op, loss], feed_dict={x: features, y: targets})
        if step % 5 == 0 or step == STEPS - 1:
            print("step %d loss %.6f" % (step, value))
    weights, bias = sess.run([w, b])
    print("weights", " ".join("%.6f" % v for v in weights.ravel()), "bias %.6f" % bias[0])
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], w=weights, b=bias)
