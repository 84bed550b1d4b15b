"""The errors a TF1 program meets: TF1's names, distnet's types."""
from __future__ import annotations

import difflib
from typing import Iterable

from distnet.errors import DistnetError, InvalidArgumentError


class UnsupportedError(DistnetError, AttributeError):
    """A TF1 API that ``distnet.compat.v1`` does not provide.

    Also an ``AttributeError``, so ``hasattr(tf, name)`` stays False.
    """


class FailedPreconditionError(DistnetError, RuntimeError):
    """TF1's error for reading a variable before its initializer ran."""


class OutOfRangeError(DistnetError, RuntimeError):
    """TF1's end-of-input error (kept for ``except tf.errors.OutOfRangeError``)."""


#: Unsupported TF1 names with the nearest supported API.
NEAREST = {
    "FtrlOptimizer": "tf.train.AdagradOptimizer", "ProximalAdagradOptimizer": "tf.train.AdagradOptimizer",
    "py_func": "compute the value in Python and feed it through a placeholder",
    "select": "tf.where (tf.select left TensorFlow in 1.0)",
    "Estimator": "a Session loop (see docs/tf1.md)",
    "keras": "distnet's own Keras-like API (distnet.layers, distnet.Sequential)",
    "enable_eager_execution": "distnet's native API, which is eager",
    "image": "tf.summary.scalar or tf.summary.histogram", "text": "tf.summary.scalar or tf.summary.histogram",
    "audio": "tf.summary.scalar or tf.summary.histogram",
}


def refuser(path: str, hint: str):
    """A stand-in for ``tf.<path>`` (``"data.TFRecordDataset"``) that raises, when called, that
    distnet.compat.v1 does not support it, with ``hint`` (what to use instead)."""
    def refuse(*args, **kwargs):
        raise UnsupportedError(f"tf.{path} is not supported by distnet.compat.v1; {hint}")

    refuse.__name__ = path.rsplit(".", 1)[-1]
    return refuse


def unsupported(path: str, name: str, known: Iterable[str]) -> UnsupportedError:
    """The one error for ``tf.<path>.<name>`` that distnet.compat.v1 lacks."""
    full = f"{path}.{name}" if path else name
    hint = NEAREST.get(name)
    if hint is None:
        close = difflib.get_close_matches(name, [k for k in known if not k.startswith("_")], n=1, cutoff=0.75)
        hint = f"tf.{path + '.' if path else ''}{close[0]}" if close else None
    tail = f"; nearest supported: {hint}" if hint else ""
    return UnsupportedError(f"tf.{full} is not supported by distnet.compat.v1{tail} (supported APIs: docs/tf1.md)")


__all__ = ["UnsupportedError", "FailedPreconditionError", "OutOfRangeError", "InvalidArgumentError", "unsupported"]
