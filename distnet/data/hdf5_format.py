"""distnet's HDF5 dataset format: writing, converting from IDX, validating.

A dataset file holds (readable with plain ``h5py`` or ``h5dump``)::

    /images   uint8 or float32, shape (N, H, W, C), NHWC; float values in [0, 1]
              chunked by rows, so reading a row reads only its chunk
    /labels   an integer type, shape (N,), values in [0, num_classes)
    attributes of the root group:
      format          "distnet-image-dataset"
      format_version  1
      num_classes     int
      class_names     (optional) N_classes strings
      source          free text: where the data came from
      layout          "NHWC"
      created_by      "distnet <version>"

Files are written atomically: to a temporary file in the destination's
directory, flushed and fsynced, then renamed over the destination.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from distnet.errors import DataError

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "DatasetMetadata", "write_hdf5_dataset",
    "convert_idx_to_hdf5", "read_metadata", "validate_file", "open_file",
]

FORMAT_NAME = "distnet-image-dataset"
FORMAT_VERSION = 1
#: Target size of one chunk of /images; small chunks keep a random row read cheap.
CHUNK_BYTES = 16 * 1024
_LABEL_CHUNK_ROWS = 4096
_VALIDATE_BLOCK_ROWS = 1 << 20


class DatasetMetadata(NamedTuple):
    """What :func:`validate_file` learns about a dataset file."""

    num_samples: int
    image_shape: tuple[int, int, int]
    images_dtype: np.dtype
    labels_dtype: np.dtype
    num_classes: int
    class_names: tuple[str, ...] | None
    source: str
    format_version: int


def _h5py():
    import h5py  # imported lazily: reading IDX files does not need it

    return h5py


def open_file(path: "str | os.PathLike[str] | Any", name: str | None = None,
              chunk_cache_bytes: int = 1 << 20):
    """Open a dataset file read-only; DataError if it is missing or not HDF5.

    Args:
      path: a path or a seekable binary file object.
      name: how to call the file in messages (default: the path).
      chunk_cache_bytes: h5py's per-dataset chunk cache size.

    Returns:
      An open ``h5py.File``.
    """
    h5py = _h5py()
    is_fileobj = hasattr(path, "read") and hasattr(path, "seek")
    if name is None:
        name = repr(getattr(path, "name", "<file object>") if is_fileobj else str(os.fspath(path)))
    if not is_fileobj:
        path = os.fspath(path)
        if not os.path.exists(path):
            raise DataError(f"HDF5 dataset {name}: file: Expect: an existing file Actual: nothing at that path")
        if os.path.isdir(path):
            raise DataError(f"HDF5 dataset {name}: file: Expect: a file Actual: a directory")
    try:
        # No HDF5 file locking: files are only ever replaced by an atomic rename,
        # so readers need no lock, and locks fail on some shared file systems
        # (NFS volumes of a cluster) where every rank opens the same file.
        return h5py.File(path, "r", rdcc_nbytes=int(chunk_cache_bytes), locking=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"HDF5 dataset {name}: file: Expect: an HDF5 file Actual: something "
                        f"h5py cannot open ({exc})") from exc


def _attr_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_text(value[()])
    return str(value)


def _show(value: Any) -> str:
    """repr of an attribute value without numpy's type wrappers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return repr(value)


