# Seed 002's course code (../shared/seeds/002, "人工智能实践：Tensorflow笔记"), the
# course's programs written out: the piecewise COST/PROFIT loss with
# tf.where(tf.greater(y, y_), ...), the MSE, the clipped cross-entropy,
# exponential_decay with global_step and staircase, and ExponentialMovingAverage
# with control_dependencies([train_step, ema_op]) + no_op.  Changed: the import
# line.  DISTRIBUTED=1 adds the wrapper line and feeds each rank its shard.
import os
import numpy as np
import distnet.compat.v1 as tf

DISTRIBUTED = os.environ.get("DISTRIBUTED") == "1"
if DISTRIBUTED and tf.distributed.rank() != 0:
    print = lambda *args, **kwargs: None  # noqa: E731  (rank 0 prints, as Horovod programs do)
PART = os.environ.get("PART", "all")

# -- 1. the piecewise loss: selling one too many costs COST, one too few loses PROFIT
if PART in ("all", "custom"):
    BATCH_SIZE = 8
    SEED = 23455
    COST = float(os.environ.get("COST", 1))
    PROFIT = float(os.environ.get("PROFIT", 9))
    rdm = np.random.RandomState(SEED)
    X = rdm.rand(32, 2)
    Y_ = [[x1 + x2 + (rdm.rand() / 10.0 - 0.05)] for (x1, x2) in X]
    tf.reset_default_graph()
    tf.set_random_seed(1)
    x = tf.placeholder(tf.float32, shape=(None, 2))
    y_ = tf.placeholder(tf.float32, shape=(None, 1))
    w1 = tf.Variable(tf.random_normal([2, 1], stddev=1, seed=1))
    y = tf.matmul(x, w1)
    loss = tf.reduce_sum(tf.where(tf.greater(y, y_), (y - y_) * COST, (y_ - y) * PROFIT))
    opt = tf.train.GradientDescentOptimizer(0.001)
    if DISTRIBUTED:
        opt = tf.DistributedOptimizer(opt, loss_reduction="sum")
    train_step = opt.minimize(loss)
    with tf.Session() as sess:
        init_op = tf.global_variables_initializer()
        sess.run(init_op)
        STEPS = int(os.environ.get("STEPS", 3000))
        for i in range(STEPS):
            start = (i * BATCH_SIZE) % 32
            end = (i * BATCH_SIZE) % 32 + BATCH_SIZE
            xb, yb = X[start:end], Y_[start:end]
            if DISTRIBUTED:
                xb, yb = tf.distributed.shard(xb, yb)
            sess.run(train_step, feed_dict={x: xb, y_: yb})
            if i % 500 == 0:
                print("After %d training steps, w1 is: " % (i))
                print(sess.run(w1), "\n")
        print("Final w1 is:", sess.run(w1).ravel().tolist())

# -- 2. the MSE on the same data
if PART in ("all", "mse"):
    tf.reset_default_graph()
    tf.set_random_seed(1)
    rdm = np.random.RandomState(23455)
    X = rdm.rand(32, 2)
    Y_ = [[x1 + x2 + (rdm.rand() / 10.0 - 0.05)] for (x1, x2) in X]
    x = tf.placeholder(tf.float32, shape=(None, 2))
    y_ = tf.placeholder(tf.float32, shape=(None, 1))
    w1 = tf.Variable(tf.random_normal([2, 1], stddev=1, seed=1))
    y = tf.matmul(x, w1)
    loss_mse = tf.reduce_mean(tf.square(y_ - y))
    opt = tf.train.GradientDescentOptimizer(0.001)
    if DISTRIBUTED:
        opt = tf.DistributedOptimizer(opt)
    train_step = opt.minimize(loss_mse)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for i in range(int(os.environ.get("STEPS", 3000))):
            start = (i * 8) % 32
            xb, yb = X[start:start + 8], Y_[start:start + 8]
            if DISTRIBUTED:
                xb, yb = tf.distributed.shard(xb, yb)
            sess.run(train_step, feed_dict={x: xb, y_: yb})
        print("MSE final w1 is:", sess.run(w1).ravel().tolist())

# -- 3. the clipped cross-entropy and the softmax + sparse cross-entropy
if PART in ("all", "ce"):
    tf.reset_default_graph()
    y_ = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    y = tf.constant([[0.6, 0.4], [0.0, 1.0]])
    ce = -tf.reduce_mean(y_ * tf.log(tf.clip_by_value(y, 1e-12, 1.0)))
    logits = tf.constant([[2.0, 0.5], [0.1, 1.5]])
    cem = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=tf.argmax(y_, 1)))
    with tf.Session() as sess:
        print("ce", sess.run(ce))
        print("cem", sess.run(cem))

