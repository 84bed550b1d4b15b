"""The named components a job file chooses from, each named once, where it is defined.

Layers, activations, initializers, regularizers, optimizers, learning-rate
schedules and losses carry their job-file name, aliases and options on themselves::

    @register("optimizer", "momentum",
              Option("momentum", FLOAT, 0.9, "the velocity's decay", low=0.0),
              Option("use_nesterov", BOOL, False, "Nesterov's look-ahead form"),
              doc="`accum = momentum * accum + g; var -= lr * accum`")
    class Momentum(Optimizer): ...

:func:`components` finds them by reading the module that defines (or exports)
each kind, so the job validator (``distnet.jobs.config``), the job builder
(``distnet.jobs.job``) and the tables in ``docs/jobs.md`` (``distnet.jobs.registry_docs``)
all read the same list.  Registering marks the object itself; no table is
filled at import time.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from distnet.errors import InvalidArgumentError

__all__ = ["Option", "Component", "REQUIRED", "KINDS", "register", "components", "names", "lookup", "make",
           "INT", "FLOAT", "BOOL", "STR", "TABLE", "INT_OR_PAIR", "INT_LIST", "NUMBER_LIST",
           "STR_OR_TABLE", "BOOL_OR_AUTO"]

# What a job-file value must be, as error messages say it ("Expect: an integer Actual: ...").
INT = "an integer"
FLOAT = "a number"
BOOL = "true or false"
STR = "a string"
TABLE = "a table"
INT_OR_PAIR = "an integer or a pair of integers"
INT_LIST = "a list of integers"
NUMBER_LIST = "a list of numbers"
STR_OR_TABLE = "a string or a table"
BOOL_OR_AUTO = 'true, false or "auto"'


class _Required:
    """The default of an option the job file must set."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()

#: Each kind and the module whose namespace holds all of its components.
KINDS = MappingProxyType({
    "layer": "distnet.layers",
    "activation": "distnet.nn.activations",
    "initializer": "distnet.model.initializers",
    "regularizer": "distnet.model.regularizers",
    "optimizer": "distnet.optimizers",
    "schedule": "distnet.model.schedules",
    "loss": "distnet.model.losses",
})

_MARK = "__distnet_component__"


