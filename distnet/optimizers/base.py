"""The ``Optimizer`` base class.

An optimizer turns ``(gradient, variable)`` pairs into in-place updates of
``variable.data``.  Its state is a set of named *slots* (``"m"``, ``"v"``,
``"accumulator"``, ...) holding one array per variable, keyed by the
variable's name (checkpoints store exactly these), plus ``iterations``, the global step.

Conventions (TF1):

* ``apply_gradients`` increments ``iterations`` once per call; the learning
  rate (a float or a schedule ``step -> float``) is resolved once per call
  with the step *before* the increment.
* Updates run in the variable's dtype, in place (numpy ``out=``) on the
  variable and slot arrays, over cache-sized chunks (``chunk_size``
  elements, default 32768) of the flattened arrays: each chunk's passes stay
  in the CPU cache instead of streaming the whole array through memory once
  per operation.  The element-wise arithmetic is the same, so the result is
  the same as a whole-array update.  One chunk-sized scratch buffer per
  variable (and thread) is reused every step (no parameter-sized temporaries).
  With several BLAS threads in the process, runs of chunks are updated on
  that many threads (:mod:`distnet.distributed.chunk_threads`); every element
  takes the same operations, so the result is bitwise the one-thread result.
* ``clipnorm`` / ``global_clipnorm`` are a transform applied before the
  update (:class:`distnet.optimizers.clipping.Clip`): ``apply_gradients``
  clips then calls ``apply_update`` (the rule alone); a training strategy
  clips the reduced gradient itself and calls ``apply_update``.
* A ``None`` gradient leaves its variable (and its slots) untouched, as in TF.
* Every updated variable's version is incremented; ``compute_gradients`` (so
  ``minimize``) refuses a loss computed before the last update of one of its
  variables (:func:`distnet.tensor.check_not_stale`): such a loss holds the
  old weights' values, and its gradient would be the old one.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence, Union

import numpy as np

from distnet import jit
from distnet.autodiff import gradients
from distnet.distributed.chunk_threads import ChunkThreads
from distnet.errors import CheckpointError, DTypeError, InvalidArgumentError, ShapeError
from distnet.optimizers.clipping import Clip, clip_by_global_norm, global_norm  # noqa: F401 (public here too)
from distnet.registry import FLOAT, Option
from distnet.model.schedules import LearningRate, resolve
from distnet.tensor import Tensor, Variable


#: The job-file key every optimizer takes (``optimizer.clip_norm``).
CLIP_NORM = Option("clip_norm", FLOAT, None, "all gradients of a step are rescaled together so that their "
                   "global norm is at most this (TF1's `clip_by_global_norm`)", low=0.0, low_open=True,
                   arg="global_clipnorm", group="common")


def check_hyper(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """Validate a float hyper-parameter against ``[low, high]`` (open ends on request)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidArgumentError(f"{name}: Expect: a number Actual: {type(value).__name__} {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        want = f"in {lo}, {hi}" if low is not None and high is not None else (
            f"{'>' if low_open else '>='} {low:g}" if low is not None else f"{'<' if high_open else '<='} {high:g}")
        raise InvalidArgumentError(f"{name}: Expect: {want} Actual: {value!r}")
    return v


