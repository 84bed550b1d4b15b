"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a header followed by the array in C order::

    bytes 0-1   0x00 0x00            magic: two zero bytes
    byte  2     dtype code           0x08 ubyte, 0x09 byte, 0x0B short,
                                     0x0C int, 0x0D float, 0x0E double
    byte  3     number of dimensions (>= 1)
    4 * ndim    the size of each dimension, unsigned 32-bit big-endian
    ...         the values, big-endian, exactly prod(sizes) of them

A file may be gzip-compressed (``*.gz`` as distributed); compression is
detected from the content (gzip's magic ``0x1f 0x8b``), not from the name.

Every defect -- bad magic, unknown dtype code, truncated data, trailing
bytes, a corrupt or truncated gzip stream, images and labels that do not
pair up -- raises :class:`distnet.errors.DataError` naming the file, the
field, what was expected and what was found.  (The common MNIST loaders check
with ``assert``, which ``python -O`` removes; we never do.)
"""
from __future__ import annotations

import gzip
import io
import os
import stat
import zlib
from typing import BinaryIO, NamedTuple

import numpy as np

from distnet.errors import DataError

__all__ = [
    "IDX_DTYPES", "IdxHeader", "decode_idx", "read_idx", "read_idx_header",
    "read_idx_pair", "encode_idx", "write_idx",
]

#: dtype code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_DTYPE = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot compress better than about 1032:1, so a gzip file of c bytes
# holds at most ~1032*c bytes; a header declaring more is truncated for sure
# (and we refuse to allocate a buffer for it).
_MAX_DEFLATE_RATIO = 1100
_READ_BLOCK = 1 << 20


class IdxHeader(NamedTuple):
    """The decoded header of an IDX file."""

    dtype: np.dtype          # big-endian dtype of the values
    shape: tuple[int, ...]   # declared sizes
    header_bytes: int        # 4 + 4 * ndim
    compressed: bool         # the file was gzip-compressed

    @property
    def payload_bytes(self) -> int:
        """Number of data bytes the header declares."""
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def _fail(name: str, field: str, expected: str, found: str) -> DataError:
    return DataError(f"IDX file {name}: {field}: Expect: {expected} Actual: {found}")


def _hex(data: bytes) -> str:
    return " ".join(f"0x{b:02X}" for b in data) if data else "nothing (end of file)"


class _Stream:
    """A binary stream that turns gzip/zlib/IO failures into DataError."""

    def __init__(self, raw: BinaryIO, name: str, compressed: bool):
        self.name = name
        self.compressed = compressed
        self._f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw

    def _wrap(self, exc: BaseException) -> DataError:
        if self.compressed:
            what = "truncated" if isinstance(exc, EOFError) else "corrupt"
            return _fail(self.name, "gzip stream", "a complete, valid gzip stream",
                         f"a {what} stream ({type(exc).__name__}: {exc})")
        return DataError(f"IDX file {self.name}: could not be read ({type(exc).__name__}: {exc})")

    def read(self, n: int) -> bytes:
        try:
            return self._f.read(n)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise self._wrap(exc) from exc

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` as far as the stream allows; return the bytes read."""
        got = 0
        try:
            while got < len(buf):
                n = self._f.readinto(buf[got:got + _READ_BLOCK])
                if not n:
                    break
                got += n
        except (OSError, EOFError, zlib.error) as exc:
            raise self._wrap(exc) from exc
        return got


def _read_exact(stream: _Stream, n: int, field: str, expected: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise _fail(stream.name, field, expected,
                    f"the file ends after {len(data)} of {n} bytes")
    return data


def _parse_header(stream: _Stream) -> IdxHeader:
    name = stream.name
    first = stream.read(4)
    if len(first) < 2 or first[:2] != b"\x00\x00":
        raise _fail(name, "magic number (bytes 0-1)", "0x00 0x00", _hex(first[:2]))
    if len(first) < 3:
        raise _fail(name, "dtype code (byte 2)", "one byte", "end of file")
    code = first[2]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise _fail(name, "dtype code (byte 2)", f"one of {known}", f"0x{code:02X}")
    if len(first) < 4:
        raise _fail(name, "number of dimensions (byte 3)", "one byte", "end of file")
    ndim = first[3]
    if ndim < 1:
        raise _fail(name, "number of dimensions (byte 3)", "at least 1", str(ndim))
    raw = _read_exact(stream, 4 * ndim, "dimension sizes (bytes 4-%d)" % (3 + 4 * ndim),
                      f"{ndim} big-endian 32-bit sizes")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4"))
    return IdxHeader(IDX_DTYPES[code], shape, 4 + 4 * ndim, stream.compressed)


def _decode(raw: BinaryIO, name: str, total_size: int | None, ndim: int | None,
            header_only: bool = False):
    # Peek, not read: the stream may be a pipe, which cannot seek back.
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else raw.getvalue()[:2]
    compressed = head == _GZIP_MAGIC
    stream = _Stream(raw, name, compressed)
    header = _parse_header(stream)
    if ndim is not None and len(header.shape) != ndim:
        raise _fail(name, "number of dimensions (byte 3)", str(ndim), str(len(header.shape)))
    if header_only:
        return header
    need = header.payload_bytes
    shape_txt = "x".join(map(str, header.shape))
    expected = f"{need} data bytes ({shape_txt} values of {header.dtype.itemsize} byte(s))"
    if total_size is not None:
        # Refuse to allocate what the file cannot hold.
        limit = total_size * _MAX_DEFLATE_RATIO if compressed else total_size - header.header_bytes
        if need > limit:
            found = (f"a {total_size}-byte compressed file, which cannot hold that many"
                     if compressed else f"{max(limit, 0)} data bytes (the file is truncated)")
            raise _fail(name, "data length", expected, found)
    out = np.empty(need, dtype=np.uint8)
    got = stream.readinto(memoryview(out))
    if got < need:
        raise _fail(name, "data length", expected, f"{got} data bytes (the file is truncated)")
    extra = stream.read(_READ_BLOCK)
    if extra:
        more = len(extra)
        while True:
            chunk = stream.read(_READ_BLOCK)
            if not chunk:
                break
            more += len(chunk)
        raise _fail(name, "data length", expected, f"{more} trailing byte(s) after the data")
    arr = out.view(header.dtype).reshape(header.shape)
    return arr.astype(header.dtype.newbyteorder("="), copy=False)


def decode_idx(data: bytes, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Decode an IDX file held in memory (raw or gzip-compressed).

    Args:
      data: the file's bytes.
      name: how to call the data in error messages.
      ndim: if given, the number of dimensions required.

    Returns:
      The array in native byte order, with the declared shape.

    Raises:
      DataError: on any defect, naming ``name`` and the field.

    Example:
      >>> decode_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
      [7, 9]
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"IDX data {name}: Expect: bytes Actual: {type(data).__name__}")
    return _decode(io.BytesIO(bytes(data)), name, len(data), ndim)


def _open(path) -> tuple[BinaryIO, str, int | None]:
    try:
        fspath = os.fspath(path)
    except TypeError:
        raise DataError(f"IDX file: Expect: a path (str or os.PathLike) Actual: "
                        f"{type(path).__name__}") from None
    name = repr(str(fspath))
    try:
        f = open(fspath, "rb")
        st = os.fstat(f.fileno())
        # The size bounds the declared length only for a regular file (not a pipe).
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
    except OSError as exc:
        raise DataError(f"IDX file {name}: cannot be opened ({exc.strerror or exc})") from exc
    return f, name, size


def read_idx(path: "str | os.PathLike[str]", ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (detected from the content).

    Args:
      path: the file.
      ndim: if given, the number of dimensions required (3 for images, 1 for labels).

    Returns:
      The array in native byte order with the declared shape and dtype.

    Raises:
      DataError: the file is missing or malformed; the message names the file,
        the field, what was expected and what was found.

    Example:
      >>> labels = read_idx("train-labels-idx1-ubyte.gz", ndim=1)  # doctest: +SKIP
    """
    f, name, size = _open(path)
    with f:
        return _decode(f, name, size, ndim)


def read_idx_header(path: "str | os.PathLike[str]") -> IdxHeader:
    """Read and check only the header of an IDX file (cheap, even for .gz)."""
    f, name, size = _open(path)
    with f:
        return _decode(f, name, size, None, header_only=True)


def read_idx_pair(images_path: "str | os.PathLike[str]",
                  labels_path: "str | os.PathLike[str]") -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file and check that they pair up.

    Args:
      images_path: IDX file of shape (N, H, W) or (N, H, W, C).
      labels_path: IDX file of shape (N,) with an integer dtype.

    Returns:
      ``(images, labels)`` as stored (MNIST: uint8 and uint8).

    Raises:
      DataError: either file is malformed, or the counts differ.

    Example:
      >>> x, y = read_idx_pair("t10k-images-idx3-ubyte.gz",
      ...                      "t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
    """
    # Headers first: a count mismatch is reported before reading megabytes.
    ih = read_idx_header(images_path)
    lh = read_idx_header(labels_path)
    iname, lname = repr(str(os.fspath(images_path))), repr(str(os.fspath(labels_path)))
    if len(ih.shape) not in (3, 4):
        raise _fail(iname, "number of dimensions (byte 3)",
                    "3 (N, H, W) or 4 (N, H, W, C) for images", str(len(ih.shape)))
    if len(lh.shape) != 1:
        raise _fail(lname, "number of dimensions (byte 3)", "1 (N,) for labels", str(len(lh.shape)))
    if lh.dtype.kind not in "iu":
        raise _fail(lname, "dtype code (byte 2)", "an integer type for labels",
                    f"{lh.dtype.newbyteorder('=').name}")
    if ih.shape[0] != lh.shape[0]:
        raise DataError(
            f"IDX files {iname} and {lname}: item count (first dimension): Expect: the "
            f"same number of images and labels Actual: {ih.shape[0]} images and "
            f"{lh.shape[0]} labels")
    return read_idx(images_path), read_idx(labels_path)


def encode_idx(array: np.ndarray, compress: bool = False) -> bytes:
    """Encode an array as IDX bytes (optionally gzip with a fixed timestamp).

    Args:
      array: at least 1-D, of dtype uint8, int8, int16, int32, float32 or float64.
      compress: gzip the result (level 9, mtime 0, so output is reproducible).

    Returns:
      The file's bytes.
    """
    arr = np.asarray(array)
    code = _CODE_OF_DTYPE.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX encoding: dtype: Expect: one of uint8, int8, int16, int32, "
                        f"float32, float64 Actual: {arr.dtype}")
    if not 1 <= arr.ndim <= 255:
        raise DataError(f"IDX encoding: number of dimensions: Expect: 1 to 255 Actual: {arr.ndim}")
    if any(s >= 2**32 for s in arr.shape):
        raise DataError(f"IDX encoding: dimension sizes: Expect: < 2**32 Actual: {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
            gz.write(body)
        body = buf.getvalue()
    return body


def write_idx(path: "str | os.PathLike[str]", array: np.ndarray,
              compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file.

    Args:
      path: destination; written to a temporary file then renamed.
      array: see :func:`encode_idx`.
      compress: gzip the file; default: when ``path`` ends in ``.gz``.
    """
    path = os.fspath(path)
    if compress is None:
        compress = str(path).endswith(".gz")
    data = encode_idx(array, compress=compress)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
