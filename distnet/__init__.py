"""distnet: data-parallel neural-network training on numpy and MPI.

The top-level names (``distnet.Trainer``, ``distnet.matmul``,
``distnet.optimizers``, ...) load on first use (PEP 562): importing the
package loads neither numpy nor MPI, so ``distnet train`` has its signal
handlers in place before the slow imports start, and ``distnet --help``
answers at once.
"""
from __future__ import annotations

import importlib

from distnet._version import __version__  # noqa: F401

#: Top-level names defined in a module of the package, beside the subpackages
#: and every op in ``distnet.ops.__all__`` (exported at the top level, as TensorFlow does).
_EXPORTS = {
    "gradients": "distnet.autodiff",
    "CheckpointError": "distnet.errors", "ConfigError": "distnet.errors", "DataError": "distnet.errors",
    "DistnetError": "distnet.errors", "DistributedError": "distnet.errors", "DTypeError": "distnet.errors",
    "InvalidArgumentError": "distnet.errors", "ShapeError": "distnet.errors",
    "Tensor": "distnet.tensor", "Variable": "distnet.tensor", "constant": "distnet.tensor",
    "Sequential": "distnet.model.models",
    "ExponentialMovingAverage": "distnet.model.moving_averages",
    "Trainer": "distnet.training.trainer",
}
_SUBPACKAGES = ("data", "distributed", "initializers", "layers", "losses", "nn", "optimizers",
                "regularizers", "schedules")
#: Public modules that live in a folder of their kind: ``distnet.losses`` is distnet/model/losses.py.
_MOVED = {"initializers": "distnet.model.initializers", "losses": "distnet.model.losses",
          "regularizers": "distnet.model.regularizers", "schedules": "distnet.model.schedules"}


def __getattr__(name: str):
    if name == "__all__":
        value = sorted({"__version__", *_EXPORTS, *_SUBPACKAGES, *importlib.import_module("distnet.ops").__all__})
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MOVED:
        value = importlib.import_module(_MOVED[name])
    else:
        value = _submodule_or_op(name)
    # Bound like an imported name: later look-ups find it without this function.
    globals()[name] = value
    return value


def _submodule_or_op(name: str):
    if name.startswith("_"):   # probes such as __wrapped__: not worth loading numpy for
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":   # the module exists but needs something missing
            raise
    ops = importlib.import_module("distnet.ops")
    if name not in ops.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(ops, name)


def __dir__() -> list:
    return sorted(set(globals()) | set(__getattr__("__all__")))
