"""The cost per batch of TF1's ``tf.data`` pipelines in ``distnet.compat.v1``.

Run ``python benchmarks/data_tf1.py [--rows N] [--batches K]``.  Times ``sess.run(get_next)`` of
``from_tensor_slices((x, y)) -> shuffle(10000) -> batch(100)`` (rows gathered per batch), the
same with ``map`` before ``batch`` (the function run per element) and, for scale, a numpy gather
of 100 random rows.  Prints the median and minimum per batch.  OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are removed from this run's environment (the script restarts itself without them).
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


def per_batch(make, batches: int) -> list:
    g = tf.Graph()
    with g.as_default():
        nxt = make().make_one_shot_iterator().get_next()
        with tf.Session() as sess:
            sess.run(nxt)
            times = []
            for _ in range(batches):
                t0 = time.perf_counter()
                sess.run(nxt)
                times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--batches", type=int, default=200)
    a = ap.parse_args()
    rng = np.random.RandomState(0)
    x = rng.rand(a.rows, 784).astype(np.float32)
    y = rng.randint(0, 10, a.rows).astype(np.int64)
    cases = {
        "slices>shuffle>batch": lambda: tf.data.Dataset.from_tensor_slices((x, y)).shuffle(10000, seed=1)
        .batch(100).repeat(),
        "slices>shuffle>map>batch": lambda: tf.data.Dataset.from_tensor_slices((x, y)).shuffle(10000, seed=1)
        .map(lambda u, v: (u * 2.0, v)).batch(100).repeat(),
    }
    for name, make in cases.items():
        t = per_batch(make, a.batches if "map" not in name else max(a.batches // 4, 5))
        print(f"{name:26s} median {1e3 * statistics.median(t):7.3f} ms  min {1e3 * min(t):7.3f} ms per batch")
    t = []
    for _ in range(a.batches):
        t0 = time.perf_counter()
        idx = rng.randint(0, a.rows, 100)
        x[idx], y[idx]
        t.append(time.perf_counter() - t0)
    print(f"{'numpy gather':26s} median {1e3 * statistics.median(t):7.3f} ms  min {1e3 * min(t):7.3f} ms per batch")


if __name__ == "__main__":
    main()
