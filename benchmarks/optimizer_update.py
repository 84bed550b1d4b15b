"""distnet's Adam update (in place, in cache-sized chunks) beside the same
update written as whole-array numpy expressions, on the reference net's
6.43 M parameters, alternating; prints the medians and their ratio.

    OMP_NUM_THREADS=1 python benchmarks/optimizer_update.py [--size N] [--repeats 15] [--chunk 32768]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import distnet
from distnet.optimizers import Adam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=6_434_634, help="parameters (default: the reference net's)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--chunk", type=int, default=None, help="Adam's chunk_size (default: the optimizer's)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    var = distnet.Variable(rng.standard_normal(args.size).astype(np.float32), name="w")
    grad = (rng.standard_normal(args.size) * 1e-3).astype(np.float32)
    opt = Adam(1e-4)
    if args.chunk is not None:
        opt.chunk_size = args.chunk
    opt.build([var])
    m = np.zeros(args.size, np.float32)
    v = np.zeros(args.size, np.float32)
    p = var.data.copy()

    def whole(t: int) -> None:   # the textbook expressions: a temporary per operation
        lr_t = 1e-4 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        m[...] = 0.9 * m + 0.1 * grad
        v[...] = 0.999 * v + 0.001 * grad * grad
        p[...] -= lr_t * m / (np.sqrt(v) + 1e-8)

    def chunked(t: int) -> None:
        opt.apply_gradients([(grad, var)])

    times: dict = {"distnet Adam (chunked, in place)": [], "whole-array expressions": []}
    for r in range(args.repeats + 3):
        for (name, f) in zip(times, (chunked, whole)):
            t0 = time.perf_counter()
            f(r + 1)
            if r >= 3:   # warm-up
                times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(x)) * 1e3 for k, x in times.items()}
    for k, x in med.items():
        print(f"{k:36s} {x:7.2f} ms")
    a, b = med.values()
    print(f"ratio {a / b:.2f}x  ({args.size:,} float32 parameters, chunk {opt.chunk_size})")


if __name__ == "__main__":
    main()
