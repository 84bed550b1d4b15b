"""The small TF1 modules tutorials lean on: ``tf.app`` (``run``, ``flags``),
``tf.gfile`` and ``tf.logging``."""
from __future__ import annotations

import glob as _glob
import logging as _logging
import os
import shutil
import sys
from typing import Any, Callable



# -- tf.app ---------------------------------------------------------------------------------

class _Flags:
    """``tf.app.flags.FLAGS``: values defined with ``DEFINE_*``, parsed from ``sys.argv``
    (``--name=value`` or ``--name value``) on first read."""

    def __init__(self) -> None:
        object.__setattr__(self, "_defs", {})
        object.__setattr__(self, "_values", None)

    def _define(self, name: str, default: Any, help: str, kind: Callable) -> None:  # noqa: A002
        self._defs[name] = (default, kind, help)
        object.__setattr__(self, "_values", None)

    def _parse(self, argv: list) -> list:
        values = {n: d for n, (d, _, _) in self._defs.items()}
        rest = [argv[0]] if argv else []
        i = 1
        while i < len(argv):
            arg = argv[i]
            if arg.startswith("--"):
                key, eq, val = arg[2:].partition("=")
                name = key.replace("-", "_")
                if name in self._defs:
                    kind = self._defs[name][1]
                    if not eq:
                        if kind is _bool:
                            val = "true"
                        elif i + 1 < len(argv):
                            i += 1
                            val = argv[i]
                    values[name] = kind(val)
                elif name.startswith("no") and name[2:] in self._defs and self._defs[name[2:]][1] is _bool:
                    values[name[2:]] = False
                else:
                    rest.append(arg)
            else:
                rest.append(arg)
            i += 1
        object.__setattr__(self, "_values", values)
        return rest

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._values is None:
            self._parse(list(sys.argv))
        if name not in self._values:
            raise AttributeError(f"flag --{name} is not defined; define it with tf.app.flags.DEFINE_*(...)")
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        if self._values is None:
            self._parse(list(sys.argv))
        self._values[name] = value

    def __call__(self, argv: list) -> list:
        return self._parse(list(argv))


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).lower() in ("1", "true", "yes", "t", "y")


class _FlagsModule:
    def __init__(self) -> None:
        self.FLAGS = _Flags()

    def DEFINE_string(self, name, default, help=None):  # noqa: N802,A002
        self.FLAGS._define(name, default, help, str)

    def DEFINE_integer(self, name, default, help=None, lower_bound=None, upper_bound=None):  # noqa: N802,A002
        self.FLAGS._define(name, default, help, int)

    def DEFINE_float(self, name, default, help=None, lower_bound=None, upper_bound=None):  # noqa: N802,A002
        self.FLAGS._define(name, default, help, float)

    def DEFINE_boolean(self, name, default, help=None):  # noqa: N802,A002
        self.FLAGS._define(name, default, help, _bool)

    DEFINE_bool = DEFINE_boolean


class _App:
    """``tf.app``: ``run(main)`` and ``flags``."""

    def __init__(self) -> None:
        self.flags = _FlagsModule()

    def run(self, main: Callable | None = None, argv: list | None = None):
        """Parse the flags, call ``main(argv)`` and exit with its result (TF1's ``tf.app.run``)."""
        main = main or sys.modules["__main__"].__dict__.get("main")
        if main is None:
            raise ValueError("tf.app.run: Expect: main=function or a function `main` in the program Actual: none")
        rest = self.flags.FLAGS(argv if argv is not None else sys.argv)
        sys.exit(main(rest))


# -- tf.gfile -------------------------------------------------------------------------------

class _GFile:
    """``tf.gfile``: local files only."""

    GFile = staticmethod(open)
    Open = staticmethod(open)
    FastGFile = staticmethod(open)

    @staticmethod
    def Exists(path):  # noqa: N802
        return os.path.exists(path)

    @staticmethod
    def IsDirectory(path):  # noqa: N802
        return os.path.isdir(path)

    @staticmethod
    def MakeDirs(path):  # noqa: N802
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def MkDir(path):  # noqa: N802
        os.mkdir(path)

    @staticmethod
    def ListDirectory(path):  # noqa: N802
        return sorted(os.listdir(path))

    @staticmethod
    def Glob(pattern):  # noqa: N802
        return sorted(_glob.glob(pattern))

    @staticmethod
    def Remove(path):  # noqa: N802
        os.remove(path)

    @staticmethod
    def DeleteRecursively(path):  # noqa: N802
        shutil.rmtree(path)

    @staticmethod
    def Copy(src, dst, overwrite=False):  # noqa: N802
        if os.path.exists(dst) and not overwrite:
            raise FileExistsError(f"tf.gfile.Copy: {dst} exists; pass overwrite=True")
        shutil.copyfile(src, dst)

    @staticmethod
    def Rename(src, dst, overwrite=False):  # noqa: N802
        if os.path.exists(dst) and not overwrite:
            raise FileExistsError(f"tf.gfile.Rename: {dst} exists; pass overwrite=True")
        os.replace(src, dst)


# -- tf.logging -----------------------------------------------------------------------------

class _Logging:
    DEBUG, INFO, WARN, ERROR, FATAL = _logging.DEBUG, _logging.INFO, _logging.WARNING, _logging.ERROR, _logging.FATAL

    def __init__(self) -> None:
        self._log = _logging.getLogger("distnet.compat.v1")

    def set_verbosity(self, level):
        """TF1: messages at ``level`` and above reach stderr (``INFO:tensorflow:...``)."""
        self._log.setLevel(level)
        if not self._log.handlers:
            handler = _logging.StreamHandler()
            handler.setFormatter(_logging.Formatter("%(levelname)s:tensorflow:%(message)s"))
            self._log.addHandler(handler)

    def debug(self, msg, *args):
        self._log.debug(msg, *args)

    def info(self, msg, *args):
        self._log.info(msg, *args)

    def warning(self, msg, *args):
        self._log.warning(msg, *args)

    warn = warning

    def error(self, msg, *args):
        self._log.error(msg, *args)


app = _App()
flags = app.flags
gfile = _GFile()
logging = _Logging()
