"""Keeping the ranks identical: start-up broadcast and checks, periodic
divergence checks, and the shared decision on non-finite steps.

Everything is done in sorted variable-name order, so every rank packs and
compares the same way whatever order its model lists the variables in.
"""
from __future__ import annotations

import hashlib
import sys
import warnings
from typing import Mapping

import numpy as np

from distnet.distributed.abort import CollectiveError
from distnet.distributed.communicator import Communicator
from distnet.errors import InvalidArgumentError


def _named(variables) -> dict:
    """``{name: ndarray}`` from Variables or a mapping; names must be unique."""
    if isinstance(variables, Mapping):
        return {str(k): np.asarray(getattr(v, "data", v)) for k, v in variables.items()}
    out: dict = {}
    dupes = []
    for v in variables:
        name = getattr(v, "name", None)
        if not isinstance(name, str):
            raise InvalidArgumentError(f"Expect: named variables Actual: {type(v).__name__} without a name")
        if name in out:
            dupes.append(name)
        out[name] = v.data
    if dupes:
        raise InvalidArgumentError(f"Variable names must be unique. Found duplicates: {sorted(set(dupes))}")
    return out


def broadcast_arrays(comm: Communicator, arrays: Mapping[str, np.ndarray], root: int = 0) -> None:
    """Overwrite every array, in place, with root's, packing one buffer per dtype.

    Args:
        comm: the communicator.
        arrays: ``{name: ndarray}`` (C-contiguous, writable), same names,
            shapes and dtypes on every rank (call :func:`check_same_variables`
            first).  Optimizer slots and EMA shadows go through here too.
        root: the rank whose values win.
    """
    if comm.size == 1:
        return
    by_dtype: dict = {}
    for name in sorted(arrays):
        arr = arrays[name]
        if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous or not arr.flags.writeable:
            raise InvalidArgumentError(f"broadcast of {name!r}: Expect: a writable C-contiguous ndarray "
                                       f"Actual: {type(arr).__name__}")
        by_dtype.setdefault(arr.dtype.str, []).append(arr)
    for dtype in sorted(by_dtype):
        group = by_dtype[dtype]
        buf = np.concatenate([a.reshape(-1) for a in group]) if group else np.empty(0, dtype)
        comm.bcast_(buf, root=root)
        offset = 0
        for a in group:
            a.reshape(-1)[...] = buf[offset: offset + a.size]
            offset += a.size


def broadcast_variables(comm: Communicator, variables, root: int = 0) -> None:
    """Give every rank root's values of ``variables`` (in place, sorted-name order).

    Example:
        >>> check_same_variables(comm, model.variables)
        >>> broadcast_variables(comm, model.variables)
    """
    broadcast_arrays(comm, _named(variables), root=root)


def variable_specs(variables) -> list:
    """``[(name, shape, dtype), ...]`` sorted by name."""
    named = _named(variables)
    return [(n, tuple(int(d) for d in named[n].shape), named[n].dtype.name) for n in sorted(named)]


def check_same_variables(comm: Communicator, variables) -> None:
    """Check that every rank built the same variables (names, shapes, dtypes).

    Raises:
        CollectiveError: on every rank, listing each difference and which rank
            has what, e.g. ``'dense/kernel': rank 0 has (3, 4) float32, rank 1
            has (3, 5) float32``.
    """
    specs = comm.allgather_object(variable_specs(variables))
    if all(s == specs[0] for s in specs[1:]):
        return
    tables = [{n: (shape, dtype) for n, shape, dtype in s} for s in specs]
    lines = []
    for name in sorted(set().union(*tables)):
        seen = [t.get(name) for t in tables]
        if all(x == seen[0] for x in seen):
            continue
        parts = []
        for r, x in enumerate(seen):
            parts.append(f"rank {r} has " + ("no such variable" if x is None else f"{x[0]} {x[1]}"))
        lines.append(f"  {name!r}: " + ", ".join(parts))
    raise CollectiveError(
        "ranks built different variables (Expect: the same names, shapes and dtypes on every rank):\n"
        + "\n".join(lines))