def validate_file(f, name: str, validate_labels: bool = True) -> DatasetMetadata:
    """Check an open file against the format; return its metadata.

    Args:
      f: an open ``h5py.File``.
      name: how to call the file in messages.
      validate_labels: scan every label (blockwise) for the range check.

    Raises:
      DataError: naming the file, the dataset or attribute, what was
        expected and what was found (first bad row for labels).
    """
    h5py = _h5py()
    where = f"HDF5 dataset {name}"
    fmt = _attr_text(f.attrs.get("format", ""))
    if fmt != FORMAT_NAME:
        raise DataError(f"{where}: attribute 'format': Expect: {FORMAT_NAME!r} Actual: "
                        f"{fmt!r} (convert the data with convert_idx_to_hdf5 or write_hdf5_dataset)")
    version = f.attrs.get("format_version")
    if not isinstance(version, (int, np.integer)) or not 1 <= int(version) <= FORMAT_VERSION:
        raise DataError(f"{where}: attribute 'format_version': Expect: an integer in "
                        f"[1, {FORMAT_VERSION}] Actual: {_show(version)}")
    for key in ("images", "labels"):
        if key not in f:
            raise DataError(f"{where}: dataset '/{key}': Expect: it to exist Actual: "
                            f"only {sorted(f.keys())}")
        if not isinstance(f[key], h5py.Dataset):
            raise DataError(f"{where}: '/{key}': Expect: a dataset Actual: a {type(f[key]).__name__}")
    images, labels = f["images"], f["labels"]
    if images.ndim != 4:
        raise DataError(f"{where}: dataset '/images': Expect: shape (N, H, W, C) Actual: {images.shape}")
    if images.dtype not in (np.dtype(np.uint8), np.dtype(np.float32)):
        raise DataError(f"{where}: dataset '/images': Expect: dtype uint8 or float32 "
                        f"Actual: {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{where}: dataset '/labels': Expect: shape (N,) Actual: {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: dataset '/labels': Expect: an integer dtype Actual: {labels.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{where}: Expect: as many labels as images Actual: {images.shape[0]} "
                        f"images and {labels.shape[0]} labels")
    num_classes = f.attrs.get("num_classes")
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise DataError(f"{where}: attribute 'num_classes': Expect: a positive integer "
                        f"Actual: {_show(num_classes)}")
    num_classes = int(num_classes)
    class_names = None
    if "class_names" in f.attrs:
        raw = np.atleast_1d(f.attrs["class_names"])
        class_names = tuple(_attr_text(v) for v in raw)
        if len(class_names) != num_classes:
            raise DataError(f"{where}: attribute 'class_names': Expect: {num_classes} names "
                            f"Actual: {len(class_names)}")
    if validate_labels:
        for start in range(0, labels.shape[0], _VALIDATE_BLOCK_ROWS):
            block = labels[start:start + _VALIDATE_BLOCK_ROWS]
            bad = (block < 0) | (block >= num_classes)
            if bad.any():
                row = int(np.argmax(bad))
                raise DataError(f"{where}: dataset '/labels': Expect: values in "
                                f"[0, {num_classes}) Actual: {block[row]} at row {start + row}")
    return DatasetMetadata(
        num_samples=int(images.shape[0]),
        image_shape=tuple(int(s) for s in images.shape[1:]),
        images_dtype=images.dtype, labels_dtype=labels.dtype,
        num_classes=num_classes, class_names=class_names,
        source=_attr_text(f.attrs.get("source", "")), format_version=int(version))


def read_metadata(path: "str | os.PathLike[str]", validate_labels: bool = True) -> DatasetMetadata:
    """Open, validate and describe a dataset file (without reading the images)."""
    name = repr(str(os.fspath(path)))
    with open_file(path, name) as f:
        return validate_file(f, name, validate_labels=validate_labels)


