"""Forward+backward time of the hot ops against bare numpy BLAS calls.

Run ``python benchmarks/ops.py [--threads N] [--repeats R]``.  Prints, for
each case, the median and the minimum time of the distnet path (op
forward, then ``distnet.gradients`` through the graph) beside the bare numpy
matmuls that do the same floating-point work, and their ratios (target:
<= 1.15).  The two paths run alternately; on a busy machine trust the
minimum more than the median.

Cases (float32, batch 100, the reference net of docs/jobs.md):

* ``conv1``: ``conv2d`` 28x28x1 -> 32 filters 5x5 SAME, gradient w.r.t. the
  filters only (the input is data, as in the network).  Baseline: the
  forward matmul ``cols @ W`` and the filter-gradient matmul ``cols.T @ G``
  on a ready-made im2col matrix, so distnet's im2col copy counts as overhead.
* ``conv1+dx``: the same with the input gradient too (one more matmul
  ``G @ W.T`` in the baseline; distnet adds the col2im scatter).
* ``conv2``: 14x14x32 -> 64 filters 5x5 SAME, both gradients.  Its column
  matrix (63 MB) is above ``distnet.nn.conv.CHUNK_MIN_BYTES``, so distnet
  runs it in cache-sized sample chunks while the baseline multiplies the
  whole matrices: a ratio below 1 is that chunking's gain.
* ``dense``: ``matmul`` 100x6272 @ 6272x1024, both gradients (three matmuls).
* ``im2col1``, ``im2col2``: distnet's column copy of conv1's and conv2's
  padded input alone, beside the forward GEMM it feeds (the GFLOP/s column
  is then the GEMM's work over the copy's time).

With TensorFlow in the interpreter (e.g. compare.py's separate venv), the
last line is TensorFlow's ``conv2d`` of conv2's shapes, forward and both
gradients, on the same number of threads (minimum ms and GFLOP/s).

``--net reference|twoconv`` prints instead one line per op of that net's
training step (compare.py's nets, batch 100): distnet's forward + backward of
the op beside TensorFlow's (each op alone in a ``tf.function`` with a
``GradientTape``, its output returned so that nothing is pruned), and the
Adam update of all the net's parameters (distnet's ``Adam`` against Keras's
``Adam.apply_gradients``), so that each gap of compare.py has a name.  The
convolutions run with each algorithm that applies; ``auto`` marks the one
``conv_algorithm="auto"`` would pick (the fastest here).

The upstream gradient is injected by a head op that costs nothing, so only
the measured op and the autodiff machinery are timed.  BLAS threads are set
explicitly with threadpoolctl (default 1: the figures are per core).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import distnet
from distnet import nn
from distnet.autodiff import Op

sys.path.insert(0, str(Path(__file__).resolve().parent))   # compare.py: the nets' shapes


class InjectGrad(Op):
    """Head op: a scalar whose backward hands a fixed upstream gradient to its input."""

    __slots__ = ("g",)

    def __init__(self, g: np.ndarray):
        self.g = g

    def forward(self, y: np.ndarray) -> np.ndarray:
        return np.zeros((), dtype=y.dtype)

    def backward(self, g, needs):
        return (self.g,)


def paired_times_ms(ours: Callable[[], object], bare: Callable[[], object], repeats: int,
                    warmup: int = 2) -> tuple[list[float], list[float]]:
    """Times of two functions in ms, run alternately so that load changes hit both alike."""
    for _ in range(warmup):
        ours()
        bare()
    t_ours, t_bare = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        bare()
        t2 = time.perf_counter()
        t_ours.append((t1 - t0) * 1e3)
        t_bare.append((t2 - t1) * 1e3)
    return t_ours, t_bare


def im2col(x: np.ndarray, k: int, pad: int) -> np.ndarray:
    """Baseline's ready-made column matrix (stride 1), built once outside the timing."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, w, c = x.shape
    cols = np.empty((n, h, w, k, k, c), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j, :] = xp[:, i:i + h, j:j + w, :]
    return cols.reshape(n * h * w, k * k * c)