def parameter_checksums(variables) -> list:
    """``[(name, float64 sum, blake2b digest of the bytes), ...]`` sorted by name."""
    named = _named(variables)
    out = []
    for name in sorted(named):
        arr = np.ascontiguousarray(named[name])
        digest = hashlib.blake2b(arr.view(np.uint8).reshape(-1), digest_size=8).hexdigest()
        out.append((name, float(arr.sum(dtype=np.float64)), digest))
    return out


def check_parameters_agree(comm: Communicator, variables, step: int | None = None) -> None:
    """Compare the parameters of every rank bit for bit (by hash).

    Raises:
        CollectiveError: on every rank, naming the first diverging variable
            in sorted order and each rank's float64 sum of it.
    """
    sums = comm.allgather_object(parameter_checksums(variables))
    if all(s == sums[0] for s in sums[1:]):
        return
    where = "" if step is None else f" at step {step}"
    names0 = [x[0] for x in sums[0]]
    if any([x[0] for x in s] != names0 for s in sums[1:]):
        raise CollectiveError(f"parameters diverged{where}: ranks hold different variable names")
    for k, name in enumerate(names0):
        if any(s[k][2] != sums[0][k][2] for s in sums[1:]):
            detail = ", ".join(f"rank {r} sum {s[k][1]!r}" for r, s in enumerate(sums))
            raise CollectiveError(
                f"parameters diverged{where}: first differing variable (sorted order) is {name!r} "
                f"(Expect: identical on every rank Actual: {detail})")


class DivergenceChecker:
    """Run :func:`check_parameters_agree` every ``every`` steps.

    Args:
        comm, variables: as for :func:`check_parameters_agree`.
        every: check when ``step % every == 0``; 0 or None disables it.
    Example:
        >>> checker = DivergenceChecker(comm, model.variables, every=100)
        >>> checker.maybe_check(step)   # in the loop, on every rank
    """

    def __init__(self, comm: Communicator, variables, every: int | None = 100) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
            raise InvalidArgumentError(f"every: Expect: None or an int >= 0 Actual: {every!r}")
        self.comm, self.variables, self.every = comm, variables, every or 0

    def maybe_check(self, step: int) -> bool:
        """Check at this step if it is due; returns whether a check ran."""
        if not self.every or step % self.every:
            return False
        check_parameters_agree(self.comm, self.variables, step)
        return True


class NonFiniteWarning(UserWarning):
    """A step was skipped because its averaged gradient or loss was NaN or inf."""


class NonFiniteGuard:
    """The skip/abort decision for non-finite steps.

    Fed with :attr:`SyncResult.is_finite` (computed after the all-reduce, so
    identical on every rank), every rank takes the same decision: skip the
    step and warn (on rank 0 only), and raise :class:`CollectiveError` after
    ``max_consecutive`` bad steps in a row.

    Args:
        max_consecutive: consecutive non-finite steps tolerated (>= 1).
        rank: warnings are issued on rank 0 only.
    Example:
        >>> guard = NonFiniteGuard(max_consecutive=5, rank=comm.rank)
        >>> if guard.check(res.is_finite, step): opt.apply_gradients(res.grads_and_vars())
    """

    def __init__(self, max_consecutive: int = 5, rank: int = 0) -> None:
        if isinstance(max_consecutive, bool) or not isinstance(max_consecutive, int) or max_consecutive < 1:
            raise InvalidArgumentError(f"max_consecutive: Expect: an int >= 1 Actual: {max_consecutive!r}")
        self.max_consecutive = max_consecutive
        self.rank = rank
        self.consecutive = 0
        self.skipped = 0

    def check(self, is_finite: bool, step: int) -> bool:
        """Returns True when the step should be applied, False to skip it.

        Raises:
            CollectiveError: after ``max_consecutive`` non-finite steps in a row.
        """
        if is_finite:
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped += 1
        if self.consecutive >= self.max_consecutive:
            raise CollectiveError(
                f"non-finite gradients or loss at {self.consecutive} consecutive steps (last: step {step}); "
                f"Expect: at most {self.max_consecutive - 1} in a row. Lower the learning rate or check the data.")
        if self.rank == 0:
            warnings.warn(f"step {step}: non-finite gradients or loss after the all-reduce; step skipped "
                          f"({self.consecutive}/{self.max_consecutive} in a row)", NonFiniteWarning, stacklevel=2)
            sys.stderr.flush()
        return False
