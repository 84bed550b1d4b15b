# Reading a CSV file the TF 1.0 way: a filename queue from
# string_input_producer (with num_epochs, hence local variables), a
# TextLineReader that skips the header, decode_csv with per-column defaults,
# tf.train.batch to group the examples, and the Coordinator /
# start_queue_runners loop that trains until the queue reports
# OutOfRangeError.  The file is written first, in a temporary directory.
import os
import shutil
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

EPOCHS = int(os.environ.get("EPOCHS", 3))

workdir = tempfile.mkdtemp(prefix="csv_reader_")
csv_path = os.path.join(workdir, "houses.csv")
rs = np.random.RandomState(21)
rooms = rs.randint(1, 7, size=100)
area = rs.uniform(30, 160, size=100).round(1)
age = rs.randint(0, 60, size=100)
price = 0.8 * rooms + 0.03 * area - 0.02 * age + rs.randn(100) * 0.2
with open(csv_path, "w") as f:
    f.write("rooms,area,age,price\n")
    for i in range(100):
        # Some rows lack the age: decode_csv fills in the column's default.
        age_field = "" if i % 17 == 0 else str(age[i])
        f.write("%d,%.1f,%s,%.4f\n" % (rooms[i], area[i], age_field, price[i]))

filename_queue = tf.train.string_input_producer([csv_path], num_epochs=EPOCHS, shuffle=False)
reader = tf.TextLineReader(skip_header_lines=1)
_, line = reader.read(filename_queue)
n_rooms, n_area, n_age, n_price = tf.decode_csv(line, record_defaults=[[0], [0.0], [30], [0.0]])
row = tf.stack([tf.cast(n_rooms, tf.float32), n_area / 100.0, tf.cast(n_age, tf.float32) / 50.0])
rows, prices = tf.train.batch([row, n_price], batch_size=16, num_threads=1, capacity=64)

weights = tf.Variable(np.zeros((3, 1), np.float32), name="weights")
bias = tf.Variable(0.0, name="bias")
predicted = tf.squeeze(tf.matmul(rows, weights), axis=1) + bias
loss = tf.reduce_mean(tf.square(predicted - prices))
train_op = tf.train.GradientDescentOptimizer(0.02).minimize(loss)

with tf.Session() as sess:
    sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
    coord = tf.train.Coordinator()
    threads = tf.train.start_queue_runners(sess=sess, coord=coord)
    step = 0
    try:
        while not coord.should_stop():
            _, value = sess.run([train_op, loss])
            if step % 5 == 0:
                print("step %d loss %.6f" % (step, value))
            step += 1
    except tf.errors.OutOfRangeError:
        print("done after steps %d" % step)
    finally:
        coord.request_stop()
    coord.join(threads)
    w, b = sess.run([weights, bias])
    print("weights", " ".join("%.6f" % v for v in w.ravel()), "bias %.6f" % b)
    if os.environ.get("OUT"):
        np.savez(os.environ["OUT"], weights=w, bias=b)
shutil.rmtree(workdir)
