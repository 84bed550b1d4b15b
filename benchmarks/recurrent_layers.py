"""What a fused LSTM step op could save: one training-mode forward + backward of
distnet's LSTM layer (its time loop over native ops, differentiated by
autodiff) against the same forward and backpropagation through time written
by hand in numpy — the floor a fused step op (one op per step, a hand-written
backward) could approach.  Also the GRU layer's time, for reference.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python benchmarks/recurrent_layers.py

Prints one line per shape: medians of 15 runs of each, taken in turn (a slow
spell of the shared machine hits both), and their ratio.  The hand-written
version is checked against the layer's gradients before it is timed.
"""
import time

import numpy as np

import distnet
from distnet.layers import GRU, LSTM
from distnet.models import Sequential


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_lstm(x, kernel, recurrent, bias, r):
    """Forward and BPTT of ``sum(h_T * r)``: gradients of x, kernel, recurrent kernel, bias."""
    b, t_len, _ = x.shape
    u = recurrent.shape[0]
    h = c = np.zeros((b, u), x.dtype)
    saved = []
    for t in range(t_len):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = sigmoid(z[:, :u]), sigmoid(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), sigmoid(z[:, 3 * u:])
        c_prev, h_prev = c, h
        c = f * c + i * g
        tc = np.tanh(c)
        h = o * tc
        saved.append((i, f, g, o, c_prev, h_prev, tc))
    dx, dk, dr, db = np.zeros_like(x), np.zeros_like(kernel), np.zeros_like(recurrent), np.zeros_like(bias)
    dh, dc = r, np.zeros_like(c)
    for t in reversed(range(t_len)):
        i, f, g, o, c_prev, h_prev, tc = saved[t]
        do = dh * tc
        dc = dc + dh * o * (1 - tc * tc)
        dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                             do * o * (1 - o)], axis=1)
        dc = dc * f
        dk += x[:, t].T @ dz
        dr += h_prev.T @ dz
        db += dz.sum(0)
        dx[:, t] = dz @ kernel.T
        dh = dz @ recurrent.T
    return dx, dk, dr, db


def layer_step(model, x, r):
    xt = distnet.constant(x)
    y = model(xt, training=True)
    return distnet.gradients(distnet.reduce_sum(y * r), [xt] + model.trainable_variables)


def median(fn, repeat=15):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    print(f"{'shape [batch, time, features] units':>38} | {'LSTM layer':>10} | {'numpy BPTT':>10} | {'ratio':>5} | "
          f"{'GRU layer':>9}")
    for b, t, f, u in ((50, 28, 28, 64), (100, 28, 28, 128), (32, 100, 16, 32)):
        rng = np.random.default_rng(0)
        x = rng.random((b, t, f), dtype=np.float32)
        r = rng.standard_normal((b, u)).astype(np.float32)
        lstm = Sequential([LSTM(u)], input_shape=(t, f), seed=1)
        gru = Sequential([GRU(u)], input_shape=(t, f), seed=1)
        weights = [v.numpy() for v in lstm.trainable_variables]
        got, want = layer_step(lstm, x, r), numpy_lstm(x, *weights, r)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-5)
        a, bb, c = [], [], []
        for _ in range(15):   # in turn
            a.append(median(lambda: layer_step(lstm, x, r), 1))
            bb.append(median(lambda: numpy_lstm(x, *weights, r), 1))
            c.append(median(lambda: layer_step(gru, x, r), 1))
        la, lb, lc = (float(np.median(v)) for v in (a, bb, c))
        print(f"{f'[{b}, {t}, {f}] {u}':>38} | {la * 1e3:8.1f}ms | {lb * 1e3:8.1f}ms | {la / lb:5.2f} | "
              f"{lc * 1e3:7.1f}ms")


if __name__ == "__main__":
    main()
