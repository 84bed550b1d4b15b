"""Which convolution algorithm each layer runs: chosen once, by measuring.

``conv2d`` computes one convolution with any of :data:`distnet.nn.conv.ALGORITHMS`
(im2col + GEMM, FFT, Winograd); which is fastest depends on the shape — the
FFT wins on 5x5 kernels over deep channels, GEMM on a single input channel.
As cuDNN's benchmark mode, :func:`choose_conv_algorithms` times every
algorithm that applies to each convolution layer of a model once, at
start-up, on random data of the layer's shape at the rank's batch, and sets
the fastest on the layer (``layer.algorithm``); layers of equal shapes share
one measurement.

Ranks must run the same arithmetic to stay bitwise equal, and timings differ
from rank to rank: only rank 0 measures, and every rank takes rank 0's choice
(one broadcast).  Every rank must call it at the same point (the Trainer does,
while it is built).

Modes: ``"gemm"`` (the default everywhere: today's arithmetic, no
measurement), ``"auto"`` (measure), or one algorithm forced on every layer
that it can compute (``"fft"``, ``"winograd"``; the other layers keep
``"gemm"``, as the returned plan says) — for debugging and for comparing.
The algorithms agree up to float rounding, so a run's numbers depend on the
mode; ``"auto"`` may choose differently at another batch size or world
size, hence it is not the default.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from distnet.errors import InvalidArgumentError
from distnet.nn._spatial import axis_geometry
from distnet.nn.conv import ALGORITHMS, Conv2D, algorithm_applies

#: The modes of :func:`choose_conv_algorithms`.
MODES = ("gemm", "auto", "fft", "winograd")


def check_mode(mode: Any) -> str:
    """``mode`` if it is one of :data:`MODES`, else a clear error."""
    if mode not in MODES:
        raise InvalidArgumentError(
            f"conv_algorithm: Expect: one of {', '.join(map(repr, MODES))} Actual: {mode!r}")
    return mode


def _op(algorithm: str, geometry: dict):
    if algorithm == "fft":
        from distnet.nn.conv_fft import Conv2DFFT

        return Conv2DFFT(geometry["rows"], geometry["cols_axis"])
    if algorithm == "winograd":
        from distnet.nn.conv_winograd import Conv2DWinograd

        return Conv2DWinograd(geometry["rows"], geometry["cols_axis"])
    return Conv2D(geometry["strides"], (1, 1), geometry["rows"], geometry["cols_axis"])


def time_algorithms(x_shape: tuple, w_shape: tuple, strides: tuple[int, int], padding: str, dtype=np.float32,
                    input_grad: bool = True, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Seconds of one forward + backward pass of every algorithm that applies (minimum of ``repeats``,
    after one untimed pass), on random data of these shapes.

    Args:
      x_shape: ``[N, H, W, C]``; w_shape: ``[kh, kw, C, O]``.
      strides: ``(sh, sw)``; padding: ``'SAME'`` or ``'VALID'`` (TF's spelling).
      input_grad: whether the backward pass computes the input's gradient too
        (not for a layer reading the data).
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    geometry = {"strides": tuple(strides),
                "rows": axis_geometry(x_shape[1], w_shape[0], strides[0], 1, padding, "height", "conv2d"),
                "cols_axis": axis_geometry(x_shape[2], w_shape[1], strides[1], 1, padding, "width", "conv2d")}
    g = rng.standard_normal((x_shape[0], geometry["rows"].out, geometry["cols_axis"].out,
                             w_shape[3])).astype(dtype)
    times = {}
    for algorithm in ALGORITHMS:
        if not algorithm_applies(algorithm, w_shape[:2], tuple(strides), (1, 1)):
            continue
        best = float("inf")
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            op = _op(algorithm, geometry)
            op.forward(x, w)
            op.backward(g, (input_grad, True))
            if i:   # the first pass warms caches and the allocator
                best = min(best, time.perf_counter() - t0)
        times[algorithm] = best
    return times


def _conv_layers(model) -> list:
    from distnet.layers.conv2d import Conv2D as Conv2DLayer

    return [layer for layer in getattr(model, "layers", ()) if isinstance(layer, Conv2DLayer)]


def choose_conv_algorithms(model, batch: int, comm, mode: str = "auto") -> dict[str, str]:
    """Set ``layer.algorithm`` on every ``Conv2D`` layer of the built ``model``; return ``{layer name: algorithm}``.

    Args:
      model: a built model with ``layers`` (e.g. :class:`distnet.Sequential`).
      batch: the samples per forward pass on this rank (the measured batch).
      comm: the communicator; collective — every rank calls this, rank 0 decides.
      mode: one of :data:`MODES` (module doc).
    """
    check_mode(mode)
    layers = _conv_layers(model)
    if mode != "auto":
        plan = {}
        for layer in layers:
            fits = algorithm_applies(mode, layer.kernel_size, layer.strides, (1, 1))
            layer.algorithm = plan[layer.name] = mode if fits else "gemm"
        return plan
    plan, error = {}, None
    if comm.rank == 0:
        measured: dict[tuple, str] = {}
        try:
            for layer in layers:
                x_shape = (int(batch),) + tuple(layer.input_shape)
                w_shape = tuple(layer.kernel.shape)
                key = (x_shape, w_shape, layer.strides, layer.padding, np.dtype(layer.dtype).str,
                       getattr(layer, "index", 1) != 0)
                if key not in measured:
                    times = time_algorithms(x_shape, w_shape, layer.strides, layer.padding.upper(),
                                            layer.dtype, input_grad=getattr(layer, "index", 1) != 0)
                    measured[key] = min(times, key=times.get)
                plan[layer.name] = measured[key]
        except Exception as exc:   # every rank waits for the plan: tell them, then fail on each
            error = f"choosing convolution algorithms failed on rank 0: {type(exc).__name__}: {exc}"
    if comm.size > 1:
        plan, error = comm.bcast_object((plan, error), root=0)
    if error is not None:
        raise RuntimeError(error)
    for layer in layers:
        layer.algorithm = plan[layer.name]
    return plan
