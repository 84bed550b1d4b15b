"""``tensorflow.examples.tutorials.mnist.input_data`` for TF1 programs: local files only.

``read_data_sets(train_dir, one_hot=, dtype=, reshape=, validation_size=)``
reads IDX files and never downloads.  It takes, in order:

1. the four MNIST-named IDX files in ``train_dir`` (``train-images-idx3-ubyte``
   and the three others, each gzipped or not), when that directory holds
   any of them (all four must then be there);
2. the full Fashion-MNIST installed by Debian's ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``);
3. the Fashion-MNIST subset embedded in distnet (10,000 training and 2,000
   test images),

and prints one line saying which files it read and how many images each
split holds.  Reading goes through :mod:`distnet.data` (the IDX reader and
the dataset finder).

The splits are TF1's: the first ``validation_size`` training images are
the validation set, the rest the training set; images are float32 in
[0, 1] (``dtype=tf.uint8``: as stored), flattened to 784 values with
``reshape=True``; labels are class numbers (uint8) or, with ``one_hot``,
rows of 10 float64.  ``next_batch(n)`` follows TF1's epochs: the order is
shuffled at the start of every epoch, and a batch that crosses the end of
an epoch takes the epoch's last images and the next epoch's first.  The
shuffles come from the data set's own generator, seeded with ``seed``
(0 when None), so every rank of a data-parallel run draws the same global
batches; TF1 reseeded numpy's global generator instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from distnet.data import load_dataset
from distnet.data.builtin import _STEMS, split_files

#: The default of TF1's ``read_data_sets``.
VALIDATION_SIZE = 5000


class DataSet:
    """One split: ``images``, ``labels``, ``num_examples``, ``epochs_completed``, ``next_batch``.

    Args:
      images: uint8 array (N, 28, 28) or (N, 28, 28, 1).
      labels: class numbers (N,) or one-hot rows (N, 10).
      dtype: ``np.float32`` (scaled to [0, 1]) or ``np.uint8`` (as stored).
      reshape: flatten each image to one row of 784.
      seed: the shuffles' seed (0 when None).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, fake_data: bool = False, one_hot: bool = False,
                 dtype: Any = np.float32, reshape: bool = True, seed: int | None = None):
        if fake_data:
            raise ValueError("input_data: fake_data is not supported; distnet reads local IDX files")
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
            raise TypeError(f"Invalid image dtype {dtype.name}, expected uint8 or float32")
        if len(images) != len(labels):
            raise ValueError(f"images.shape: {images.shape} labels.shape: {labels.shape}")
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if reshape:
            if images.shape[3] != 1:
                raise ValueError(f"reshape=True needs one channel; images have shape {images.shape}")
            images = images.reshape(images.shape[0], images.shape[1] * images.shape[2])
        if dtype == np.float32:
            images = images.astype(np.float32) * np.float32(1.0 / 255.0)
        self._images, self._labels = images, np.asarray(labels)
        self._num_examples = len(images)
        self._epochs_completed = 0
        self._index_in_epoch = 0
        self._rng = np.random.RandomState(0 if seed is None else seed)

    @property
    def images(self) -> np.ndarray:
        return self._images

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def num_examples(self) -> int:
        return self._num_examples

    @property
    def epochs_completed(self) -> int:
        return self._epochs_completed

    def _shuffle(self) -> None:
        order = self._rng.permutation(self._num_examples)
        self._images, self._labels = self._images[order], self._labels[order]

    def next_batch(self, batch_size: int, fake_data: bool = False, shuffle: bool = True):
        """The next ``batch_size`` images and labels (TF1's epochs, see the module doc)."""
        if fake_data:
            raise ValueError("input_data: fake_data is not supported; distnet reads local IDX files")
        batch_size = int(batch_size)
        if not 0 < batch_size <= self._num_examples:
            raise ValueError(f"next_batch: Expect: 0 < batch_size <= {self._num_examples} (the split's size) "
                             f"Actual: {batch_size}")
        start = self._index_in_epoch
        if self._epochs_completed == 0 and start == 0 and shuffle:
            self._shuffle()
        if start + batch_size <= self._num_examples:
            self._index_in_epoch = start + batch_size
            return self._images[start:start + batch_size], self._labels[start:start + batch_size]
        # The epoch ends inside this batch: its last images, then the new epoch's first.
        self._epochs_completed += 1
        rest_images, rest_labels = self._images[start:], self._labels[start:]
        if shuffle:
            self._shuffle()
        self._index_in_epoch = batch_size - len(rest_images)
        end = self._index_in_epoch
        return (np.concatenate([rest_images, self._images[:end]]),
                np.concatenate([rest_labels, self._labels[:end]]))


