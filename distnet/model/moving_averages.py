"""Exponential moving averages of variables (TF1's ``tf.train.ExponentialMovingAverage``).

Each tracked variable gets a *shadow*, a non-trainable :class:`Variable`
named ``<var name>/ExponentialMovingAverage``::

    shadow = decay * shadow + (1 - decay) * var
    decay  = min(decay, (1 + n) / (10 + n))      # when num_updates n is given

computed as TF1's kernel does, in the variable's dtype:
``shadow -= (shadow - var) * (1 - decay)``.

A shadow starts at its variable's *initial* value (TF1: the shadow's
initializer is ``var.initialized_value()``), whether it is created by
:meth:`build` or by the first :meth:`apply` after a training step: the first
``apply`` gives ``decay * initial + (1 - decay) * var``.  No zero-debiasing
(TF1's default for variables).
"""
from __future__ import annotations

import contextlib
from functools import partial
from typing import Iterator, Sequence

import numpy as np

from distnet import jit
from distnet.distributed.chunk_threads import ChunkThreads
from distnet.errors import CheckpointError, DTypeError, InvalidArgumentError
from distnet.tensor import Variable


def _ema_chunks(s: np.ndarray, x: np.ndarray, tmp: np.ndarray, c: int, one_minus, part: int,
                first: int, last: int) -> None:
    """``s -= (s - x) * one_minus`` over chunks ``first:last`` (of ``c`` elements), scratch chunk ``part``:
    one compiled pass (distnet/jit.py, the same bits) or numpy's passes chunk by chunk."""
    if _ema_kernel is not None and jit.worth(x.size, _ema_kernel) and jit.compiles(s, x):   # as the optimizers
        _ema_kernel(s[first * c:last * c], x[first * c:last * c], one_minus)
        return
    scratch = tmp[part * c:part * c + c]
    for lo in range(first * c, min(last * c, x.size), c):
        hi = min(lo + c, x.size)
        sc, t = s[lo:hi], scratch[:hi - lo]
        np.subtract(sc, x[lo:hi], out=t)
        t *= one_minus
        sc -= t


@jit.kernel
def _ema_kernel(s, x, one_minus):
    """``_ema_chunks``' numpy passes in one: their operations, in their order, per element."""
    for i in range(s.size):
        s[i] -= (s[i] - x[i]) * one_minus