def conv_case(rng, n, hw, cin, cout, k, need_dx, repeats):
    x_np = rng.standard_normal((n, hw, hw, cin)).astype(np.float32)
    w_np = (rng.standard_normal((k, k, cin, cout)) * 0.1).astype(np.float32)
    g = rng.standard_normal((n, hw, hw, cout)).astype(np.float32)
    x = distnet.Variable(x_np, name="x") if need_dx else distnet.constant(x_np)
    w = distnet.Variable(w_np, name="w")
    wrt = [x, w] if need_dx else [w]

    def distnet_path():
        y = nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")
        return distnet.gradients(InjectGrad.apply(y, g=g), wrt)

    cols = im2col(x_np, k, k // 2)
    w2d = w_np.reshape(-1, cout)
    g2d = g.reshape(-1, cout)

    def bare():
        out = cols @ w2d
        dw = cols.T @ g2d
        dx = g2d @ w2d.T if need_dx else None
        return out, dw, dx

    # The two paths must compute the same thing.
    ref_out, ref_dw, _ = bare()
    got = distnet_path()
    np.testing.assert_allclose(got[-1].reshape(ref_dw.shape), ref_dw, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(nn.conv2d(x, w, 1, "SAME").numpy().reshape(ref_out.shape), ref_out,
                               rtol=2e-3, atol=2e-3)
    flops = 2 * cols.shape[0] * cols.shape[1] * cout * (3 if need_dx else 2)
    return (*paired_times_ms(distnet_path, bare, repeats), flops)


def im2col_case(rng, n, hw, cin, cout, k, repeats):
    """distnet's im2col copy of the padded input against the forward GEMM it feeds."""
    from distnet.nn.conv import _im2col

    x_np = rng.standard_normal((n, hw, hw, cin)).astype(np.float32)
    w2d = (rng.standard_normal((k * k * cin, cout)) * 0.1).astype(np.float32)
    pad = k // 2
    xp = np.ascontiguousarray(np.pad(x_np, ((0, 0), (pad, pad), (pad, pad), (0, 0))))
    cols = im2col(x_np, k, pad)

    def copy():
        return _im2col(xp, (k, k), (hw, hw), (1, 1), (1, 1))

    def gemm():
        return cols @ w2d

    np.testing.assert_array_equal(copy(), cols)
    return (*paired_times_ms(copy, gemm, repeats), 2 * cols.shape[0] * cols.shape[1] * cout)


def dense_case(rng, repeats):
    a_np = rng.standard_normal((100, 6272)).astype(np.float32)
    w_np = (rng.standard_normal((6272, 1024)) * 0.01).astype(np.float32)
    g = rng.standard_normal((100, 1024)).astype(np.float32)
    a, w = distnet.Variable(a_np, name="a"), distnet.Variable(w_np, name="w")

    def distnet_path():
        y = distnet.matmul(a, w)
        return distnet.gradients(InjectGrad.apply(y, g=g), [a, w])

    def bare():
        return a_np @ w_np, g @ w_np.T, a_np.T @ g

    _, ref_da, ref_dw = bare()
    got_da, got_dw = distnet_path()
    np.testing.assert_allclose(got_dw, ref_dw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got_da, ref_da, rtol=1e-4, atol=1e-3)
    flops = 3 * 2 * 100 * 6272 * 1024
    return (*paired_times_ms(distnet_path, bare, repeats), flops)


def tensorflow_conv_ms(rng, n: int, hw: int, cin: int, cout: int, k: int, repeats: int,
                       threads: int) -> float | None:
    """Minimum ms of TensorFlow's conv2d of the same shapes, forward and both gradients
    (``tf.function`` + ``GradientTape``, ``threads`` intra-op threads), or None without
    TensorFlow (optional: compare.py's separate interpreter has it)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return None
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    x = tf.constant(rng.standard_normal((n, hw, hw, cin), dtype=np.float32))
    w = tf.constant(rng.standard_normal((k, k, cin, cout), dtype=np.float32))
    g = tf.constant(rng.standard_normal((n, hw, hw, cout), dtype=np.float32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.nn.conv2d(x, w, 1, "SAME")
        # y is returned too: graph mode prunes an op whose output nothing uses, and the
        # gradients read only x, w and g, so without it the forward convolution never runs.
        return y, tape.gradient(y, [x, w], output_gradients=g)

    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times)


def _min_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best * 1e3


def net_ops(model: str, repeats: int, threads: int, only: str | None = None,
            clock=time.perf_counter) -> list[tuple[str, dict, float | None]]:
    """``[(label, {distnet variant: min ms}, TensorFlow min ms or None)]`` for each op of ``model``'s step
    (``only``: just the ops whose label contains it; ``clock``: wall or the process's CPU time)."""
    import importlib.util

    import compare
    from distnet.nn.conv import ALGORITHMS, algorithm_applies

    tf = None
    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    n, (h, w, c) = 100, compare.IMAGE
    rows: list[tuple[str, dict, float | None]] = []
    params: list[tuple] = []
    first = True

    def both(label, ours: dict, tf_fn, args):
        """Time distnet's variants and TensorFlow's ``tf_fn(*args)`` (forward + gradients w.r.t. all args)."""
        if only and only not in label:
            return
        times = {k: _min_ms(f, repeats, clock) for k, f in ours.items()}
        tf_ms = None
        if tf is not None:
            targs = [tf.constant(a) for a in args]

            @tf.function
            def step():
                with tf.GradientTape() as tape:
                    tape.watch(targs)
                    y = tf_fn(*targs)
                return y, tape.gradient(y, targs, output_gradients=tf.ones_like(y))
            tf_ms = _min_ms(step, repeats, clock)
        rows.append((label, times, tf_ms))

    def dn(fn, args, wrt):
        """distnet's forward + gradients w.r.t. the arguments listed in ``wrt``."""
        tensors = [distnet.Variable(a, name=f"a{i}") if i in wrt else distnet.constant(a) for i, a in enumerate(args)]

        def run():
            y = fn(*tensors)
            return distnet.gradients(InjectGrad.apply(y, g=np.ones(y.shape, y.dtype)), [tensors[i] for i in wrt])
        return run

    for layer in compare.layer_plan(model):
        if layer[0] == "conv":
            f = layer[1]
            x = rng.standard_normal((n, h, w, c)).astype(np.float32)
            k = (rng.standard_normal((5, 5, c, f)) * 0.1).astype(np.float32)
            wrt = (1,) if first else (0, 1)
            ours = {}
            for algo in ALGORITHMS:
                if algorithm_applies(algo, (5, 5), (1, 1), (1, 1)):
                    ours[algo] = dn(lambda a, b, algo=algo: nn.conv2d(a, b, 1, "SAME", algorithm=algo), [x, k], wrt)
            tf_fn = ((lambda a, b: tf.nn.conv2d(tf.stop_gradient(a), b, 1, "SAME")) if first
                     else (lambda a, b: tf.nn.conv2d(a, b, 1, "SAME")))
            both(f"conv {h}x{w}x{c} -> {f}, 5x5 SAME{', dW' if first else ', dW+dX'}", ours, tf_fn, [x, k])
            y = rng.standard_normal((n, h, w, f)).astype(np.float32)
            b = rng.standard_normal(f).astype(np.float32)
            both(f"bias_add + relu {h}x{w}x{f}", {"": dn(nn.bias_add_relu, [y, b], (0, 1))},   # as the layers run it
                 lambda a, bb: tf.nn.relu(tf.nn.bias_add(a, bb)), [y, b])
            params += [(5, 5, c, f), (f,)]
            c, first = f, False
        elif layer[0] == "pool":
            x = rng.standard_normal((n, h, w, c)).astype(np.float32)
            both(f"max_pool 2x2 {h}x{w}x{c}", {"": dn(lambda a: nn.max_pool(a, 2, 2, "VALID"), [x], (0,))},
                 lambda a: tf.nn.max_pool2d(a, 2, 2, "VALID"), [x])
            h, w = h // 2, w // 2
        elif layer[0] == "flatten":
            c, h, w = h * w * c, 1, 1
        else:
            units, relu = layer[1], layer[2]
            x = rng.standard_normal((n, c)).astype(np.float32)
            k = (rng.standard_normal((c, units)) * 0.01).astype(np.float32)
            b = rng.standard_normal(units).astype(np.float32)
            act_tf = None if tf is None else tf.nn.relu if relu else tf.identity   # None: TF not installed
            both(f"dense {c} -> {units}{' + relu' if relu else ''}, dX+dW+db",
                 {"": dn(lambda a, kk, bb: (nn.bias_add_relu if relu else nn.bias_add)(distnet.matmul(a, kk), bb),
                         [x, k, b], (0, 1, 2))},
                 lambda a, kk, bb: act_tf(tf.nn.bias_add(tf.matmul(a, kk), bb)), [x, k, b])
            params += [(c, units), (units,)]
            c = units
    logits = rng.standard_normal((n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    both("sparse softmax cross-entropy (mean)",
         {"": dn(lambda a: distnet.reduce_mean(nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=a)),
                 [logits], (0,))},
         lambda a: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=a)), [logits])
    if only and only not in "Adam update":
        return rows
    # Adam over every parameter of the net.
    values = [(rng.standard_normal(s) * 0.01).astype(np.float32) for s in params]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in params]
    variables = [distnet.Variable(v, name=f"p{i}") for i, v in enumerate(values)]
    opt = distnet.optimizers.Adam(1e-4)
    pairs = list(zip(grads, variables))
    ours = {"": lambda: opt.apply_gradients(pairs)}
    times = {k: _min_ms(fn, repeats, clock) for k, fn in ours.items()}
    tf_ms = None
    if tf is not None:
        tvars = [tf.Variable(v) for v in values]
        tgrads = [tf.constant(g) for g in grads]
        topt = tf.keras.optimizers.Adam(1e-4)

        @tf.function
        def tf_update():
            topt.apply_gradients(zip(tgrads, tvars))
        tf_ms = _min_ms(tf_update, repeats, clock)
    rows.append((f"Adam update, {sum(int(np.prod(s)) for s in params):,} parameters", times, tf_ms))
    return rows


def print_net_ops(model: str, repeats: int, threads: int, only: str | None = None, clock: str = "wall") -> None:
    rows = net_ops(model, repeats, threads, only, time.process_time if clock == "cpu" else time.perf_counter)
    print(f"{model} net, batch 100, float32, {threads} thread(s); minimum of {repeats} ms ({clock} clock), "
          "forward + backward")
    print(f"{'op':52s} {'distnet':>16s} {'TensorFlow':>11s} {'ratio':>6s}")
    tot_dn = tot_tf = 0.0
    for label, times, tf_ms in rows:
        best = min(times, key=times.get)
        shown = "  ".join(f"{k or ''}{' ' if k else ''}{v:.2f}" for k, v in times.items())
        tot_dn += times[best]
        tot_tf += tf_ms or 0.0
        ratio = f"{times[best] / tf_ms:6.2f}" if tf_ms else "     -"
        auto = " (auto: " + best + ")" if len(times) > 1 else ""
        print(f"{label:52s} {shown:>16s} {tf_ms if tf_ms is not None else float('nan'):11.2f} {ratio}{auto}")
    print(f"{'sum (fastest distnet variant of each op)':52s} {tot_dn:16.2f} {tot_tf:11.2f} "
          f"{tot_dn / tot_tf if tot_tf else float('nan'):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per case (median)")
    parser.add_argument("--net", choices=("reference", "twoconv"),
                        help="per-op table of that net's step, distnet beside TensorFlow (module doc)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="with --net: wall-clock time, or the process's CPU time (on a machine loaded "
                             "beyond its cores, wall time counts the waits for a core; CPU time counts "
                             "every thread of the process, TensorFlow's pool threads too)")
    parser.add_argument("--only", default=None, help="with --net: only the ops whose label contains this "
                        "(e.g. max_pool, relu, conv)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # As a training process (distnet.distributed.init): freed large blocks stay in the heap,
    # so a step's arrays are not page-faulted in afresh every time.
    from distnet.distributed.process import tune_malloc

    tune_malloc()
    if args.net:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            print_net_ops(args.net, args.repeats, args.threads, args.only, args.clock)
        return
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = [f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                for i in threadpool_info() if i["user_api"] == "blas"]
        print(f"numpy {np.__version__}; BLAS: {', '.join(blas) or 'none found'}; repeats {args.repeats}")
        cases = [
            ("conv1     100x28x28x1 -> 32, 5x5 SAME, dW", conv_case(rng, 100, 28, 1, 32, 5, False, args.repeats)),
            ("conv1+dx  100x28x28x1 -> 32, 5x5 SAME, dW+dX", conv_case(rng, 100, 28, 1, 32, 5, True, args.repeats)),
            ("conv2     100x14x14x32 -> 64, 5x5 SAME, dW+dX", conv_case(rng, 100, 14, 32, 64, 5, True, args.repeats)),
            ("dense     100x6272 @ 6272x1024, dA+dW", dense_case(rng, args.repeats)),
            # the copy that feeds the GEMMs, against the forward GEMM alone
            ("im2col1   copy vs its forward GEMM", im2col_case(rng, 100, 28, 1, 32, 5, args.repeats)),
            ("im2col2   copy vs its forward GEMM", im2col_case(rng, 100, 14, 32, 64, 5, args.repeats)),
        ]
    # The median is the typical time; the minimum is the least disturbed by other processes.
    print(f"{'case':48s} {'median ms: distnet':>18s} {'bare':>7s} {'ratio':>6s}   "
          f"{'min ms: distnet':>15s} {'bare':>7s} {'ratio':>6s} {'GFLOP/s':>8s}")
    for label, (ours, bare, flops) in cases:
        mo, mb = statistics.median(ours), statistics.median(bare)
        lo, lb = min(ours), min(bare)
        print(f"{label:48s} {mo:18.2f} {mb:7.2f} {mo / mb:6.2f}   {lo:15.2f} {lb:7.2f} {lo / lb:6.2f} "
              f"{flops / lo / 1e6:8.1f}")
    # TensorFlow's convolution of conv2's shapes, when this interpreter has it.
    tf_ms = tensorflow_conv_ms(rng, 100, 14, 32, 64, 5, args.repeats, args.threads)
    if tf_ms is None:
        print("tensorflow not installed here: its conv2 is not timed")
    else:
        flops = 3 * 2 * 100 * 14 * 14 * 64 * 5 * 5 * 32
        print(f"{'conv2 in TensorFlow (tf.nn.conv2d), dW+dX':48s} {'':18s} {'':7s} {'':6s}   {tf_ms:15.2f} "
              f"{'':7s} {'':6s} {flops / tf_ms / 1e6:8.1f}")


if __name__ == "__main__":
    main()