class Datasets(NamedTuple):
    train: DataSet
    validation: DataSet
    test: DataSet


def dense_to_one_hot(labels_dense: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Class numbers to one-hot rows (float64, as TF1's)."""
    labels_dense = np.asarray(labels_dense).reshape(-1)
    out = np.zeros((len(labels_dense), num_classes))
    out[np.arange(len(labels_dense)), labels_dense] = 1.0
    return out


def _holds_idx_files(directory: Path) -> bool:
    return directory.is_dir() and any((directory / f"{stem}{ext}").is_file()
                                      for pair in _STEMS.values() for stem in pair for ext in ("", ".gz"))


def read_data_sets(train_dir: str = "MNIST_data", fake_data: bool = False, one_hot: bool = False,
                   dtype: Any = np.float32, reshape: bool = True, validation_size: int = VALIDATION_SIZE,
                   seed: int | None = None, source_url: str | None = None) -> Datasets:
    """TF1's ``input_data.read_data_sets``, from local files (see the module doc).

    Returns:
      ``Datasets(train, validation, test)``.

    Raises:
      DataError: ``train_dir`` holds some of the IDX files but not all, or a file is malformed.
      ValueError: ``validation_size`` is not between 0 and the number of training images.
    """
    if fake_data:
        raise ValueError("input_data: fake_data is not supported; distnet reads local IDX files")
    from distnet.compat.v1.graph import as_dtype

    dtype = as_dtype(dtype)
    directory = Path(str(train_dir)) if train_dir else None
    if directory is not None and _holds_idx_files(directory):
        for split in _STEMS:
            split_files(directory, split)      # names a missing file
        train, test = load_dataset("mnist", directory)
        what = f"the IDX files in {str(directory)!r}"
    else:
        train, test = load_dataset("fashion_mnist")
        what = f"{train.source.split(':', 1)[0]} from {str(Path(train.files[0]).parent)!r}" + \
            (f" ({str(directory)!r} holds no IDX files)" if directory is not None else "")
    images, labels = train.images, train.labels
    if not 0 <= int(validation_size) <= len(images):
        raise ValueError(f"Validation size should be between 0 and {len(images)}. Received: {validation_size}.")
    validation_size = int(validation_size)
    if one_hot:
        labels, test_labels = dense_to_one_hot(labels), dense_to_one_hot(test.labels)
    else:   # TF1's dense labels are the stored bytes
        labels, test_labels = labels.astype(np.uint8), test.labels.astype(np.uint8)
    options = dict(dtype=dtype, reshape=reshape, seed=seed)
    out = Datasets(train=DataSet(images[validation_size:], labels[validation_size:], **options),
                   validation=DataSet(images[:validation_size], labels[:validation_size], **options),
                   test=DataSet(test.images, test_labels, **options))
    print(f"input_data: read {what}, no download: {out.train.num_examples} train, "
          f"{out.validation.num_examples} validation, {out.test.num_examples} test images", flush=True)
    return out


__all__ = ["DataSet", "Datasets", "read_data_sets", "dense_to_one_hot"]