class ExponentialMovingAverage:
    """Shadow copies of variables that follow them with an exponential decay.

    Args:
      decay: in [0, 1]; TF1 practice is close to 1 (0.99, 0.999).
      name: suffix of the shadow names.

    Example:
      >>> ema = ExponentialMovingAverage(0.99)
      >>> ema.apply(model.trainable_variables, num_updates=opt.iterations)
      >>> with ema.swapped(model.trainable_variables):
      ...     evaluate(model)
    """

    #: elements per in-place pass (cache-sized chunks, as the optimizers).
    chunk_size: int = 32768

    def __init__(self, decay: float, name: str = "ExponentialMovingAverage"):
        if isinstance(decay, bool) or not isinstance(decay, (int, float, np.floating)) or not 0.0 <= float(decay) <= 1.0:
            raise InvalidArgumentError(f"ExponentialMovingAverage: decay: Expect: a number in [0, 1] Actual: {decay!r}")
        self.decay = float(decay)
        self.name = name
        self._shadows: dict[str, Variable] = {}
        self._vars: dict[str, Variable] = {}
        self._pending: dict[str, np.ndarray] | None = None
        self._scratch: dict[str, np.ndarray] = {}
        # The chunks on this rank's BLAS threads (distnet/distributed/chunk_threads.py): same bits.
        self._chunk_threads = ChunkThreads("blas")

    # -- tracking ---------------------------------------------------------
    def average_name(self, var: Variable) -> str:
        """The name of ``var``'s shadow: ``<var name>/ExponentialMovingAverage``."""
        return f"{var.name}/{self.name}"

    def _check(self, var_list) -> list[Variable]:
        var_list = list(var_list)
        for v in var_list:
            if not isinstance(v, Variable):
                raise DTypeError(f"ExponentialMovingAverage: Expect: Variables Actual: {type(v).__name__}")
            if v.dtype.kind != "f":
                raise DTypeError(f"ExponentialMovingAverage: variable {v.name!r} has dtype {v.dtype}; "
                                 "Expect: a floating dtype")
        names = [v.name for v in var_list]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise InvalidArgumentError(f"ExponentialMovingAverage: variable names must be unique. Found duplicates: {dups}")
        return var_list

    def build(self, var_list: Sequence[Variable]) -> None:
        """Create the shadows of ``var_list`` now (from the variables' initial values,
        :attr:`~distnet.tensor.Variable.initial_value`, or from a state loaded
        earlier with :meth:`load_state_dict`)."""
        var_list = self._check(var_list)
        new = [v for v in var_list if v.name not in self._vars]
        for v in var_list:
            known = self._vars.get(v.name)
            if known is not None and known is not v:
                raise InvalidArgumentError(
                    f"ExponentialMovingAverage: a different variable named {v.name!r} is already averaged")
        if self._pending is not None and new:
            pending = self._pending
            problems = []
            missing = sorted(v.name for v in new if v.name not in pending)
            if missing:
                problems.append(f"missing variables {missing}")
            for v in new:
                if v.name in pending and np.shape(pending[v.name]) != v.shape:
                    problems.append(f"variable {v.name!r}: Expect: shape {v.shape} Actual: shape {np.shape(pending[v.name])}")
            if problems:
                raise CheckpointError("ExponentialMovingAverage: the loaded state does not match the variables: "
                                      + "; ".join(problems))
        for v in new:
            init = v.initial_value if self._pending is None else self._pending.pop(v.name)
            self._shadows[v.name] = Variable(np.asarray(init, dtype=v.dtype), name=self.average_name(v), trainable=False)
            self._vars[v.name] = v
            self._scratch[v.name] = np.empty(min(v.data.size, self.chunk_size), dtype=v.dtype)
        if self._pending is not None and not self._pending:
            self._pending = None

    def apply(self, var_list: Sequence[Variable], num_updates: int | None = None) -> float:
        """Update the shadows of ``var_list`` (creating missing ones first).

        Args:
          var_list: the variables to average (typically ``model.trainable_variables``).
          num_updates: the global step; caps the decay at ``(1 + n) / (10 + n)``.

        Returns:
          The decay used.
        """
        var_list = self._check(var_list)
        self.build(var_list)
        decay = self.decay
        if num_updates is not None:
            if isinstance(num_updates, bool) or int(num_updates) != num_updates or num_updates < 0:
                raise InvalidArgumentError(f"ExponentialMovingAverage: num_updates: Expect: an integer >= 0 Actual: {num_updates!r}")
            n = float(num_updates)
            decay = min(decay, (1.0 + n) / (10.0 + n))
        c = max(1, int(self.chunk_size))
        for v in var_list:
            self._shadows[v.name].mark_written()
            s, x, tmp = self._shadows[v.name].data.reshape(-1), np.ravel(v.data), self._scratch[v.name]
            if tmp.size < min(x.size, c):   # chunk_size raised after build
                tmp = self._scratch[v.name] = np.empty(min(x.size, c), dtype=v.dtype)
            # TF1's assign_moving_average, in the variable's dtype (so float32 results are TF1's
            # bits): d = min(decay, (1 + n) / (10 + n)); shadow -= (shadow - var) * (1 - d).
            dt = v.dtype.type
            d = dt(self.decay)
            if num_updates is not None:
                nd = dt(num_updates)
                d = min(d, (dt(1) + nd) / (dt(10) + nd))
            one_minus = dt(1) - d
            chunks = -(-x.size // c)
            parts = self._chunk_threads.parts(chunks)
            if tmp.size < min(x.size, c) * parts:   # one scratch chunk per thread
                tmp = self._scratch[v.name] = np.empty(min(x.size, c) * parts, dtype=v.dtype)
            self._chunk_threads.run(chunks, partial(_ema_chunks, s, x, tmp, c, one_minus))
        return decay

    def average(self, var: Variable) -> Variable:
        """The shadow of ``var`` (a non-trainable Variable).

        Raises:
          InvalidArgumentError: ``var`` is not averaged (TF1 returned None).
        """
        name = var.name if isinstance(var, Variable) else str(var)
        try:
            return self._shadows[name]
        except KeyError:
            raise InvalidArgumentError(
                f"ExponentialMovingAverage: variable {name!r} has no shadow; averaged: {sorted(self._shadows)}") from None

    @property
    def shadows(self) -> dict[str, Variable]:
        """``{var name: shadow Variable}`` sorted by name."""
        return {n: self._shadows[n] for n in sorted(self._shadows)}

    @contextlib.contextmanager
    def swapped(self, var_list: Sequence[Variable] | None = None) -> Iterator[None]:
        """Put the shadows into the variables; restore the trained values on exit
        (also when the block raises).

        Args:
          var_list: variables to swap (default: every averaged variable).
        """
        var_list = list(self._vars.values()) if var_list is None else self._check(var_list)
        missing = [v.name for v in var_list if v.name not in self._shadows]
        if missing:
            raise InvalidArgumentError(f"ExponentialMovingAverage.swapped: no shadow for {missing}; call apply() first")
        saved = [(v, v.data.copy()) for v in var_list]
        for v in var_list:
            v.mark_written()
            np.copyto(v.data, self._shadows[v.name].data)
        try:
            yield
        finally:
            for v, data in saved:
                v.mark_written()
                np.copyto(v.data, data)

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``{var name: shadow ndarray copy}``, sorted by name."""
        return {n: self._shadows[n].data.copy() for n in sorted(self._shadows)}

    def load_state_dict(self, state: dict) -> None:
        """Restore shadows saved by :meth:`state_dict`.

        If shadows exist, names and shapes must match exactly (all problems
        in one :class:`CheckpointError`).  Before the first :meth:`build` /
        :meth:`apply` the state is kept and used as the shadows' start values.
        """
        if not isinstance(state, dict):
            raise CheckpointError(f"ExponentialMovingAverage: state: Expect: a dict {{name: array}} Actual: {type(state).__name__}")
        if not self._shadows:
            self._pending = {str(k): np.array(v, copy=True) for k, v in state.items()}
            return
        problems = []
        missing = sorted(set(self._shadows) - set(state))
        extra = sorted(set(state) - set(self._shadows))
        if missing:
            problems.append(f"missing variables {missing}")
        if extra:
            problems.append(f"unexpected variables {extra}")
        for n in sorted(set(self._shadows) & set(state)):
            if np.shape(state[n]) != self._shadows[n].shape:
                problems.append(f"variable {n!r}: Expect: shape {self._shadows[n].shape} Actual: shape {np.shape(state[n])}")
        if problems:
            raise CheckpointError("ExponentialMovingAverage: cannot load state: " + "; ".join(problems))
        for n, arr in state.items():
            self._shadows[n].mark_written()
            np.copyto(self._shadows[n].data, np.asarray(arr), casting="unsafe")

    def __repr__(self) -> str:
        return f"<distnet.ExponentialMovingAverage decay={self.decay} variables={len(self._shadows)}>"
