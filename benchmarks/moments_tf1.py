"""The cost of ``tf.nn.moments`` in ``distnet.compat.v1``: one op computing mean and variance.

Run ``python benchmarks/moments_tf1.py [--rows N] [--cols C]``: the best and median of 30
``sess.run([mean, variance])`` over axis 0 of a fed ``[N, C]`` float32 array.  OPENBLAS_CORETYPE
and OPENBLAS_L2_SIZE are removed from this run's environment (the script restarts itself without them).
"""
from __future__ import annotations

import os
import sys

if any(v in os.environ for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse
import statistics
import time

import numpy as np

import distnet.compat.v1 as tf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--cols", type=int, default=2048)
    a = ap.parse_args()
    x = tf.placeholder(tf.float32, [a.rows, a.cols])
    mean, variance = tf.nn.moments(x, [0])
    xv = np.random.RandomState(0).randn(a.rows, a.cols).astype(np.float32)
    with tf.Session() as sess:
        sess.run([mean, variance], {x: xv})
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            sess.run([mean, variance], {x: xv})
            times.append(time.perf_counter() - t0)
    print(f"moments [{a.rows}, {a.cols}] axis 0: median {1e3 * statistics.median(times):.3f} ms  "
          f"min {1e3 * min(times):.3f} ms")


if __name__ == "__main__":
    main()
