"""A temporary file beside its destination, for writes that appear whole or not at all.

Files distnet writes for people to use (HDF5 datasets, ONNX models,
predictions) are written to a hidden temporary name in the destination's
directory and renamed over the destination once complete.  The temporary
file is created with mode ``0o666`` filtered by the umask, as ``open()``
would create the destination itself; ``tempfile.mkstemp`` would give
``0o600``, and the rename would carry that private mode to the result.
"""
from __future__ import annotations

import os
import secrets

__all__ = ["create_beside", "fill_and_replace", "replace"]


def create_beside(final: str | os.PathLike) -> str:
    """Create an empty, new file next to ``final``: ``.<name>.<random>.tmp``.

    Returns:
        Its path.

    Raises:
        OSError: the directory is missing or not writable.
    """
    final = os.fspath(final)
    directory, name = os.path.split(os.path.abspath(final))
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {final}")  # pragma: no cover


def replace(tmp: str, final: str | os.PathLike) -> None:
    """fsync ``tmp``, rename it over ``final`` and fsync the directory."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    try:
        fd = os.open(os.path.dirname(os.path.abspath(os.fspath(final))), os.O_RDONLY)
    except OSError:  # some file systems do not open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fill_and_replace(tmp: str, final: str | os.PathLike, fill) -> None:
    """Write the file with ``fill(tmp)``, then rename it over ``final``; on any
    failure (an interrupt included) remove ``tmp`` and re-raise, leaving
    ``final`` as it was."""
    try:
        fill(tmp)
        replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
