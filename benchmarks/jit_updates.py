"""Each optimizer's update and the EMA's, compiled kernel (distnet/jit.py) beside
the chunked numpy path, on the reference net's 6.43 M parameters; CPU time
(``time.process_time``) of one update, alternating, minimum and median of the
repeats, and checks that both give the same bits.

    OMP_NUM_THREADS=1 python benchmarks/jit_updates.py [--size N] [--repeats 15] [--dtype float32]
"""
from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np

import distnet
from distnet.model import moving_averages
from distnet.model.moving_averages import ExponentialMovingAverage
from distnet.optimizers import Adadelta, Adagrad, Adam, GradientDescent, Momentum, RMSProp

CASES = {
    "sgd": lambda: GradientDescent(0.01),
    "momentum": lambda: Momentum(0.01, 0.9),
    "momentum nesterov": lambda: Momentum(0.01, 0.9, use_nesterov=True),
    "rmsprop": lambda: RMSProp(0.01),
    "rmsprop momentum": lambda: RMSProp(0.01, momentum=0.9),
    "rmsprop centered": lambda: RMSProp(0.01, momentum=0.9, centered=True),
    "adagrad": lambda: Adagrad(0.01),
    "adadelta": lambda: Adadelta(1.0),
    "adam": lambda: Adam(1e-3),
}


def optimizer_step(make, compiled: bool, init, grad):
    opt = make()
    if not compiled:
        opt._update_compiled = lambda *args: False
    var = distnet.Variable(init.copy(), name="w")
    opt.build([var])
    return (lambda: opt.apply_gradients([(grad, var)])), var


def ema_step(compiled: bool, init, x):
    ema = ExponentialMovingAverage(0.99)
    var = distnet.Variable(init.copy(), name="w")
    ema.build([var])
    var.data[...] = x

    def step():
        if compiled:
            ema.apply([var], num_updates=100)
        else:
            with mock.patch.object(moving_averages, "_ema_kernel", None):
                ema.apply([var], num_updates=100)
    return step, ema.average(var)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=6_434_634, help="parameters (default: the reference net's)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--only", default=None, help="comma-separated case names (default: all, and the EMA)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    init = rng.standard_normal(args.size).astype(args.dtype)
    grad = (rng.standard_normal(args.size) * 1e-3).astype(args.dtype)
    names = list(CASES) + ["ema"] if args.only is None else args.only.split(",")
    print(f"{args.size:,} {args.dtype} parameters; CPU ms per update, min (median) of {args.repeats}")
    print(f"{'update':20s} {'numpy':>16s} {'compiled':>16s}  ratio  same bits")
    for name in names:
        if name == "ema":
            runs = [ema_step(c, init, grad) for c in (False, True)]
        else:
            runs = [optimizer_step(CASES[name], c, init, grad) for c in (False, True)]
        times = ([], [])
        for r in range(args.repeats + 2):
            for k, (step, _) in enumerate(runs):
                t0 = time.process_time()
                step()
                if r >= 2:   # warm-up (and compilation)
                    times[k].append(time.process_time() - t0)
        same = runs[0][1].data.tobytes() == runs[1][1].data.tobytes()
        lo = [min(t) * 1e3 for t in times]
        med = [float(np.median(t)) * 1e3 for t in times]
        print(f"{name:20s} {lo[0]:7.2f} ({med[0]:6.2f}) {lo[1]:7.2f} ({med[1]:6.2f})  {lo[0] / lo[1]:4.2f}x  {same}")


if __name__ == "__main__":
    main()
