"""Which convolution algorithm each layer runs: chosen once, by measuring.

``conv2d`` computes one convolution with any of :data:`distnet.nn.conv.ALGORITHMS`
(im2col + GEMM, FFT, Winograd); which is fastest depends on the shape — the
FFT wins on 5x5 kernels over deep channels, GEMM on a single input channel.
As cuDNN's benchmark mode, :func:`choose_conv_algorithms` times every
algorithm that applies to each convolution layer of a model once, at
start-up, on random data of the layer's shape at the rank's batch, and sets
the fastest on the layer (``layer.algorithm``); layers of equal shapes share
one measurement.

The result is a *plan*, ``{layer name: algorithm}``, and it belongs to the
run, not to the shapes:

* Ranks must run the same arithmetic to stay bitwise equal, and timings
  differ from rank to rank: only rank 0 measures, and every rank takes rank
  0's plan (one broadcast).  Every rank must call it at the same point (the
  Trainer does, while it is built).
* The plan is stored in every checkpoint (``/state@conv_algorithms``) and a
  resumed run takes it from there (:func:`apply_plan`) instead of measuring
  again, also on another number of ranks: the plan is per layer, so a run
  resumed on N ranks computes with the algorithms its first attempt chose
  at its own per-rank batch (which may no longer be the fastest at the new
  batch; the arithmetic is what matters for the bits).  A checkpoint written
  before plans were stored (format 1 or 2) resumes with ``"gemm"``, which is
  what such a run computed unless an algorithm was forced.
* Layers too small for the choice to matter (under :data:`MEASURE_MIN_FLOP`
  of forward work) keep ``"gemm"`` without being measured, and another
  algorithm must beat GEMM by :data:`MARGIN` to be taken: a near tie decided
  by timing noise would make two fresh runs of the same job differ in their
  last bits for no gain.
* The deterministic step (results independent of the number of ranks and of
  the machine's load) must not depend on a timing at all: it uses
  :func:`fixed_plan` — the checkpoint's plan on resume, else ``"gemm"``.

The Trainer's default (``conv_algorithm`` unset, None) is ``"auto"``, and
:func:`fixed_plan` in the deterministic step, which refuses an explicit
``"auto"`` (distnet/training/deterministic.py).

Modes: ``"auto"`` (measure; the plan from the checkpoint on resume),
``"gemm"`` (today's arithmetic, no measurement), or one algorithm forced on
every layer that it can compute (``"fft"``, ``"winograd"``; the other layers
keep ``"gemm"``, as the returned plan says) — for debugging and comparing; a
forced mode also wins over a checkpoint's plan.  The algorithms agree up to
float rounding, so a run's last bits depend on its plan; two fresh ``"auto"``
runs of the same job on different machines (or at another per-rank batch)
may choose differently.  Set ``"gemm"`` to make fresh runs independent of
any measurement.
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
#: Forward floating-point operations (2 N Ho Wo kh kw C O at the rank's batch) below which ``"auto"``
#: keeps ``"gemm"`` without measuring: such a layer costs a few milliseconds per step whatever runs it.
MEASURE_MIN_FLOP = 1e8
#: How much faster than GEMM another algorithm must measure to be chosen (near ties stay ``"gemm"``).
MARGIN = 1.2


def check_mode(mode: Any) -> str | None:
    """``mode`` if it is one of :data:`MODES` or None (unset: the default, module doc), else a clear error."""
    if mode is not None and mode not in MODES:
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
    """Seconds of one forward + backward pass of every algorithm that applies (minimum of ``repeats``
    rounds, the algorithms taking turns in each, after one untimed round), on random data of these shapes.

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
    applies = [a for a in ALGORITHMS if algorithm_applies(a, w_shape[:2], tuple(strides), (1, 1))]
    times = {a: float("inf") for a in applies}
    # Rounds in turn: a burst of load on the shared machine falls on every algorithm alike.
    for i in range(repeats + 1):
        for algorithm in applies:
            t0 = time.perf_counter()
            op = _op(algorithm, geometry)
            op.forward(x, w)
            op.backward(g, (input_grad, True))
            if i:   # the first round warms caches and the allocator
                times[algorithm] = min(times[algorithm], time.perf_counter() - t0)
    return times


def _conv_layers(model) -> list:
    from distnet.layers.conv2d import Conv2D as Conv2DLayer

    return [layer for layer in getattr(model, "layers", ()) if isinstance(layer, Conv2DLayer)]


def forward_flop(x_shape: tuple, w_shape: tuple, strides: tuple[int, int], padding: str) -> float:
    """``2 N Ho Wo kh kw C O``: the multiply-adds of the direct convolution, counted twice."""
    ho = axis_geometry(x_shape[1], w_shape[0], strides[0], 1, padding, "height", "conv2d").out
    wo = axis_geometry(x_shape[2], w_shape[1], strides[1], 1, padding, "width", "conv2d").out
    return 2.0 * x_shape[0] * ho * wo * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3]


def pick(times: dict[str, float]) -> str:
    """The algorithm to run from measured ``times``: the fastest, if it beats GEMM by :data:`MARGIN`."""
    best = min(times, key=times.get)
    if "gemm" in times and best != "gemm" and times[best] * MARGIN > times["gemm"]:
        return "gemm"
    return best


def apply_plan(model, plan: dict[str, str]) -> dict[str, str]:
    """Set every ``Conv2D`` layer of ``model`` to its algorithm in ``plan`` (``"gemm"`` where the plan
    has no entry, e.g. a checkpoint written before plans were stored); return the full plan.

    Raises:
      InvalidArgumentError: the plan names an unknown algorithm, or one that cannot compute its layer
        (e.g. FFT on a strided layer), or a layer the model does not have.
    """
    layers = _conv_layers(model)
    names = {layer.name for layer in layers}
    unknown = sorted(set(plan) - names)
    if unknown:
        raise InvalidArgumentError(f"conv_algorithms: Expect: convolution layers of the model ({sorted(names)}) "
                                   f"Actual: {unknown} (the plan belongs to another model)")
    out = {}
    for layer in layers:
        algorithm = plan.get(layer.name, "gemm")
        if algorithm not in ALGORITHMS or not algorithm_applies(algorithm, layer.kernel_size, layer.strides, (1, 1)):
            raise InvalidArgumentError(
                f"conv_algorithms[{layer.name!r}]: Expect: one of {', '.join(map(repr, ALGORITHMS))} that "
                f"computes a {layer.kernel_size} kernel at strides {layer.strides} Actual: {algorithm!r}")
        layer.algorithm = out[layer.name] = algorithm
    return out


def fixed_plan(model, stored: dict[str, str] | None = None) -> dict[str, str]:
    """The plan of a run whose bits must not depend on a timing (the deterministic step): ``stored``
    (a checkpoint's plan, on resume) or else ``"gemm"`` on every layer; set on the layers and returned.

    The same for any number of ranks and any load; no collective (every rank computes the same).
    """
    return apply_plan(model, dict(stored or {}))


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
                padding = layer.padding.upper()
                input_grad = getattr(layer, "index", 1) != 0
                key = (x_shape, w_shape, layer.strides, padding, np.dtype(layer.dtype).str, input_grad)
                if key not in measured:
                    if forward_flop(x_shape, w_shape, layer.strides, padding) < MEASURE_MIN_FLOP:
                        measured[key] = "gemm"
                    else:
                        measured[key] = pick(time_algorithms(x_shape, w_shape, layer.strides, padding,
                                                             layer.dtype, input_grad=input_grad))
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
