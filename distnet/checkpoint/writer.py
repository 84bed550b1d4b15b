"""Write a :class:`CheckpointState` to an HDF5 file, atomically.

Only the writer (rank 0) does anything.  The file is written to a temporary
name in the same directory (``.<final name>.tmp-<pid>``), closed, fsynced,
renamed over the final name, and the directory is fsynced, so a reader sees
either the previous file or the complete new one, never a half-written file.

Every non-empty array is stored chunked with HDF5's fletcher32 filter (a
checksum per chunk) and a SHA-256 digest over every array and every state
attribute is stored as the root attribute ``sha256`` (see
:func:`compute_digest`).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

from distnet.checkpoint.state import FORMAT_NAME, CheckpointState
from distnet.errors import CheckpointError, InvalidArgumentError

#: Target size of one HDF5 chunk (each chunk carries its own fletcher32
#: checksum).  Measured with benchmarks/checkpoint.py: 4 MiB chunks write as
#: fast as larger ones and keep the chunk index small.
CHUNK_BYTES = 4 * 2 ** 20
#: HDF5 format bounds: 'v108' and later store checksummed object headers and
#: superblock (so a flipped byte in metadata is detected, not misread), and
#: every HDF5 since 1.8 reads them.
LIBVER = ("v108", "v108")
_DIGEST_MAGIC = b"distnet-checkpoint-digest-v1\n"


def chunk_shape(shape: tuple[int, ...], itemsize: int, target: int = CHUNK_BYTES) -> tuple[int, ...] | None:
    """Chunk dims of about ``target`` bytes, cut along the leading axes.

    Returns:
        The chunk shape, or ``None`` for scalars and empty arrays (stored
        contiguous, without a filter; they are covered by the digest).
    Example:
        >>> chunk_shape((6272, 1024), 4)
        (256, 1024)
    """
    if len(shape) == 0 or 0 in shape:
        return None
    chunk = list(shape)
    unit = itemsize
    for n in shape:
        unit *= n
    for i, n in enumerate(shape):
        unit //= n  # bytes of one index along axis i
        if unit * n <= target:
            break
        if unit <= target:
            chunk[i] = max(1, target // unit)
            break
        chunk[i] = 1
    return tuple(chunk)


def header_items(state: CheckpointState) -> dict[str, str]:
    """The non-array content of a checkpoint as ``{attribute path: text}``,
    exactly as the digest sees it (ints in decimal, dicts as sorted JSON)."""
    opt = state.optimizer
    return {
        "/format": FORMAT_NAME,
        "/format_version": str(int(state.format_version)),
        "/distnet_version": state.distnet_version,
        "/optimizer/name": opt["name"],
        "/optimizer/iterations": str(int(opt["iterations"])),
        "/optimizer/hyper": _json(opt["hyper"]),
        "/state/step": str(state.step),
        "/state/epoch": str(state.epoch),
        "/state/position": str(state.position),
        "/state/world_size": str(state.world_size),
        "/state/config_text": state.config_text,
        "/state/rng": _json(state.rng),
        "/state/metrics": _json(state.metrics),
    }


#: Header attributes stored as int64 (the others are UTF-8 strings).
INT_ATTRIBUTES = frozenset({"/format_version", "/optimizer/iterations", "/state/step",
                            "/state/epoch", "/state/position", "/state/world_size"})


def _json(value: Any) -> str:
    # allow_nan: a diverged run's loss is NaN and must still be saved.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_digest(arrays: Iterable[tuple[str, np.ndarray]], header: Mapping[str, str]) -> str:
    """SHA-256 over every array (path, dtype, shape and bytes, in sorted path
    order) and every header item (sorted), with length-prefixed framing so
    that no two different contents hash the same stream.

    Args:
        arrays: ``(HDF5 path, C-contiguous ndarray)`` pairs.
        header: :func:`header_items` of the state.
    Returns:
        The hex digest.
    """
    h = hashlib.sha256(_DIGEST_MAGIC)
    for path, arr in sorted(arrays, key=lambda item: item[0]):
        p = path.encode("utf-8")
        h.update(b"A%d:%s%s:%s:%d\n" % (len(p), p, arr.dtype.str.encode(),
                                        ",".join(map(str, arr.shape)).encode(), arr.nbytes))
        if arr.nbytes:
            # hashlib reads the buffer directly (no copy) and releases the GIL.
            h.update(memoryview(arr).cast("B"))
    for key in sorted(header):
        k = key.encode("utf-8")
        v = header[key].encode("utf-8")
        h.update(b"H%d:%s%d:%s\n" % (len(k), k, len(v), v))
    return h.hexdigest()


def resolve_writer(comm: Any = None, is_writer: bool | None = None) -> bool:
    """Whether this process writes: rank 0 of ``comm`` if given, else
    ``is_writer`` (default True, the single-process case)."""
    if comm is not None:
        return int(comm.rank) == 0
    return True if is_writer is None else bool(is_writer)


def temp_path_for(path: str) -> str:
    """The temporary name a checkpoint is written under before its rename."""
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".{tail}.tmp-{os.getpid()}")


def fsync_directory(directory: str) -> None:
    """fsync a directory so that a rename or unlink in it is durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(path: str | os.PathLike, state: CheckpointState, *,
                     comm: Any = None, is_writer: bool | None = None) -> str | None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename, fsync dir).

    Args:
        path: final file name (its directory must exist).
        state: the state to write; it is validated first.
        comm: a communicator; only its rank 0 writes.
        is_writer: without ``comm``, whether this process writes (default True).
    Returns:
        The absolute path written, or ``None`` on a process that does not write.
    Raises:
        InvalidArgumentError: ``state`` is malformed.
        CheckpointError: the file could not be written (the temporary file is
            removed and any previous file at ``path`` is left untouched).
    Example:
        >>> write_checkpoint("ckpt-00000100.h5", state, comm=comm)
    """
    if not resolve_writer(comm, is_writer):
        return None
    if not isinstance(state, CheckpointState):
        raise InvalidArgumentError(f"state must be a CheckpointState, got {type(state).__name__}")
    state.validate()
    final = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(final)
    if not os.path.isdir(directory):
        raise CheckpointError(f"cannot write checkpoint {final}: directory {directory} does not exist")
    header = header_items(state)
    try:
        for key, text in header.items():
            text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidArgumentError(f"checkpoint text {key} is not encodable as UTF-8: {err}") from None
    # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    arrays = {p: a if a.flags.c_contiguous else a.copy(order="C") for p, a in state.arrays().items()}
    digest = compute_digest(arrays.items(), header)
    tmp = temp_path_for(final)
    try:
        _write_file(tmp, arrays, header, digest, sorted(state.optimizer["slots"]))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_directory(directory)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, (OSError, ValueError, TypeError, RuntimeError)):
            raise CheckpointError(f"could not write checkpoint {final}: {err}") from err
        raise
    return final


def _write_file(tmp: str, arrays: Mapping[str, np.ndarray], header: Mapping[str, str],
                digest: str, slots: list[str]) -> None:
    with h5py.File(tmp, "w", libver=LIBVER) as f:
        groups = {"/": f}
        for name in ("params", "ema", "optimizer", "state"):
            groups["/" + name] = f.create_group(name)
        for slot in slots:  # a slot holding no variable still round-trips
            groups["/optimizer"].create_group(slot)
        for key, text in header.items():
            where, attr = key.rsplit("/", 1)
            obj = groups[where or "/"]
            # Strings are variable-length UTF-8 (h5dump prints them as text).
            obj.attrs[attr] = np.int64(text) if key in INT_ATTRIBUTES else text
        f.attrs["sha256"] = digest
        for path, arr in arrays.items():
            chunks = chunk_shape(arr.shape, arr.itemsize)
            if chunks is None:
                f.create_dataset(path, data=arr)
            else:
                ds = f.create_dataset(path, shape=arr.shape, dtype=arr.dtype,
                                      chunks=chunks, fletcher32=True)
                ds.write_direct(arr)
