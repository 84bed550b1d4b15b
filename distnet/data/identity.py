"""Which data a run used: files, sample count and a digest of the samples.

``data.name = "fashion_mnist"`` means the installed full dataset on one
machine and the embedded subset on another, and ``data.test_samples``
changes what an evaluation sees: the job file alone does not say which
images a run was trained and tested on.  :func:`dataset_identity` does, from
the samples themselves, so that it can go into a checkpoint
(``CheckpointState.data``), be printed in a run's banner and be compared when
a checkpoint is evaluated later (:func:`same_data`).

The digest is taken over the samples exactly as a trainer reads them
(float32 NHWC images and int64 labels, in row order): the same images stored
as IDX or converted to HDF5 have the same digest, a different subset or
another dataset a different one.  It is
``sha256(MAGIC + "N:H,W,C:K\n" + sha256(images bytes) + sha256(labels bytes))``
(two running hashes, so the data is read once, in blocks of any size).

Example:
    >>> train, test = load_dataset("fashion_mnist")                # doctest: +SKIP
    >>> dataset_identity(test)["samples"], describe(dataset_identity(test))  # doctest: +SKIP
    (2000, 'fashion_mnist (embedded subset): .../t10k-images-idx3-ubyte.gz, 2000 samples, sha256 3f0c...')
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from distnet.errors import InvalidArgumentError

__all__ = ["dataset_identity", "data_identity", "same_data", "describe", "DataMismatchWarning",
           "DIGEST_ROWS"]

#: Rows hashed per read: bounds the memory the digest needs (8192 Fashion-MNIST
#: images are 26 MB as float32) whatever the dataset's size.
DIGEST_ROWS = 8192
_MAGIC = b"distnet-dataset-digest-v1\n"


class DataMismatchWarning(UserWarning):
    """A checkpoint is evaluated on other data than its run evaluated on, or resumed on other
    training data than its run trained on."""


def dataset_identity(ds: Any, block_rows: int = DIGEST_ROWS) -> dict:
    """Describe a dataset by what it holds.

    Args:
        ds: a dataset (``len``, ``read``, ``image_shape``, ``num_classes``;
            ``source`` and ``files`` when it has them).
        block_rows: rows read at a time while hashing.

    Returns:
        ``{"source": str, "files": [str, ...], "samples": int,
        "image_shape": [h, w, c], "num_classes": int (None for float targets), "digest": "<64 hex>"}``
        (plain JSON values: it goes into checkpoints as JSON).
    """
    if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
        raise InvalidArgumentError(f"block_rows: Expect: an int >= 1 Actual: {block_rows!r}")
    n = len(ds)
    shape = [int(s) for s in ds.image_shape]
    images, labels = hashlib.sha256(), hashlib.sha256()
    # Float targets (a regression) are hashed as float32; class labels as int64, as always.
    label_dtype = np.float32 if getattr(ds, "target", "classes") == "values" else np.int64
    num_classes = 0 if ds.num_classes is None else int(ds.num_classes)
    for start in range(0, n, block_rows):
        x, y = ds.read(np.arange(start, min(start + block_rows, n)))
        images.update(np.ascontiguousarray(x, dtype=np.float32).data)
        labels.update(np.ascontiguousarray(y, dtype=label_dtype).data)
    h = hashlib.sha256(_MAGIC)
    h.update(b"%d:%s:%d\n" % (n, ",".join(map(str, shape)).encode(), num_classes))
    h.update(images.digest() + labels.digest())
    return {"source": str(getattr(ds, "source", "") or ""),
            "files": [str(f) for f in getattr(ds, "files", ()) or ()],
            "samples": int(n), "image_shape": shape, "num_classes": ds.num_classes and int(ds.num_classes),
            "digest": h.hexdigest()}


def data_identity(train: Any, test: Any = None) -> dict:
    """The identity of a run's data, as a checkpoint stores it.

    Returns:
        ``{"train": dataset_identity(train), "test": dataset_identity(test)}``;
        ``"test"`` is left out when there is no test split.
    """
    out = {"train": dataset_identity(train)}
    if test is not None:
        out["test"] = dataset_identity(test)
    return out


def same_data(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool | None:
    """Whether two :func:`dataset_identity` records describe the same samples.

    Returns:
        ``True`` / ``False``, or ``None`` when either is unknown (an older
        checkpoint stores no identity).
    """
    if not a or not b or "digest" not in a or "digest" not in b:
        return None
    return a["digest"] == b["digest"] and a.get("samples") == b.get("samples")


def describe(identity: Mapping[str, Any]) -> str:
    """One line for people: where the samples came from, how many, the digest's start.

    Example:
        >>> describe({"source": "HDF5 test", "files": ["/d/test.h5"], "samples": 10,
        ...           "digest": "0123456789abcdef" * 4})
        '/d/test.h5 (HDF5 test), 10 samples, sha256 0123456789ab'
    """
    source = str(identity.get("source") or "")
    files = [str(f) for f in identity.get("files") or ()]
    if files and not any(f in source for f in files):  # the source names none of its files
        where = ", ".join(files) + (f" ({source})" if source else "")
    else:
        where = source or "in memory"
    return f"{where}, {identity.get('samples')} samples, sha256 {str(identity.get('digest', ''))[:12]}"
