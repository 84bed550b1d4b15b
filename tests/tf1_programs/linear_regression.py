# Fitting a line with TF1 the way the first example collections did it:
# placeholders with no shape that take one Python number per run, a weight
# and a bias started from numpy scalars, the cost written out with tf.pow and
# reduce_sum over the samples, stochastic gradient descent one sample at a
# time, and a progress line every few epochs.  The data are 17 noisy points
# of a line, made with numpy from a fixed seed.
import os

import numpy as np
import distnet.compat.v1 as tf

EPOCHS = int(os.environ.get("EPOCHS", 100))
REPORT_EVERY = 25
RATE = 0.01

gen = np.random.RandomState(7)
xs = np.round(gen.uniform(1.0, 11.0, size=17), 3)
ys = np.round(0.25 * xs + 0.8 + gen.normal(0.0, 0.3, size=17), 3)
count = len(xs)

x_in = tf.placeholder("float")
y_in = tf.placeholder("float")
slope = tf.Variable(gen.randn(), name="slope")
offset = tf.Variable(gen.randn(), name="offset")
guess = slope * x_in + offset
cost = tf.reduce_sum(tf.pow(guess - y_in, 2)) / (2 * count)
sgd_step = tf.train.GradientDescentOptimizer(RATE).minimize(cost)

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for epoch in range(1, EPOCHS + 1):
        for one_x, one_y in zip(xs, ys):
            sess.run(sgd_step, feed_dict={x_in: one_x, y_in: one_y})
        if epoch % REPORT_EVERY == 0:
            c, s, o = sess.run([cost, slope, offset], feed_dict={x_in: xs, y_in: ys})
            print("epoch %d cost %.6f slope %.6f offset %.6f" % (epoch, c, s, o))
    final_cost = sess.run(cost, feed_dict={x_in: xs, y_in: ys})
    # An op made after the session started (rescaling by 1 leaves the slope as it is).
    sess.run(tf.assign(slope, slope * 1.0))
    print("final", repr(float(sess.run(slope))), repr(float(sess.run(offset))), repr(float(final_cost)))
