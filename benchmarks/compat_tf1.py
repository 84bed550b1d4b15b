"""The cost of TF1 graph mode (``distnet.compat.v1``) over the native eager API.

Run ``python benchmarks/compat_tf1.py [--steps S] [--threads N]``.  Times one
training step of seed 003's network (conv 5x5x32 + pool, dense 6272x1024,
dense 1024x10, softmax cross-entropy, Adam 1e-4, batch 100, float32): once as
the seed writes it (``sess.run(train_op, feed_dict)``), once with the same ops
called eagerly and ``distnet.gradients`` + ``distnet.optimizers.Adam``.  The
two alternate step by step; prints the median and minimum per step and their
ratio, and the graph's build time (which includes the shape probes).  BLAS
threads are set with threadpoolctl (default 1).  OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are removed from this run's environment (the script
restarts itself without them) so that OpenBLAS picks its own kernels.
"""
from __future__ import annotations

import os
import sys

if any(v in os.environ for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import distnet  # noqa: E402
import distnet.compat.v1 as tf  # noqa: E402


def graph_step(batch):
    tf.reset_default_graph()
    tf.set_random_seed(1)
    t0 = time.perf_counter()
    xs = tf.placeholder(tf.float32, [None, 784])
    ys = tf.placeholder(tf.float32, [None, 10])
    x_image = tf.reshape(xs, [-1, 28, 28, 1])
    w1 = tf.Variable(tf.truncated_normal([5, 5, 1, 32], stddev=0.1))
    b1 = tf.Variable(tf.constant(0.1, shape=[32]))
    h = tf.nn.max_pool(tf.nn.relu(tf.nn.conv2d(x_image, w1, [1, 1, 1, 1], "SAME") + b1),
                       [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
    w2 = tf.Variable(tf.truncated_normal([14 * 14 * 32, 1024], stddev=0.1))
    b2 = tf.Variable(tf.constant(0.1, shape=[1024]))
    f = tf.nn.relu(tf.matmul(tf.reshape(h, [-1, 14 * 14 * 32]), w2) + b2)
    w3 = tf.Variable(tf.truncated_normal([1024, 10], stddev=0.1))
    b3 = tf.Variable(tf.constant(0.1, shape=[10]))
    logits = tf.matmul(f, w3) + b3
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=ys, logits=logits))
    train = tf.train.AdamOptimizer(1e-4).minimize(loss)
    build = time.perf_counter() - t0
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    feed = {xs: batch[0], ys: batch[1]}
    return (lambda: sess.run(train, feed)), build


def eager_step(batch):
    rng = np.random.default_rng(1)
    init = distnet.model.initializers.truncated_normal(stddev=0.1)
    params = [distnet.Variable(init((5, 5, 1, 32), np.float32, rng)), distnet.Variable(np.full(32, 0.1, np.float32)),
              distnet.Variable(init((6272, 1024), np.float32, rng)), distnet.Variable(np.full(1024, 0.1, np.float32)),
              distnet.Variable(init((1024, 10), np.float32, rng)), distnet.Variable(np.full(10, 0.1, np.float32))]
    opt = distnet.optimizers.Adam(1e-4)
    x, y = batch

    def loss():
        w1, b1, w2, b2, w3, b3 = params
        img = distnet.reshape(distnet.constant(x), (-1, 28, 28, 1))
        h = distnet.nn.max_pool(distnet.nn.relu(distnet.nn.conv2d(img, w1, 1, "SAME") + b1), 2, 2, "SAME")
        f = distnet.nn.relu(distnet.matmul(distnet.reshape(h, (-1, 6272)), w2) + b2)
        logits = distnet.matmul(f, w3) + b3
        return distnet.reduce_mean(distnet.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))

    return lambda: opt.minimize(loss, params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batch = (rng.random((100, 784), dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)])
    with threadpool_limits(args.threads):
        g, build = graph_step(batch)
        e = eager_step(batch)
        g(), e()                                  # warm-up: slots, caches
        tg, te = [], []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            g()
            tg.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            e()
            te.append(time.perf_counter() - t0)
    print(f"seed 003 network, batch 100, {args.threads} BLAS thread(s), {args.steps} steps each")
    print(f"graph build (with shape probes): {build * 1e3:.1f} ms")
    print(f"{'':24s}{'median ms':>10s}{'min ms':>10s}")
    print(f"{'compat.v1 sess.run':24s}{statistics.median(tg) * 1e3:10.1f}{min(tg) * 1e3:10.1f}")
    print(f"{'native eager':24s}{statistics.median(te) * 1e3:10.1f}{min(te) * 1e3:10.1f}")
    print(f"ratio graph / eager: median {statistics.median(tg) / statistics.median(te):.3f}, "
          f"min {min(tg) / min(te):.3f}")


if __name__ == "__main__":
    main()