class Optimizer:
    """Base class; subclasses set ``slot_names`` and implement :meth:`_update`.

    Args:
      learning_rate: a float > 0 or a schedule ``step -> float``.
      clipnorm: if set, each gradient is rescaled so its own L2 norm is at
        most this (Keras' ``clipnorm``).
      global_clipnorm: if set, all gradients of a step are rescaled together
        so their global norm is at most this (TF1's ``clip_by_global_norm``,
        Keras' ``global_clipnorm``).
      name: used in error messages.
    """

    slot_names: tuple[str, ...] = ()
    #: elements per in-place pass of the update: a chunk of every array the update
    #: reads stays in the CPU cache (benchmarks/optimizer_update.py; figures in benchmarks/README.md).
    chunk_size: int = 32768
    #: whether this optimizer's compiled kernel has run (then every array takes it: see _update)
    _kernel_loaded: bool = False

    def __init__(self, learning_rate: LearningRate, *, clipnorm: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None):
        if callable(learning_rate):
            self.learning_rate = learning_rate
        else:
            self.learning_rate = check_hyper("learning_rate", learning_rate, low=0.0, low_open=True)
        self.clipnorm = None if clipnorm is None else check_hyper("clipnorm", clipnorm, low=0.0, low_open=True)
        self.global_clipnorm = None if global_clipnorm is None else check_hyper(
            "global_clipnorm", global_clipnorm, low=0.0, low_open=True)
        self.name = name or type(self).__name__
        self.iterations = 0
        self._slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slot_names}
        self._scratch: dict[str, np.ndarray] = {}
        self._vars: dict[str, Variable] = {}
        # The update's chunks on this rank's BLAS threads (distnet/distributed/chunk_threads.py).
        self._chunk_threads = ChunkThreads("blas")

    # -- slots ------------------------------------------------------------
    def _init_slot(self, slot: str, var: Variable) -> np.ndarray:
        """Initial value of ``slot`` for ``var`` (zeros unless overridden)."""
        return np.zeros(var.shape, dtype=var.dtype)

    def _check_var(self, var) -> None:
        if not isinstance(var, Variable):
            raise DTypeError(f"{self.name}: Expect: a Variable to update Actual: {type(var).__name__}")
        if var.dtype.kind != "f":
            raise DTypeError(f"{self.name}: variable {var.name!r} has dtype {var.dtype}; Expect: a floating dtype")

    def build(self, var_list: Sequence[Variable]) -> None:
        """Create the slots of every variable now (e.g. before :meth:`load_state_dict`).

        Variables already known keep their slots.  Names must be unique.
        """
        var_list = list(var_list)
        names = [getattr(v, "name", None) for v in var_list]
        if len(set(names)) != len(names):
            dups = sorted({n for n in names if names.count(n) > 1})
            raise InvalidArgumentError(f"{self.name}: variable names must be unique. Found duplicates: {dups}")
        for var, name in zip(var_list, names):
            known = self._vars.get(name)
            if known is var:   # checked when its slots were made (every step passes here)
                continue
            self._check_var(var)
            if known is not None:
                raise InvalidArgumentError(
                    f"{self.name}: a different variable named {var.name!r} already has slots; "
                    "variable names must be unique")
            self._vars[var.name] = var
            for s in self.slot_names:
                self._slots[s][var.name] = np.ascontiguousarray(self._init_slot(s, var))
            self._scratch[var.name] = np.empty(min(int(np.prod(var.shape, dtype=np.int64)), self.chunk_size),
                                               dtype=var.dtype)

    def get_slot(self, var: Variable, name: str) -> np.ndarray:
        """The slot array ``name`` of ``var`` (updated in place by every step)."""
        if name not in self._slots:
            raise InvalidArgumentError(f"{self.name} has no slot {name!r}; its slots are {list(self.slot_names)}")
        vname = var.name if isinstance(var, Tensor) else str(var)
        try:
            return self._slots[name][vname]
        except KeyError:
            raise InvalidArgumentError(
                f"{self.name}: no slot {name!r} for variable {vname!r}; call build(var_list) or apply a step first"
            ) from None

    # -- the step ---------------------------------------------------------
    def compute_gradients(self, loss: Union[Tensor, Callable[[], Tensor]],
                          var_list: Sequence[Variable]) -> list[tuple[np.ndarray, Variable]]:
        """Gradients of a scalar loss (or of ``loss()`` if callable) w.r.t. ``var_list``.

        Returns:
          ``[(grad ndarray, var)]`` in the order of ``var_list``.
        """
        if callable(loss) and not isinstance(loss, Tensor):
            loss = loss()
        if not isinstance(loss, Tensor):
            raise DTypeError(f"{self.name}.compute_gradients: loss: Expect: a Tensor or a callable returning one "
                             f"Actual: {type(loss).__name__}")
        var_list = list(var_list)
        if not var_list:
            raise InvalidArgumentError(f"{self.name}.compute_gradients: var_list is empty")
        for v in var_list:
            self._check_var(v)
        return list(zip(gradients(loss, var_list), var_list))   # refuses a stale loss

    def _learning_rate(self) -> float:
        return resolve(self.learning_rate, self.iterations)

    def apply_gradients(self, grads_and_vars: Iterable[tuple[np.ndarray | None, Variable]]) -> int:
        """Clip the gradients as ``clipnorm`` / ``global_clipnorm`` ask, apply one
        update to each variable and increment ``iterations``.

        Args:
          grads_and_vars: ``(gradient ndarray or None, Variable)`` pairs (not modified).

        Returns:
          The new value of ``iterations``.
        """
        pairs = self._checked_pairs(grads_and_vars)
        clip = Clip.of(self)
        if clip is not None:
            pairs = list(zip(clip([g for g, _ in pairs]), [v for _, v in pairs]))
        return self._apply(pairs)

    def apply_update(self, grads_and_vars: Iterable[tuple[np.ndarray | None, Variable]]) -> int:
        """:meth:`apply_gradients` without the clipping: the update rule alone, on
        gradients already transformed (a training strategy clips the reduced
        gradients itself, with the norms of the whole gradient:
        :meth:`distnet.distributed.strategies.base.Strategy.clip`)."""
        return self._apply(self._checked_pairs(grads_and_vars))

    def _checked_pairs(self, grads_and_vars) -> list:
        pairs = []
        for i, item in enumerate(grads_and_vars):
            try:
                g, v = item
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"{self.name}.apply_gradients: item {i}: Expect: a (gradient, variable) pair Actual: {item!r}") from None
            self._check_var(v)
            if g is not None:
                if isinstance(g, Tensor):
                    g = g.data
                g = np.asarray(g)
                if g.shape != v.shape:
                    raise ShapeError(f"{self.name}: gradient of {v.name!r} has the wrong shape; "
                                     f"Expect: {v.shape} Actual: {g.shape}")
                if g.dtype.kind not in "fiu":
                    raise DTypeError(f"{self.name}: gradient of {v.name!r} has dtype {g.dtype}; Expect: a floating dtype")
            pairs.append((g, v))
        self.build([v for _, v in pairs])   # the names unique, slots for new variables
        return pairs

    def _apply(self, pairs: list) -> int:
        lr = self._learning_rate()
        t = self.iterations + 1
        for g, v in pairs:
            if g is None:
                continue
            v.mark_written()
            self._update(v, g, lr, t, self._scratch[v.name])
        self.iterations = t
        return t

    def _update(self, var: Variable, grad: np.ndarray, lr: float, t: int, tmp: np.ndarray) -> None:
        """Update ``var.data`` (and its slots) in place, chunk by chunk of the
        flattened arrays; ``t`` is the 1-based step, ``tmp`` a 1-d scratch
        array of at most ``chunk_size`` elements."""
        name = var.name
        if not var.data.flags.c_contiguous:   # pragma: no cover - Variables own C-contiguous buffers
            raise InvalidArgumentError(f"{self.name}: variable {name!r}: Expect: a C-contiguous buffer "
                                       "(updated in place) Actual: a non-contiguous one")
        p = var.data.reshape(-1)
        g = grad.reshape(-1)
        slots = [self._slots[s][name].reshape(-1) for s in self.slot_names]
        n, c = p.size, max(1, int(self.chunk_size))
        chunks = -(-n // c)
        parts = self._chunk_threads.parts(chunks)
        if tmp.size < min(n, c) * parts:   # chunk_size raised after build, or one scratch per thread
            tmp = self._scratch[name] = np.empty(min(n, c) * parts, dtype=var.dtype)

        # A compiled kernel (distnet/jit.py) does a run of elements in one pass, with the
        # numpy path's operations (same bits); mixed dtypes keep the numpy path, and so do small
        # arrays until a large one has loaded this optimizer's kernel: from then on a call costs a
        # few microseconds where numpy's passes cost one or more each.
        compiled = (jit.worth(n) or self._kernel_loaded) and jit.compiles(p, g, *slots)
        if compiled and parts == 1 and self._update_compiled(name, p, g, tuple(slots), lr, t):
            self._kernel_loaded = True   # one run, in this thread: no per-chunk closure and slices
            return

        def work(part: int, first: int, last: int) -> None:
            if compiled and self._update_compiled(name, p[first * c:last * c], g[first * c:last * c],
                                                  tuple(a[first * c:last * c] for a in slots), lr, t):
                self._kernel_loaded = True
                return
            scratch = tmp[part * c:part * c + c]
            for lo in range(first * c, min(last * c, n), c):
                hi = min(lo + c, n)
                self._update_chunk(name, p[lo:hi], g[lo:hi], tuple(a[lo:hi] for a in slots), lr, t,
                                   scratch[:hi - lo])

        # The chunks are independent: several threads give the same bits as one.
        self._chunk_threads.run(chunks, work)

    def _update_compiled(self, name: str, p: np.ndarray, g: np.ndarray, slots: tuple, lr: float, t: int) -> bool:
        """Update a run of elements in place with a compiled kernel, as :meth:`_update_chunk`
        would (the same bits); False where this optimizer has none (the chunks run instead)."""
        return False

    def _update_chunk(self, name: str, p: np.ndarray, g: np.ndarray, slots: tuple, lr: float, t: int,
                      tmp: np.ndarray) -> None:
        """Update one chunk in place: ``p`` the parameters, ``g`` the gradient,
        ``slots`` the slot arrays in ``slot_names`` order, ``tmp`` scratch (all
        1-d, the same length); ``name`` is the variable's name."""
        raise NotImplementedError  # pragma: no cover

    def minimize(self, loss: Union[Tensor, Callable[[], Tensor]], var_list: Sequence[Variable]) -> int:
        """``apply_gradients(compute_gradients(loss, var_list))``; returns the new ``iterations``.

        ``loss`` must be computed from the variables' current values: pass a
        callable (``lambda: loss_fn()``) to minimize in a loop; a tensor built
        before an earlier step raises :class:`~distnet.tensor.StaleGradientError`.
        """
        return self.apply_gradients(self.compute_gradients(loss, var_list))

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"iterations": int, "slots": {slot: {var_name: ndarray copy}}}``, names sorted."""
        return {"iterations": int(self.iterations),
                "slots": {s: {n: self._slots[s][n].copy() for n in sorted(self._slots[s])} for s in self.slot_names}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; strict on slot names, variable names and shapes.

        Call :meth:`build` (or apply one step) first so the optimizer knows its
        variables.  Every problem is listed in one :class:`CheckpointError`.
        """
        if not isinstance(state, dict) or "iterations" not in state or "slots" not in state:
            raise CheckpointError(f"{self.name}: optimizer state: Expect: a dict with keys 'iterations' and 'slots' "
                                  f"Actual: {type(state).__name__} with keys {sorted(state) if isinstance(state, dict) else None}")
        it = state["iterations"]
        try:
            ok = not isinstance(it, bool) and int(it) == it and int(it) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{self.name}: iterations: Expect: an integer >= 0 Actual: {it!r}")
        slots = state["slots"]
        problems = []
        missing_slots = sorted(set(self.slot_names) - set(slots))
        extra_slots = sorted(set(slots) - set(self.slot_names))
        if missing_slots:
            problems.append(f"missing slots: {missing_slots}")
        if extra_slots:
            problems.append(f"unexpected slots: {extra_slots}")
        known = set(self._vars)
        for s in self.slot_names:
            if s not in slots:
                continue
            got = slots[s]
            missing = sorted(known - set(got))
            extra = sorted(set(got) - known)
            if missing:
                problems.append(f"slot {s!r}: missing variables {missing}")
            if extra:
                problems.append(f"slot {s!r}: unexpected variables {extra}")
            for n in sorted(known & set(got)):
                shape = np.shape(got[n])
                if shape != self._vars[n].shape:
                    problems.append(f"slot {s!r}, variable {n!r}: Expect: shape {self._vars[n].shape} Actual: shape {shape}")
        if problems:
            hint = "" if known else " (the optimizer knows no variables yet: call build(var_list) first)"
            raise CheckpointError(f"{self.name}: cannot load optimizer state{hint}: " + "; ".join(problems))
        for s in self.slot_names:
            for n, arr in slots[s].items():
                np.copyto(self._slots[s][n], np.asarray(arr), casting="unsafe")
        self.iterations = int(it)

    def __repr__(self) -> str:
        return f"<distnet.optimizers.{type(self).__name__} learning_rate={self.learning_rate!r} iterations={self.iterations}>"
