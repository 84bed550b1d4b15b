"""The ways of synchronising a data-parallel step, found by name.

Every module of this folder (but ``base``) defines one :class:`Strategy`
subclass with a ``name``; :func:`strategy_class` finds it, so adding a
strategy is adding a module here.  ``"auto"`` asks each strategy how much it
wants to run this job (:meth:`Strategy.preference`) and takes the highest.

Example:
    >>> cls = strategy_class("auto", comm, optimizer, {})
    >>> strategy = cls.build(comm, variables, ("loss_sum",))
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Mapping

from distnet.distributed.strategies.base import GradientSink, Strategy, SyncResult
from distnet.errors import InvalidArgumentError

def all_strategies() -> dict[str, type[Strategy]]:
    """Every strategy defined in this folder, by name."""
    found: dict[str, type[Strategy]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Strategy) and obj.name and obj.__module__ == module.__name__:
                found[obj.name] = obj
    return dict(sorted(found.items()))


def strategy_class(name: str, comm, optimizer, options: Mapping[str, Any]) -> tuple[type[Strategy], dict]:
    """The strategy to run and its checked options (defaults filled in).

    Args:
        name: a strategy's name, or ``"auto"``: the one that prefers this job
            most among those that take every option given.
        comm: the job's communicator.
        optimizer: the job's optimizer (some strategies cannot clip by global norm).
        options: the strategy's options: only those asked for (a key given is asked
            for, whatever its value; leave a key out to let the strategy choose).
    Returns:
        ``(class, options)``.
    """
    known = all_strategies()
    if name == "auto":
        best, best_score = None, None
        for cls in known.values():
            score = cls.preference(comm, optimizer, options)
            if score is not None and set(options) <= set(cls.option_names()) and (
                    best_score is None or score > best_score):
                best, best_score = cls, score
        if best is None:
            raise InvalidArgumentError(f"strategy 'auto': Expect: a strategy that takes the options "
                                       f"{sorted(options)} Actual: none among {sorted(known)}")
        return best, best.check_options(options, comm, optimizer)
    if name not in known:
        raise InvalidArgumentError(f"strategy: Expect: 'auto' or one of {sorted(known)} Actual: {name!r}")
    return known[name], known[name].check_options(options, comm, optimizer)


__all__ = ["GradientSink", "Strategy", "SyncResult", "all_strategies", "strategy_class"]