def _labels_dtype(num_classes: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.int32):
        if num_classes - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def write_hdf5_dataset(out_path: "str | os.PathLike[str]", images: np.ndarray, labels: np.ndarray,
                       *, num_classes: int | None = None, class_names: Sequence[str] | None = None,
                       source: str = "", chunk_rows: int | None = None,
                       compression: str | None = None) -> Path:
    """Write images and labels as a dataset file, atomically.

    Args:
      out_path: destination (replaced only once the new file is complete).
      images: uint8 or float32 in [0, 1], shape (N, H, W) or (N, H, W, C).
      labels: integers, shape (N,), in [0, num_classes).
      num_classes: default ``max(labels) + 1``.
      class_names: optional, one per class.
      source: free text stored in the ``source`` attribute.
      chunk_rows: rows per chunk of /images (default: about 16 KiB per chunk).
      compression: None (default: fastest random reads), "gzip" or "lzf".

    Returns:
      The destination path.

    Example:
      >>> write_hdf5_dataset("tiny.h5", np.zeros((2, 4, 4), np.uint8), [0, 1])  # doctest: +SKIP
    """
    from distnet._version import __version__
    from distnet.data.datasets import ArrayDataset

    # ArrayDataset validates shapes, dtypes and label range with clear errors.
    ds = ArrayDataset(images, labels, num_classes=num_classes, class_names=class_names)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.dtype.kind == "f":
        images = images.astype(np.float32, copy=False)
    if compression not in (None, "gzip", "lzf"):
        raise DataError(f"write_hdf5_dataset: compression: Expect: None, 'gzip' or 'lzf' "
                        f"Actual: {compression!r}")
    n = len(images)
    row_bytes = int(np.prod(images.shape[1:])) * images.dtype.itemsize
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // max(row_bytes, 1))
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise DataError(f"write_hdf5_dataset: chunk_rows: Expect: a positive integer "
                        f"Actual: {chunk_rows!r}")
    chunk_rows = int(min(chunk_rows, max(n, 1)))
    h5py = _h5py()
    out_path = Path(os.fspath(out_path))
    directory = str(out_path.parent) or "."
    if out_path.is_dir():
        raise DataError(f"write_hdf5_dataset: out_path: Expect: a file name Actual: the "
                        f"directory {str(out_path)!r}")
    from distnet.tempfiles import create_beside, fill_and_replace

    try:
        # Mode 0666 less the umask, as any file the user creates (not mkstemp's 0600).
        tmp = create_beside(out_path)
    except OSError as exc:
        raise DataError(f"write_hdf5_dataset: out_path: Expect: a writable directory Actual: "
                        f"{directory!r} ({exc.strerror or exc})") from exc
    def fill(path: str) -> None:
        with h5py.File(path, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["num_classes"] = np.int64(ds.num_classes)
            if ds.class_names is not None:
                f.attrs["class_names"] = np.array(ds.class_names, dtype=h5py.string_dtype())
            f.attrs["source"] = str(source)
            f.attrs["layout"] = "NHWC"
            f.attrs["created_by"] = f"distnet {__version__}"
            opts = {} if compression is None else {"compression": compression}
            f.create_dataset("images", data=images,
                             chunks=(chunk_rows, *images.shape[1:]) if n else None, **opts)
            f.create_dataset("labels", data=ds.labels.astype(_labels_dtype(ds.num_classes)),
                             chunks=(min(_LABEL_CHUNK_ROWS, n),) if n else None, **opts)

    fill_and_replace(tmp, out_path, fill)
    return out_path


def convert_idx_to_hdf5(images_idx: "str | os.PathLike[str]", labels_idx: "str | os.PathLike[str]",
                        out_path: "str | os.PathLike[str]", *, num_classes: int | None = None,
                        class_names: Sequence[str] | None = None, source: str | None = None,
                        chunk_rows: int | None = None, compression: str | None = None) -> Path:
    """Convert an IDX images/labels pair (raw or .gz) to a dataset file.

    Args:
      images_idx, labels_idx: the IDX files (validated, counts must agree).
      out_path: destination HDF5 file, written atomically.
      num_classes, class_names, chunk_rows, compression: see :func:`write_hdf5_dataset`.
      source: default: "converted from IDX <images file> + <labels file>" (their names).

    Returns:
      The destination path.

    Example:
      >>> convert_idx_to_hdf5("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
      ...                     "test.h5", class_names=FASHION_MNIST_CLASSES)  # doctest: +SKIP
    """
    from distnet.data.idx import read_idx_pair

    images, labels = read_idx_pair(images_idx, labels_idx)
    if images.dtype != np.uint8:
        raise DataError(f"IDX file {str(os.fspath(images_idx))!r}: dtype code (byte 2): Expect: "
                        f"0x08 (unsigned byte) for images Actual: {images.dtype}")
    if source is None:
        source = (f"converted from IDX {os.path.basename(os.fspath(images_idx))} + "
                  f"{os.path.basename(os.fspath(labels_idx))}")
    return write_hdf5_dataset(out_path, images, labels, num_classes=num_classes,
                              class_names=class_names, source=source, chunk_rows=chunk_rows,
                              compression=compression)
