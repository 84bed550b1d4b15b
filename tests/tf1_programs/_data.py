"""The data loading the TF1 programs of this directory use instead of the
originals' (``tensorflow.examples.tutorials.mnist.input_data``, notMNIST
pickles): the Fashion-MNIST subset embedded in distnet, with the same
interface (``read_data_sets(dir, one_hot=True)``; ``.train.next_batch(n)``;
``.images`` flattened to 784 floats in [0, 1]).

``next_batch`` walks a permutation drawn from a fixed seed, so every rank of
a data-parallel run sees the same global batches (as every rank of a TF1
Horovod job reads the same files).
"""
from __future__ import annotations

import numpy as np

from distnet.data import load_dataset


class DataSet:
    def __init__(self, images: np.ndarray, labels: np.ndarray, one_hot: bool, seed: int):
        self.images = images.reshape(len(images), -1).astype(np.float32) / 255.0
        self.labels = np.eye(10, dtype=np.float32)[labels] if one_hot else labels.astype(np.int64)
        self.num_examples = len(images)
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(self.num_examples)
        self._pos = 0

    def next_batch(self, batch_size: int):
        if self._pos + batch_size > self.num_examples:
            self._order = self._rng.permutation(self.num_examples)
            self._pos = 0
        idx = self._order[self._pos:self._pos + batch_size]
        self._pos += batch_size
        return self.images[idx], self.labels[idx]


class Datasets:
    def __init__(self, train: DataSet, test: DataSet):
        self.train, self.test, self.validation = train, test, test


def read_data_sets(train_dir: str = "MNIST_data", one_hot: bool = False, seed: int = 0) -> Datasets:
    train, test = load_dataset("fashion_mnist")
    return Datasets(DataSet(train.images, train.labels, one_hot, seed), DataSet(test.images, test.labels, one_hot, seed + 1))
