"""``import tensorflow as tf`` as ``distnet.compat.v1``, inside ``distnet run``.

A TF1 program runs unchanged through ``distnet run prog.py``: the command
installs :class:`TensorflowAlias` before it runs the program, so that

* ``import tensorflow as tf`` and ``import tensorflow.compat.v1 as tf``
  give :mod:`distnet.compat.v1`;
* ``from tensorflow.contrib import rnn``, ``import tensorflow.contrib.layers``,
  ``from tensorflow.examples.tutorials.mnist import input_data`` give the
  members of the same names (``tf.contrib.rnn``, ...): a dotted module name
  under ``tensorflow`` is read as attributes of :mod:`distnet.compat.v1`.

A name distnet does not provide fails the import with TF1's name and the
nearest supported API (the :class:`~distnet.compat.v1.errors.UnsupportedError`
message), as an ``ImportError``.

Only ``distnet run`` installs it (``--no-tf-alias`` leaves it out), and only
in its own process and its workers: ``python prog.py`` imports whatever
``tensorflow`` is installed, so a user who wants the real TensorFlow runs the
program as usual.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

#: The top-level name the alias answers for.
ROOT = "tensorflow"


def _target(fullname: str):
    """The distnet object that ``tensorflow.<...>`` stands for."""
    import distnet.compat.v1 as v1

    parts = fullname.split(".")[1:]
    # TF 1.13-1.15 and TF 2's ``tensorflow.compat.v1``: the same module.
    if parts[:2] == ["compat", "v1"]:
        parts = parts[2:]
    obj = v1
    for part in parts:
        obj = getattr(obj, part)  # an UnsupportedError names what is missing
    return obj


def _module_for(fullname: str, target) -> types.ModuleType:
    """A package-like module whose attributes are ``target``'s."""
    mod = types.ModuleType(fullname, getattr(target, "__doc__", None))

    def __getattr__(name):  # noqa: N807 - PEP 562 module hook
        return getattr(target, name)

    def __dir__():  # noqa: N807
        return dir(target)

    mod.__getattr__ = __getattr__
    mod.__dir__ = __dir__
    return mod


class _Loader(importlib.abc.Loader):
    def __init__(self, target):
        self._target = target

    def create_module(self, spec):
        return _module_for(spec.name, self._target)

    def exec_module(self, module) -> None:
        """Nothing to run: the attributes come from the target."""


class TensorflowAlias(importlib.abc.MetaPathFinder):
    """Answers imports of ``tensorflow`` and its submodules with distnet.compat.v1."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != ROOT and not fullname.startswith(ROOT + "."):
            return None
        try:
            obj = _target(fullname)
        except AttributeError as exc:
            raise ImportError(f"import {fullname}: {exc}", name=fullname) from None
        return importlib.machinery.ModuleSpec(fullname, _Loader(obj), is_package=True)


def install() -> TensorflowAlias:
    """Put the alias first on ``sys.meta_path`` (before an installed TensorFlow).

    Returns the finder, for :func:`uninstall`.
    """
    finder = TensorflowAlias()
    sys.meta_path.insert(0, finder)
    return finder


def uninstall(finder: TensorflowAlias) -> None:
    """Remove ``finder`` and the ``tensorflow`` modules it made."""
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    for name in [n for n in sys.modules if n == ROOT or n.startswith(ROOT + ".")]:
        spec = getattr(sys.modules[name], "__spec__", None)
        if spec is not None and isinstance(spec.loader, _Loader):
            del sys.modules[name]
