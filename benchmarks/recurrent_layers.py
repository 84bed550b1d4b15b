"""The LSTM and GRU layers' two paths, one training-mode forward + backward
each: the fused sequence op (``distnet.nn.lstm`` / ``distnet.nn.gru``, what
the layer runs with Keras' default activations) against the time loop
unrolled over native ops and differentiated by autodiff (what it runs with
other activations, forced here by passing the same activations as callables).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python benchmarks/recurrent_layers.py

Prints one line per shape: medians of 15 runs of each, taken in turn (so a
slow spell of the shared machine hits all), and the ratios unrolled / fused.
The two paths' gradients are compared before they are timed.
"""
import time

import numpy as np

import distnet
from distnet.layers import GRU, LSTM
from distnet.model.models import Sequential


def layer_step(model, x, r):
    xt = distnet.constant(x)
    y = model(xt, training=True)
    return distnet.gradients(distnet.reduce_sum(y * r), [xt] + model.trainable_variables)


def once(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    print(f"{'[batch, time, features] units':>32} | {'layer':>5} | {'unrolled':>9} | {'fused':>8} | {'ratio':>5}")
    for b, t, f, u in ((50, 28, 28, 64), (100, 28, 28, 128), (32, 100, 16, 32)):
        rng = np.random.default_rng(0)
        x = rng.random((b, t, f), dtype=np.float32)
        r = rng.standard_normal((b, u)).astype(np.float32)
        for kind in (LSTM, GRU):
            fused = Sequential([kind(u)], input_shape=(t, f), seed=1)
            unrolled = Sequential([kind(u, activation=lambda v: distnet.nn.tanh(v),
                                        recurrent_activation=lambda v: distnet.nn.sigmoid(v))],
                                  input_shape=(t, f), seed=1)
            for g, w in zip(layer_step(fused, x, r), layer_step(unrolled, x, r)):
                np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)
            times = {"unrolled": [], "fused": []}
            for _ in range(15):
                for name, model in (("unrolled", unrolled), ("fused", fused)):
                    times[name].append(once(lambda: layer_step(model, x, r)))
            m = {k: float(np.median(v)) for k, v in times.items()}
            print(f"{f'[{b}, {t}, {f}] {u}':>32} | {kind.__name__:>5} | {m['unrolled'] * 1e3:7.1f}ms | "
                  f"{m['fused'] * 1e3:6.1f}ms | {m['unrolled'] / m['fused']:5.2f}")


if __name__ == "__main__":
    main()
