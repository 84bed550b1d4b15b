"""The cost of TF1's recurrent loops in ``distnet.compat.v1``.

Run ``python benchmarks/rnn_tf1.py [--steps S] [--batch B] [--time T] [--hidden H]``.
Times one training step (forward, backward, SGD) of an LSTM over ``T`` steps
(``BasicLSTMCell(H)`` on ``[B, T, 28]`` inputs, the last output through a
dense layer to 10 classes, softmax cross-entropy) written three ways, which
alternate step by step: ``tf.nn.dynamic_rnn`` (one op, the time loop at run
time over the cell's one-step graph), ``tf.nn.static_rnn`` (unrolled in the
graph) -- both with the cell's gate arithmetic in one
``distnet.nn.lstm_step`` -- and the same ops called eagerly with
``distnet.gradients`` (no graph at all), with ``lstm_step`` and with the gate
arithmetic composed of single ops (``eager``, the reference of the ratios).  Prints the median and minimum per step
and the ratios to the eager loop.  BLAS threads are set with threadpoolctl
(default 1).  OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from this
run's environment (the script restarts itself without them).
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
from threadpoolctl import threadpool_limits

import distnet
import distnet.compat.v1 as tf
import distnet.nn as dnn

DEPTH, CLASSES = 28, 10


def weights(hidden: int) -> dict:
    rng = np.random.RandomState(0)
    return {"kernel": rng.uniform(-0.1, 0.1, (DEPTH + hidden, 4 * hidden)).astype(np.float32),
            "bias": np.zeros(4 * hidden, np.float32),
            "w": rng.randn(hidden, CLASSES).astype(np.float32) * 0.1, "b": np.zeros(CLASSES, np.float32)}


def graph_step(kind: str, hidden: int, steps: int, init: dict):
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, steps, DEPTH])
        y = tf.placeholder(tf.int32, [None])
        with tf.variable_scope("m", initializer=tf.constant_initializer(init["kernel"])):
            cell = tf.nn.rnn_cell.BasicLSTMCell(hidden)
            if kind == "dynamic":
                out, _ = tf.nn.dynamic_rnn(cell, x, dtype=tf.float32)
                last = out[:, -1]
            else:
                outs, _ = tf.nn.static_rnn(cell, tf.unstack(x, steps, 1), dtype=tf.float32)
                last = outs[-1]
        logits = tf.matmul(last, tf.Variable(init["w"])) + tf.Variable(init["b"])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        sess = tf.Session(graph=g)
        sess.run(tf.global_variables_initializer())
    return lambda xs, ys: sess.run([train, loss], {x: xs, y: ys})[1]


def eager_step(hidden: int, steps: int, init: dict, fused: bool = False):
    params = {k: distnet.Variable(v) for k, v in init.items()}
    opt = distnet.optimizers.GradientDescent(0.1)

    def step(xs, ys):
        batch = xs.shape[0]
        c = distnet.zeros((batch, hidden))
        h = distnet.zeros((batch, hidden))
        for t in range(steps):
            z = distnet.matmul(distnet.concat([distnet.constant(xs[:, t]), h], 1), params["kernel"]) + params["bias"]
            if fused:
                both = dnn.lstm_step(z, c, 1.0)
                c, h = both[:, :hidden], both[:, hidden:]
            else:
                i, j, f, o = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
                c = c * dnn.sigmoid(f + 1.0) + dnn.sigmoid(i) * dnn.tanh(j)
                h = dnn.tanh(c) * dnn.sigmoid(o)
        logits = distnet.matmul(h, params["w"]) + params["b"]
        loss = distnet.reduce_mean(dnn.sparse_softmax_cross_entropy_with_logits(labels=ys, logits=logits))
        names = sorted(params)
        grads = distnet.gradients(loss, [params[k] for k in names])
        opt.apply_gradients([(g.data if hasattr(g, "data") else g, params[k]) for g, k in zip(grads, names)])
        return float(loss.data)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--time", type=int, default=28)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    init = weights(args.hidden)
    rng = np.random.RandomState(1)
    xs = rng.randn(args.batch, args.time, DEPTH).astype(np.float32)
    ys = rng.randint(0, CLASSES, args.batch).astype(np.int32)
    t0 = time.perf_counter()
    ways = {"dynamic_rnn": graph_step("dynamic", args.hidden, args.time, init)}
    build_dynamic = time.perf_counter() - t0
    t0 = time.perf_counter()
    ways["static_rnn"] = graph_step("static", args.hidden, args.time, init)
    build_static = time.perf_counter() - t0
    ways["eager_fused"] = eager_step(args.hidden, args.time, init, fused=True)
    ways["eager"] = eager_step(args.hidden, args.time, init)
    times: dict = {k: [] for k in ways}
    losses: dict = {k: [] for k in ways}
    with threadpool_limits(args.threads):
        for _ in range(args.steps):
            for k, fn in ways.items():
                t0 = time.perf_counter()
                losses[k].append(fn(xs, ys))
                times[k].append(time.perf_counter() - t0)
    print(f"LSTM step: batch {args.batch}, {args.time} time steps, hidden {args.hidden}, "
          f"{args.threads} BLAS thread(s), load average {os.getloadavg()[0]:.2f}")
    print(f"graph build: dynamic_rnn {build_dynamic * 1e3:.1f} ms, static_rnn {build_static * 1e3:.1f} ms "
          "(includes the shape probes)")
    eager = statistics.median(times["eager"])
    for k, ts in times.items():
        print(f"{k:12s} median {statistics.median(ts) * 1e3:8.2f} ms  min {min(ts) * 1e3:8.2f} ms  "
              f"ratio to eager {statistics.median(ts) / eager:5.2f}  last loss {losses[k][-1]:.6f}")


if __name__ == "__main__":
    main()