# -- 4. exponential_decay of global_step, staircase (loss (w+1)^2, w from 5)
if PART in ("all", "decay"):
    tf.reset_default_graph()
    LEARNING_RATE_BASE = 0.1
    LEARNING_RATE_DECAY = 0.99
    LEARNING_RATE_STEP = 1
    global_step = tf.Variable(0, trainable=False)
    learning_rate = tf.train.exponential_decay(LEARNING_RATE_BASE, global_step, LEARNING_RATE_STEP,
                                               LEARNING_RATE_DECAY, staircase=True)
    w = tf.Variable(tf.constant(5, dtype=tf.float32))
    loss = tf.square(w + 1)
    train_step = tf.train.GradientDescentOptimizer(learning_rate).minimize(loss, global_step=global_step)
    with tf.Session() as sess:
        init_op = tf.global_variables_initializer()
        sess.run(init_op)
        for i in range(40):
            sess.run(train_step)
            learning_rate_val = sess.run(learning_rate)
            global_step_val = sess.run(global_step)
            w_val = sess.run(w)
            loss_val = sess.run(loss)
            print("After %s steps: global_step is %f, w is %f, learning rate is %f, loss is %f"
                  % (i, global_step_val, w_val, learning_rate_val, loss_val))

# -- 5. ExponentialMovingAverage(decay, global_step): the course's numbers
if PART in ("all", "ema"):
    tf.reset_default_graph()
    w1 = tf.Variable(0, dtype=tf.float32)
    global_step = tf.Variable(0, trainable=False)
    MOVING_AVERAGE_DECAY = 0.99
    ema = tf.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY, global_step)
    ema_op = ema.apply(tf.trainable_variables())
    with tf.Session() as sess:
        init_op = tf.global_variables_initializer()
        sess.run(init_op)
        print("ema", sess.run([w1, ema.average(w1)]))
        sess.run(tf.assign(w1, 1))
        sess.run(ema_op)
        print("ema", sess.run([w1, ema.average(w1)]))
        sess.run(tf.assign(global_step, 100))
        sess.run(tf.assign(w1, 10))
        sess.run(ema_op)
        print("ema", sess.run([w1, ema.average(w1)]))
        sess.run(ema_op)
        print("ema", sess.run([w1, ema.average(w1)]))

# -- 6. the training step and the average together
if PART in ("all", "train_ema"):
    tf.reset_default_graph()
    tf.set_random_seed(2)
    rdm = np.random.RandomState(23455)
    X = rdm.rand(32, 2).astype(np.float32)
    Y_ = (X.sum(1, keepdims=True) + 0.1).astype(np.float32)
    x = tf.placeholder(tf.float32, shape=(None, 2))
    y_ = tf.placeholder(tf.float32, shape=(None, 1))
    w1 = tf.Variable(tf.random_normal([2, 1], stddev=1, seed=1))
    b1 = tf.Variable(tf.zeros([1]))
    y = tf.matmul(x, w1) + b1
    global_step = tf.Variable(0, trainable=False)
    learning_rate = tf.train.exponential_decay(0.1, global_step, 10, 0.96, staircase=True)
    loss = tf.reduce_mean(tf.square(y_ - y)) + 0.0001 * tf.nn.l2_loss(w1)
    opt = tf.train.GradientDescentOptimizer(learning_rate)
    if DISTRIBUTED:
        opt = tf.DistributedOptimizer(opt)
    train_step = opt.minimize(loss, global_step=global_step)
    ema = tf.train.ExponentialMovingAverage(0.99, global_step)
    ema_op = ema.apply(tf.trainable_variables())
    with tf.control_dependencies([train_step, ema_op]):
        train_op = tf.no_op(name='train')
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for i in range(int(os.environ.get("STEPS", 200))):
            start = (i * 8) % 32
            xb, yb = X[start:start + 8], Y_[start:start + 8]
            if DISTRIBUTED:
                xb, yb = tf.distributed.shard(xb, yb)
            sess.run(train_op, feed_dict={x: xb, y_: yb})
        print("train_ema w1", sess.run(w1).ravel().tolist(), "b1", sess.run(b1).tolist())
        print("train_ema shadow", sess.run(ema.average(w1)).ravel().tolist(), sess.run(ema.average(b1)).tolist())
        print("train_ema step", sess.run(global_step))
