"""Batch normalization: the fused training op against the same computation
composed from primitive ops (moments + batch_normalization), forward and
backward, on a conv layer's activations.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/batch_norm.py
"""
import time

import numpy as np

import distnet
from distnet.nn.batch_norm import batch_norm_train, batch_normalization, moments


def fused(x, g, b):
    return batch_norm_train(x, g, b, epsilon=1e-3).output


def composed(x, g, b):
    m, v = moments(x, list(range(x.ndim - 1)))
    return batch_normalization(x, m, v, b, g, 1e-3)


def timeit(fn, shape, repeat=20):
    rng = np.random.default_rng(0)
    x = distnet.constant(rng.standard_normal(shape).astype(np.float32))
    g = distnet.constant(np.ones(shape[-1], np.float32))
    b = distnet.constant(np.zeros(shape[-1], np.float32))
    r = distnet.constant(rng.standard_normal(shape).astype(np.float32))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        y = fn(x, g, b)
        distnet.gradients(distnet.reduce_sum(y * r), [x, g, b])
        best = min(best, time.perf_counter() - t)
    return best


if __name__ == "__main__":
    for shape in ((100, 28, 28, 32), (100, 14, 14, 64), (100, 1024)):
        tf_, tc = timeit(fused, shape), timeit(composed, shape)
        print(f"shape {shape}: fused {tf_ * 1e3:.1f} ms, composed {tc * 1e3:.1f} ms (forward + backward, best of 20)")
