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
import threading
from typing import Any, Callable, Iterable, Mapping

import h5py
import numpy as np

from distnet.checkpoint.state import FORMAT_NAME, CheckpointState
from distnet.errors import CheckpointError, InvalidArgumentError

#: Target size of one HDF5 chunk (each chunk carries its own fletcher32
#: checksum): small enough to stay in the CPU cache while its checksum is
#: computed (benchmarks/checkpoint.py --sweep; figures in benchmarks/README.md).
CHUNK_BYTES = 2 ** 20
#: HDF5 format bounds.  'v110' files checksum all their metadata: superblock,
#: object headers and the chunk index (a fixed array; 'v108' files index
#: chunks with a version-1 B-tree, which has none), so a damaged byte of
#: metadata is detected instead of misread or looped on.  Every HDF5 since
#: 1.10 (2017) reads them.
LIBVER = ("v110", "v110")
_DIGEST_MAGIC = b"distnet-checkpoint-digest-v1\n"


def chunk_shape(shape: tuple[int, ...], itemsize: int, target: int = CHUNK_BYTES) -> tuple[int, ...] | None:
    """Chunk dims of at most about ``target`` bytes, cut along the leading
    axes into equal pieces (so the last chunk is not mostly padding: HDF5
    allocates every chunk in full).

    Returns:
        The chunk shape, or ``None`` for scalars and empty arrays (stored
        contiguous, without a filter; they are covered by the digest).
    Example:
        >>> chunk_shape((6272, 1024), 4, target=2 ** 20)
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
            pieces = -(-n // max(1, target // unit))   # ceil(n / most rows that fit)
            chunk[i] = -(-n // pieces)                 # equal pieces of at most that many
            break
        chunk[i] = 1
    return tuple(chunk)


def header_items(state: CheckpointState) -> dict[str, str]:
    """The non-array content of a checkpoint as ``{attribute path: text}``,
    exactly as the digest sees it (ints in decimal, dicts as sorted JSON)."""
    opt = state.optimizer
    items = {
        "/format": FORMAT_NAME,
        "/state/format_version": str(int(state.format_version)),
        "/state/distnet_version": state.distnet_version,
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
    if state.format_version >= 2:  # format 1 had no /state@data
        items["/state/data"] = _json(state.data)
    if state.format_version >= 3:  # formats 1 and 2 had no /state@conv_algorithms
        items["/state/conv_algorithms"] = _json(state.conv_algorithms)
    return items


#: Header attributes stored as int64 (the others are UTF-8 strings).
INT_ATTRIBUTES = frozenset({"/state/format_version", "/optimizer/iterations", "/state/step",
                            "/state/epoch", "/state/position", "/state/world_size"})


def _json(value: Any) -> str:
    # allow_nan: a diverged run's loss is NaN and must still be saved.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Digest:
    """Incremental form of :func:`compute_digest`: feed arrays in sorted path
    order with :meth:`add`, then :meth:`finish` with the header."""

    def __init__(self) -> None:
        self._h = hashlib.sha256(_DIGEST_MAGIC)
        self._last: str | None = None

    def add(self, path: str, arr: np.ndarray) -> None:
        if self._last is not None and path <= self._last:
            raise ValueError(f"digest arrays must come in sorted order: {path!r} after {self._last!r}")
        self._last = path
        p = path.encode("utf-8")
        self._h.update(b"A%d:%s%s:%s:%d\n" % (len(p), p, arr.dtype.str.encode(),
                                               ",".join(map(str, arr.shape)).encode(), arr.nbytes))
        if arr.nbytes:
            # hashlib reads the buffer directly (no copy) and releases the GIL.
            self._h.update(memoryview(arr).cast("B"))

    def finish(self, header: Mapping[str, str]) -> str:
        for key in sorted(header):
            k = key.encode("utf-8")
            v = header[key].encode("utf-8")
            self._h.update(b"H%d:%s%d:%s\n" % (len(k), k, len(v), v))
        return self._h.hexdigest()


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
    d = Digest()
    for path, arr in sorted(arrays, key=lambda item: item[0]):
        d.add(path, arr)
    return d.finish(header)


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
                     comm: Any = None, is_writer: bool | None = None,
                     chunk_bytes: int = CHUNK_BYTES) -> str | None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename, fsync dir).

    Args:
        path: final file name (its directory must exist).
        state: the state to write; it is validated first.  Its arrays must
            not change until the call returns (they are written and hashed
            in place, without a copy).
        comm: a communicator; only its rank 0 writes.
        is_writer: without ``comm``, whether this process writes (default True).
        chunk_bytes: target HDF5 chunk size (one fletcher32 checksum each).
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
        raise InvalidArgumentError(f"state: Expect: a CheckpointState Actual: {type(state).__name__}")
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise InvalidArgumentError(f"chunk_bytes: Expect: a positive int Actual: {chunk_bytes!r}")
    state.validate()
    final = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(final)
    if not os.path.isdir(directory):
        raise CheckpointError(f"cannot write checkpoint {final}: directory {directory} does not exist")
    header = header_items(state)
    for key, text in header.items():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InvalidArgumentError(f"checkpoint text {key} is not encodable as UTF-8: {err}") from None
        if "\x00" in text:  # fixed-length HDF5 strings are NUL-padded
            raise InvalidArgumentError(f"checkpoint text {key} contains a NUL character")
    # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    arrays = {p: a if a.flags.c_contiguous else a.copy(order="C") for p, a in state.arrays().items()}
    # The digest is computed in a thread while HDF5 writes (hashlib releases
    # the GIL), and stored last.
    digest = _DigestThread(arrays, header)
    tmp = temp_path_for(final)
    try:
        _write_file(tmp, arrays, header, digest.result, sorted(state.optimizer["slots"]), chunk_bytes)
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


class _DigestThread:
    """compute_digest in a background thread; ``result()`` waits for it."""

    def __init__(self, arrays: Mapping[str, np.ndarray], header: Mapping[str, str]):
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(arrays, header),
                                        name="checkpoint-digest", daemon=True)
        self._thread.start()

    def _run(self, arrays: Mapping[str, np.ndarray], header: Mapping[str, str]) -> None:
        try:
            self._value = compute_digest(arrays.items(), header)
        except BaseException as err:  # handed to the caller by result()
            self._error = err

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def set_text_attribute(obj: Any, name: str, text: str) -> None:
    """Store ``text`` as a scalar fixed-length UTF-8 string attribute.

    Fixed length, not variable length: the bytes sit in the object header,
    which HDF5 checksums, while variable-length strings live in the global
    heap, which has no checksum (a damaged heap can even hang the HDF5 reader).
    """
    raw = text.encode("utf-8")
    obj.attrs.create(name, data=np.array(raw, dtype=f"S{max(1, len(raw))}"),
                     dtype=h5py.string_dtype("utf-8", max(1, len(raw))))


def _write_file(tmp: str, arrays: Mapping[str, np.ndarray], header: Mapping[str, str],
                digest: Callable[[], str], slots: list[str], chunk_bytes: int = CHUNK_BYTES,
                libver: Any = LIBVER, rdcc_nbytes: int = 0) -> None:
    # rdcc_nbytes=0: no chunk cache; every chunk is written once, whole (the
    # cache made no measurable difference on a quiet machine).
    with h5py.File(tmp, "w", libver=libver, rdcc_nbytes=rdcc_nbytes) as f:
        groups = {"/": f}
        for name in ("params", "ema", "optimizer", "state"):
            groups["/" + name] = f.create_group(name)
        for slot in slots:  # a slot holding no variable still round-trips
            groups["/optimizer"].create_group(slot)
        for key, text in header.items():
            where, attr = key.rsplit("/", 1)
            obj = groups[where or "/"]
            if key in INT_ATTRIBUTES:
                obj.attrs[attr] = np.int64(text)
            else:
                set_text_attribute(obj, attr, text)
        for path, arr in arrays.items():
            chunks = chunk_shape(arr.shape, arr.itemsize, chunk_bytes)
            if chunks is None:
                f.create_dataset(path, data=arr)
            else:
                ds = f.create_dataset(path, shape=arr.shape, dtype=arr.dtype,
                                      chunks=chunks, fletcher32=True)
                ds.write_direct(arr)
        set_text_attribute(f, "sha256", digest())
