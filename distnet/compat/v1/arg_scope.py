"""``tf.contrib.framework.arg_scope`` and ``add_arg_scope``: default keyword
arguments for a set of layer functions, within a ``with`` block.

::

    with arg_scope([layers.conv2d, layers.fully_connected], activation_fn=tf.nn.relu,
                   weights_regularizer=layers.l2_regularizer(0.0005)):
        net = layers.conv2d(images, 32, [5, 5])        # relu, regularized
        with arg_scope([layers.conv2d], padding="VALID"):
            net = layers.conv2d(net, 64, [3, 3])       # relu, regularized, VALID

A scope applies to functions decorated with :func:`add_arg_scope` (every
``tf.contrib.layers`` function here, and any other layer that is decorated,
e.g. a batch norm); arguments given in the call win over the scope's.
Nested scopes add to (and override) the outer ones; ``arg_scope(sc)`` with a
scope captured earlier (``with arg_scope(...) as sc:``) reinstates it.  The
stack is TF1's process state, kept per thread beside the default graph
(:data:`distnet.compat.v1.graph._DEFAULTS`).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

from distnet.compat.v1.graph import _DEFAULTS

__all__ = [
    "add_arg_scope",
    "arg_scope",
    "arg_scope_func_key",
    "arg_scoped_arguments",
    "current_arg_scope",
    "has_arg_scope",
]


def arg_scope_func_key(op: Callable) -> Any:
    """The key of ``op`` in a scope (the decorated function's own key)."""
    return getattr(op, "_key_op", op)


def current_arg_scope() -> dict:
    """The innermost scope: ``{function key: {argument: value}}`` (empty outside any scope)."""
    return _DEFAULTS.arg_scopes[-1] if _DEFAULTS.arg_scopes else {}


def has_arg_scope(func: Callable) -> bool:
    """Whether ``func`` was decorated with :func:`add_arg_scope`."""
    return getattr(func, "_add_arg_scope_decorated", False)


def arg_scoped_arguments(func: Callable) -> list:
    """The argument names ``func`` accepts (what a scope may set)."""
    import inspect

    return list(inspect.signature(getattr(func, "__wrapped__", func)).parameters)


@contextlib.contextmanager
def arg_scope(list_ops_or_scope: Any, **kwargs) -> Iterator[dict]:
    """Default ``kwargs`` for each function of ``list_ops_or_scope`` (or a scope dict to reinstate)."""
    if isinstance(list_ops_or_scope, dict):
        if kwargs:
            raise ValueError("When attempting to re-use a scope by suppling a dictionary, kwargs must be empty.")
        scope = list_ops_or_scope
    else:
        if not isinstance(list_ops_or_scope, (list, tuple)):
            raise TypeError("list_ops_or_scope must either be a list/tuple or reused scope (i.e. dict); "
                            f"Actual: {type(list_ops_or_scope).__name__}")
        scope = {k: dict(v) for k, v in current_arg_scope().items()}
        for op in list_ops_or_scope:
            if not has_arg_scope(op):
                raise ValueError(f"{getattr(op, '__name__', op)} is not decorated with @add_arg_scope: "
                                 "Expect: functions decorated with tf.contrib.framework.add_arg_scope")
            key = arg_scope_func_key(op)
            scope.setdefault(key, {}).update(kwargs)
    _DEFAULTS.arg_scopes.append(scope)
    try:
        yield scope
    finally:
        _DEFAULTS.arg_scopes.pop()


def add_arg_scope(func: Callable) -> Callable:
    """Decorate ``func`` so that the ``arg_scope``s naming it supply its default keyword arguments."""

    @functools.wraps(func)
    def scoped(*args, **kwargs):
        defaults = current_arg_scope().get(scoped._key_op)
        if defaults:
            kwargs = {**defaults, **kwargs}
        return func(*args, **kwargs)

    scoped._key_op = scoped
    scoped._add_arg_scope_decorated = True
    return scoped
