"""Where one training run of ``tf.nn.dynamic_rnn`` spends its time (``distnet.compat.v1``).

Run ``python benchmarks/rnn_tf1_profile.py [--time T]``: an LSTM of 8 units on ``[4, T, 8]``
inputs, ``reduce_sum`` of its outputs minimized by SGD; prints the best forward and training run
times of 5, then cProfile's cumulative table of one training run.  The step runs' own cost is
``rnn.py(run)`` minus ``graph.py(compute)`` (the ops').  OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
are removed from this run's environment (the script restarts itself without them).
"""
from __future__ import annotations

import os
import sys

if any(v in os.environ for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse
import cProfile
import pstats
import time

import numpy as np

import distnet.compat.v1 as tf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time", type=int, default=250)
    steps = ap.parse_args().time
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [4, steps, 8])
        out, _ = tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicLSTMCell(8), x, dtype=tf.float32)
        loss = tf.reduce_sum(out)
        train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        xv = np.random.RandomState(0).rand(4, steps, 8).astype(np.float32)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(train, {x: xv})
            for what, fetch in (("forward", out), ("train", train)):
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    sess.run(fetch, {x: xv})
                    times.append(time.perf_counter() - t0)
                print(f"{what:8s} best of 5 {1e3 * min(times):8.2f} ms")
            prof = cProfile.Profile()
            prof.runcall(sess.run, train, {x: xv})
            pstats.Stats(prof).sort_stats("cumtime").print_stats(r"rnn.py|graph.py:\d+\(compute\)|session.py")


if __name__ == "__main__":
    main()
