"""Image-classification datasets: in memory (:class:`ArrayDataset`) and on
disk (:class:`HDF5Dataset`).

Contract (docs/DESIGN.md): ``len(ds)``, ``ds.num_classes``, ``ds.image_shape``
(H, W, C) and ``ds.read(indices) -> (x, y)`` with ``x`` float32 NHWC scaled
to [0, 1] and ``y`` int64.  ``read`` returns exactly the rows asked for, in
the order asked (repeats allowed); an HDF5 dataset reads only those rows from
the file, so each rank of a data-parallel job touches only its shard.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from distnet.errors import DataError, InvalidArgumentError

__all__ = ["Dataset", "ArrayDataset", "HDF5Dataset", "images_to_float", "as_dataset"]


def images_to_float(images: np.ndarray) -> np.ndarray:
    """Convert stored images to float32 NHWC in [0, 1].

    uint8 pixels are divided by 255 (the MNIST convention); float images are
    assumed already scaled.  A missing channel axis is added.
    """
    if images.dtype == np.uint8:
        x = images.astype(np.float32)
        x /= np.float32(255.0)  # a true division: 255 -> exactly 1.0, k -> nearest float32 to k/255
    else:
        x = images.astype(np.float32, copy=False)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return x


def check_labels(labels: np.ndarray, num_classes: int, where: str, offset: int = 0) -> None:
    """Raise DataError naming the first label outside [0, num_classes)."""
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where}: labels: Expect: values in [0, {num_classes}) Actual: "
                        f"{labels[row]} at row {offset + row}")


def check_float_images(images: np.ndarray, where: str, rows: np.ndarray | None = None) -> None:
    """Raise DataError naming the first row of a float image array outside [0, 1] or not finite."""
    flat = images.reshape(len(images), -1)
    ok = np.isfinite(flat) & (flat >= 0) & (flat <= 1)
    good_rows = ok.all(axis=1)
    if not good_rows.all():
        i = int(np.argmin(good_rows))
        value = flat[i][~ok[i]][0]
        row = int(rows[i]) if rows is not None else i
        raise DataError(f"{where}: images: Expect: float values in [0, 1] Actual: {value} "
                        f"in row {row}")


class Dataset:
    """Base class: a finite, indexable set of labelled images.

    Subclasses set ``num_classes``, ``image_shape`` and implement ``__len__``
    and ``_read_sorted``.
    """

    num_classes: int | None
    #: The per-sample feature shape ((H, W, C) for images, (features,) for tabular data).
    image_shape: tuple[int, ...]
    #: ``"classes"`` (integer labels) or ``"values"`` (float targets: a regression).
    target: str = "classes"
    class_names: tuple[str, ...] | None = None
    source: str = ""
    #: The files the samples were read from (for :mod:`distnet.data.identity`).
    files: tuple[str, ...] = ()

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _indices(self, indices: Any) -> np.ndarray:
        """Validate ``indices``: a 1-D sequence of ints in [0, len(self))."""
        if isinstance(indices, slice):
            return np.arange(len(self))[indices]
        idx = np.asarray(indices)
        if idx.ndim == 0:
            idx = idx.reshape(1)
        if idx.ndim != 1:
            raise InvalidArgumentError(f"read: indices: Expect: a 1-D sequence of row numbers "
                                       f"Actual: an array of shape {idx.shape}")
        if idx.size == 0:
            return idx.astype(np.int64)
        if idx.dtype.kind not in "iu":
            raise InvalidArgumentError(f"read: indices: Expect: integers Actual: dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        bad = (idx < 0) | (idx >= len(self))
        if bad.any():
            pos = int(np.argmax(bad))
            raise InvalidArgumentError(
                f"read: indices: Expect: row numbers in [0, {len(self)}) Actual: {idx[pos]} "
                f"at position {pos}")
        return idx

    def read(self, indices: Sequence[int] | np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` for the rows ``indices``, in that order.

        Args:
          indices: row numbers (any order, repeats allowed) or a slice.

        Returns:
          ``x`` float32 of shape (n, *image_shape) (images in [0, 1]); ``y`` int64 of shape (n,)
          (float32 targets for a regression).

        Example:
          >>> x, y = ds.read([3, 1, 2])  # doctest: +SKIP
        """
        idx = self._indices(indices)
        if idx.size == 0:
            return (np.zeros((0, *self.image_shape), np.float32),
                    np.zeros(0, np.float32 if self.target == "values" else np.int64))
        # Read each distinct row once, in increasing order, then un-permute.
        uniq, inverse = np.unique(idx, return_inverse=True)
        x, y = self._read_sorted(uniq)
        if len(uniq) != len(idx) or not np.array_equal(uniq, idx):
            x, y = x[inverse], y[inverse]
        return x, y

    def _read_sorted(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return (f"{type(self).__name__}(len={len(self)}, image_shape={self.image_shape}, "
                f"num_classes={self.num_classes}{src})")


def _image_shape(shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The per-sample shape: (H, W) images get their channel axis, any other shape is kept."""
    if len(shape) == 3:
        return (int(shape[1]), int(shape[2]), 1)
    if len(shape) >= 2:
        return tuple(int(n) for n in shape[1:])
    raise DataError(f"{where}: images: Expect: shape (N, ...) with one row per sample "
                    f"(e.g. (N, features) or (N, H, W)) Actual: {tuple(shape)}")


def _check_num_classes(num_classes: Any, where: str) -> int:
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise DataError(f"{where}: num_classes: Expect: a positive integer Actual: {num_classes!r}")
    return int(num_classes)


def _check_class_names(class_names: Any, num_classes: int, where: str) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    names = tuple(str(n) for n in class_names)
    if len(names) != num_classes:
        raise DataError(f"{where}: class_names: Expect: {num_classes} names (one per class) "
                        f"Actual: {len(names)}")
    return names


class ArrayDataset(Dataset):
    """A dataset held in memory.

    Args:
      images: the features, one row per sample: images of shape (N, H, W) (a
        channel axis is added) or (N, H, W, C), uint8 (scaled by 1/255 on read)
        or float in [0, 1]; or any other shape, (N, features) for tabular data,
        float (any finite values) or uint8.
      labels: integer class labels of shape (N,); or float targets of shape
        (N,) or (N, k) for a regression (then ``num_classes`` is None and
        ``target`` is ``"values"``).
      num_classes: number of classes; default ``max(labels) + 1`` (Keras'
        convention for ``to_categorical``).  Pass it explicitly for a subset
        that might miss the last class.
      class_names: optional names, one per class.
      source: free text saying where the data came from.
      files: the files the arrays were read from, if any.

    Example:
      >>> ds = ArrayDataset(np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 2, 1]))
      >>> len(ds), ds.image_shape, ds.num_classes
      (4, (28, 28, 1), 3)
      >>> reg = ArrayDataset(np.random.rand(500, 20), np.random.rand(500))
      >>> reg.image_shape, reg.target, reg.num_classes
      ((20,), 'values', None)
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, source: str = "",
                 files: Sequence[str | os.PathLike] = ()):
        where = "ArrayDataset"
        images = np.asarray(images)
        labels = np.asarray(labels)
        self.image_shape = _image_shape(images.shape, where)
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise DataError(f"{where}: images: Expect: dtype uint8 or a float type Actual: {images.dtype}")
        regression = labels.dtype.kind == "f"
        if labels.ndim != 1 and not (regression and labels.ndim == 2):
            raise DataError(f"{where}: labels: Expect: shape (N,) (or (N, k) float targets) Actual: {labels.shape}")
        if labels.dtype.kind not in "iuf":
            raise DataError(f"{where}: labels: Expect: integer class labels or float targets "
                            f"Actual: dtype {labels.dtype}")
        if len(images) != len(labels):
            raise DataError(f"{where}: Expect: as many labels as images Actual: {len(images)} "
                            f"images and {len(labels)} labels")
        if regression:
            self._init_values(images, labels, num_classes, where)
        else:
            self._init_classes(images, labels, num_classes, class_names, where)
        self.images = images
        self.source = source
        self.files = tuple(os.fspath(f) for f in files)

    def _init_values(self, images: np.ndarray, labels: np.ndarray, num_classes, where: str) -> None:
        """Float targets: a regression; the features need only be finite unless they are images."""
        if num_classes is not None:
            raise DataError(f"{where}: num_classes: Expect: None with float targets (a regression) "
                            f"Actual: {num_classes!r}; pass integer labels for classes")
        bad = ~np.isfinite(labels.reshape(len(labels), -1)).all(axis=1)
        if bad.any():
            raise DataError(f"{where}: labels: Expect: finite targets Actual: "
                            f"{labels[int(np.argmax(bad))]} at row {int(np.argmax(bad))}")
        self._check_features(images, where)
        self.target = "values"
        self.num_classes = None
        self.class_names = None
        self.labels = labels.astype(np.float32, copy=False)

    def _check_features(self, images: np.ndarray, where: str) -> None:
        if images.dtype.kind != "f":
            return
        if images.ndim in (3, 4):   # images: [0, 1] as always
            check_float_images(images, where)
            return
        flat = images.reshape(len(images), -1)
        bad = ~np.isfinite(flat).all(axis=1)
        if bad.any():
            raise DataError(f"{where}: images: Expect: finite values Actual: a non-finite one "
                            f"in row {int(np.argmax(bad))}")

    def _init_classes(self, images, labels, num_classes, class_names, where: str) -> None:
        self.target = "classes"
        if num_classes is None:
            if len(labels) == 0:
                raise DataError(f"{where}: num_classes: cannot be inferred from zero labels; pass it")
            num_classes = int(labels.max()) + 1
        self.num_classes = _check_num_classes(num_classes, where)
        check_labels(labels, self.num_classes, where)
        self._check_features(images, where)
        self.class_names = _check_class_names(class_names, self.num_classes, where)
        self.labels = labels.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.labels)

    def _read_sorted(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images_to_float(self.images[rows]), self.labels[rows]

    def read(self, indices: Sequence[int] | np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        idx = self._indices(indices)  # in memory: no need to sort
        if idx.size == 0:
            return (np.zeros((0, *self.image_shape), np.float32), self.labels[:0])
        return images_to_float(self.images[idx]), self.labels[idx]


def as_dataset(data: Any, where: str = "data"):
    """``data`` as a dataset: a Dataset (anything with ``len()`` and ``read``) as is, Keras's
    ``(x, y)`` pair of arrays as an :class:`ArrayDataset`, None as None.

    Raises:
      InvalidArgumentError: anything else (the message names ArrayDataset).
    """
    if data is None or (hasattr(data, "read") and hasattr(data, "__len__")):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(hasattr(a, "__len__") for a in data):
        x, y = (np.asarray(a) for a in data)
        if x.ndim >= 1 and y.ndim >= 1:
            return ArrayDataset(x, y, source=f"{where}: arrays")
    raise InvalidArgumentError(
        f"{where}: Expect: a dataset (distnet.data.ArrayDataset(x, y), HDF5Dataset, ...) or an (x, y) pair "
        f"of arrays Actual: {type(data).__name__}")


def _consecutive_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """Split increasing ``values`` into runs of consecutive numbers: (start, stop) positions."""
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    starts = np.concatenate(([0], breaks)).astype(int)
    ends = np.concatenate((breaks, [len(values)])).astype(int)
    return list(zip(starts.tolist(), ends.tolist()))


def gather_rows(dset, rows: np.ndarray) -> np.ndarray:
    """Read the increasing, distinct ``rows`` of an h5py dataset, chunk by chunk.

    Rows are grouped by the chunk holding them; each run of consecutive
    touched chunks is read as one slice and the wanted rows picked out.  Only
    chunks holding a requested row are read (HDF5 reads whole chunks anyway),
    instead of h5py's point selection (``dset[list]``), which builds one
    hyperslab per row.  A contiguous
    (unchunked) dataset is read run by run of consecutive rows.
    """
    out = np.empty((len(rows), *dset.shape[1:]), dtype=dset.dtype)
    step = dset.chunks[0] if dset.chunks else 1
    blocks = rows // step
    first_of_block = np.flatnonzero(np.concatenate(([True], blocks[1:] != blocks[:-1])))
    touched = blocks[first_of_block]
    bounds = np.concatenate((first_of_block, [len(rows)]))
    for a, b in _consecutive_runs(touched):  # a run of consecutive touched blocks
        lo = int(touched[a]) * step
        hi = min((int(touched[b - 1]) + 1) * step, dset.shape[0])
        r0, r1 = int(bounds[a]), int(bounds[b])
        want = rows[r0:r1]
        if hi - lo == r1 - r0:  # every row of the slice is wanted
            dset.read_direct(out, np.s_[lo:hi], np.s_[r0:r1])
        else:
            out[r0:r1] = dset[lo:hi][want - lo]
    return out


class HDF5Dataset(Dataset):
    """A dataset in an HDF5 file of distnet's format (see :mod:`distnet.data.hdf5_format`).

    ``read`` reads from the file only the rows asked for: each rank of a
    data-parallel job reads its shard, never the whole file, so a dataset
    larger than memory can be trained on.  The file is opened on first use
    (and reopened in a forked child), never shared between processes.

    Args:
      path: the HDF5 file (or a seekable binary file object, read through
        h5py's ``fileobj`` driver; then close the dataset, or use it in a
        ``with`` block, before the file object goes away).
      validate_labels: scan the labels once at opening (blockwise) and raise
        DataError naming the first out-of-range row.  Float images are checked
        for the range [0, 1] on every read.
      chunk_cache_bytes: size of h5py's per-dataset chunk cache (``rdcc_nbytes``).

    Example:
      >>> ds = HDF5Dataset("train.h5")             # doctest: +SKIP
      >>> x, y = ds.read(sampler_indices)          # doctest: +SKIP
    """

    def __init__(self, path: "str | os.PathLike[str] | Any", validate_labels: bool = True,
                 chunk_cache_bytes: int = 1 << 20):
        from distnet.data import hdf5_format  # local: keeps h5py out of plain imports

        self._fmt = hdf5_format
        if hasattr(path, "read") and hasattr(path, "seek"):
            self.path = path
            self._name = repr(getattr(path, "name", "<file object>"))
        else:
            try:
                self.path = os.fspath(path)
            except TypeError:
                raise DataError(f"HDF5Dataset: path: Expect: a str, os.PathLike or binary file "
                                f"object Actual: {type(path).__name__}") from None
            self._name = repr(str(self.path))
        self._cache = int(chunk_cache_bytes)
        self._file = None
        self._pid = None
        f = self._open()
        try:
            meta = hdf5_format.validate_file(f, self._name, validate_labels=validate_labels)
        except BaseException:
            self.close()
            raise
        self.num_classes = meta.num_classes
        self.class_names = meta.class_names
        self.image_shape = meta.image_shape
        self.source = meta.source
        self.files = (self.path,) if isinstance(self.path, str) else ()
        self._len = meta.num_samples
        self._float_images = meta.images_dtype.kind == "f"

    def _open(self):
        if self._file is None or self._pid != os.getpid():
            self._file = self._fmt.open_file(self.path, self._name, chunk_cache_bytes=self._cache)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the file (it is reopened by the next ``read``)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> "HDF5Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state["_fmt"] = None
        if not isinstance(self.path, (str, bytes)):
            raise DataError(f"HDF5Dataset {self._name}: a dataset opened from a file object "
                            "cannot be pickled; open it from a path")
        return state

    def __setstate__(self, state) -> None:
        from distnet.data import hdf5_format

        self.__dict__.update(state)
        self._fmt = hdf5_format

    def __len__(self) -> int:
        return self._len

    def _read_sorted(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = self._open()
        try:
            x = gather_rows(f["images"], rows)
            y = gather_rows(f["labels"], rows)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"HDF5 dataset {self._name}: reading {len(rows)} rows failed "
                            f"({type(exc).__name__}: {exc})") from exc
        where = f"HDF5 dataset {self._name}"
        bad = (y < 0) | (y >= self.num_classes)
        if bad.any():  # only reachable with validate_labels=False
            i = int(np.argmax(bad))
            raise DataError(f"{where}: labels: Expect: values in [0, {self.num_classes}) "
                            f"Actual: {y[i]} at row {rows[i]}")
        if self._float_images:
            check_float_images(x, where, rows)
        return images_to_float(x), y.astype(np.int64, copy=False)