@dataclass(frozen=True)
class Option:
    """One job-file key of a component.

    Args:
        name: the key in the job file.
        type: what the value must be (:data:`INT`, :data:`FLOAT`, ...).
        default: the component's default (:data:`REQUIRED`: the job must set
            it; ``None``: unset means off).  It documents the constructor's
            default, which applies when the key is left out.
        doc: a short phrase for the tables in ``docs/jobs.md``.
        low, high: the allowed range; ``low_open``/``high_open`` exclude the end.
            A list value is checked element by element.
        note: added to the range error (``"(the fraction of units dropped)"``).
        choices: the allowed strings (compared in lower case).
        ref: the value names a component of this kind (``"activation"``,
            ``"initializer"``, ``"regularizer"``).
        arg: the constructor's parameter, when it is not called ``name``.
        group: options shared by several components are listed once in the
            docs under this heading (``"weighted-layer"``).
    """

    name: str
    type: str
    default: Any = REQUIRED
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""
    choices: tuple[str, ...] = ()
    ref: str | None = None
    arg: str | None = None
    group: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def parameter(self) -> str:
        """The constructor's keyword for this option."""
        return self.arg or self.name

    def range_text(self) -> str:
        """``"> 0"``, ``">= 0"``, ``"in [0, 1)"`` or ``""``."""
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"in {'(' if self.low_open else '['}{lo:g}, {hi:g}{')' if self.high_open else ']'}"
        if lo is not None:
            return f"{'>' if self.low_open else '>='} {lo:g}"
        if hi is not None:
            return f"{'<' if self.high_open else '<='} {hi:g}"
        return ""

    def in_range(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


@dataclass(frozen=True, eq=False)
class Component:
    """A registered component: its kind, name, the object, its options and facts.

    ``obj`` is the class or function :func:`register` decorated (or the
    object it was called on).  ``info`` holds kind-specific facts, e.g. a
    layer's ``image_input``; ``check`` a test across options that a range
    cannot say, ``params -> (key, message)`` or ``None``.
    """

    kind: str
    name: str
    obj: Any
    options: tuple[Option, ...]
    doc: str
    aliases: tuple[str, ...] = ()
    check: Callable[[Mapping[str, Any]], tuple[str, str] | None] | None = None
    info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def option(self, name: str) -> Option | None:
        for opt in self.options:
            if opt.name == name:
                return opt
        return None

    def kwargs(self, params: Mapping[str, Any]) -> dict:
        """Job-file ``params`` as the constructor's keyword arguments."""
        out = {}
        for key, value in params.items():
            opt = self.option(key)
            out[opt.parameter if opt is not None else key] = value
        return out

    def make(self, params: Mapping[str, Any] = MappingProxyType({})) -> Any:
        """``obj(**params)`` (keys renamed by each option's ``arg``); a component
        without options (an activation, a stateless initializer) is ``obj`` itself."""
        if not self.options:
            return self.obj
        return self.obj(**self.kwargs(params))


def register(kind: str, name: str, *options: Option, doc: str, aliases: tuple[str, ...] = (),
             check: Callable[[Mapping[str, Any]], tuple[str, str] | None] | None = None,
             **info: Any) -> Callable[[Any], Any]:
    """Mark ``obj`` as the component ``name`` of ``kind``; returns ``obj`` unchanged.

    Use it as a decorator on the class or function, or call it on an object
    (``zeros = register("initializer", "zeros", doc=...)(Zeros())``).

    Example:
        >>> @register("schedule", "constant", doc="`lr`")
        ... def constant(learning_rate): return learning_rate
    """
    if kind not in KINDS:
        raise ValueError(f"register: unknown kind {kind!r}; expected one of {list(KINDS)}")
    if not doc:
        raise ValueError(f"register: {kind} {name!r} needs a doc (it goes into docs/jobs.md)")

    def mark(obj: Any) -> Any:
        component = Component(kind, name, obj, tuple(options), doc, tuple(aliases), check,
                              MappingProxyType(dict(info)))
        setattr(obj, _MARK, component)
        return obj

    return mark


def components(kind: str) -> tuple[Component, ...]:
    """Every registered component of ``kind``, in the order its module holds them."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")
    module = importlib.import_module(KINDS[kind])
    found: list[Component] = []
    for obj in list(vars(module).values()):
        own = getattr(obj, "__dict__", None)
        # vars(), not getattr(): a subclass does not inherit its parent's registration.
        component = own.get(_MARK) if own is not None else None
        if isinstance(component, Component) and component.kind == kind and component.obj is obj \
                and all(c is not component for c in found):
            found.append(component)
    return tuple(found)


def names(kind: str) -> tuple[str, ...]:
    """The components' names (no aliases), in registration order."""
    return tuple(c.name for c in components(kind))


def make(kind: str, spec: str | Mapping[str, Any]) -> Any:
    """A component from its name or a job-file table ``{"type": name, **params}``.

    Raises:
        InvalidArgumentError: an unknown name, or a parameter the component does not take.

    Example:
        >>> make("regularizer", {"type": "l2", "scale": 0.004})
        l2(0.004)
    """
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("type"), str):
        name, params = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    else:
        raise InvalidArgumentError(f"{kind}: Expect: a name or a table with a 'type' Actual: {spec!r}")
    found = lookup(kind, name)
    if found is None:
        raise InvalidArgumentError(f"unknown {kind} {name!r}; expected one of {list(names(kind))}")
    for key in params:
        if found.option(key) is None:
            raise InvalidArgumentError(f"{kind} {found.name!r}: unknown parameter {key!r}; expected one of "
                                       f"{[o.name for o in found.options]}")
    return found.make(params)


def lookup(kind: str, name: str) -> Component | None:
    """The component called ``name`` (or one of its aliases; case-insensitive), else ``None``."""
    key = name.lower()
    for c in components(kind):
        if key == c.name or key in c.aliases:
            return c
    return None
