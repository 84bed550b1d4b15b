"""Where the named datasets (Fashion-MNIST, MNIST) are found, and loading them.

``load_dataset("fashion_mnist")`` looks, in order, at:

1. ``directory``, when given (an error if the files are not there);
2. the full dataset installed by Debian's ``dataset-fashion-mnist`` package
   in ``/usr/share/datasets/fashion-mnist/`` (60,000 + 10,000 images);
3. the subset embedded in the package (the first 10,000 training and the
   first 2,000 test images), verified against its SHA-256 checksums.

MNIST has no embedded copy: pass the ``directory`` holding its four IDX files
(``distnet data fetch mnist --dest DIR`` downloads them).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple, Sequence

from distnet.data.datasets import ArrayDataset
from distnet.data.idx import read_idx_pair
from distnet.errors import DataError

__all__ = [
    "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "SYSTEM_FASHION_MNIST_DIR", "EMBEDDED_DIR",
    "EMBEDDED_SHA256", "Splits", "load_dataset", "find_dataset", "verify_embedded",
    "split_files", "convert_dataset_to_hdf5", "DATASET_NAMES", "class_names",
]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))
DATASET_NAMES = ("fashion_mnist", "mnist")

SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded" / "fashion-mnist-subset"
#: SHA-256 of each embedded file (also listed in data/README.md).
EMBEDDED_SHA256 = {
    "train-images-idx3-ubyte.gz": "1be733b5e3563a3e09249eaf2860ab906050f4ad092514fd69643a971f092eef",
    "train-labels-idx1-ubyte.gz": "61a6840eba903a1624db1cd180742787f58a96a5d569dcbab532ea0bbd943a75",
    "t10k-images-idx3-ubyte.gz": "a2d469e967c6f16f941e652e24b2bc5422a63b1a71325ff49da1bb5a3350b4dc",
    "t10k-labels-idx1-ubyte.gz": "09e12ea2704e7fc948433dfc4fc0c69cf8e2e18611cf6b3b80e6ad82dec4dcba",
}
_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class Splits(NamedTuple):
    """The train and test datasets of a named dataset (unpacks as ``train, test``)."""

    train: ArrayDataset
    test: ArrayDataset


def class_names(name: str | None) -> tuple[str, ...] | None:
    """The class names of a named dataset (None for an unknown name)."""
    key = str(name or "").lower().replace("-", "_")
    return {"fashion_mnist": FASHION_MNIST_CLASSES, "mnist": MNIST_CLASSES}.get(key)


def _canonical(name: str) -> str:
    key = str(name).lower().replace("-", "_")
    if key not in DATASET_NAMES:
        raise DataError(f"dataset name: Expect: one of {', '.join(DATASET_NAMES)} Actual: {name!r}")
    return key


def split_files(directory: "str | os.PathLike[str]", split: str) -> tuple[Path, Path]:
    """The (images, labels) IDX files of ``split`` ('train' or 'test') in ``directory``.

    Each may be gzipped (``.gz``, as distributed) or not (as after ``gunzip``).

    Raises:
      DataError: a file is missing (the message lists the names looked for).
    """
    directory = Path(os.fspath(directory))
    found = []
    for stem in _STEMS[split]:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            raise DataError(f"dataset directory {str(directory)!r}: {split} split: Expect: "
                            f"{stem}.gz or {stem} Actual: neither")
    return found[0], found[1]


def _has_all_files(directory: Path) -> bool:
    try:
        for split in _STEMS:
            split_files(directory, split)
    except DataError:
        return False
    return True


def find_dataset(name: str = "fashion_mnist", directory: "str | os.PathLike[str] | None" = None,
                 search_dirs: Sequence["str | os.PathLike[str]"] | None = None) -> tuple[Path, str]:
    """Decide where ``name`` is loaded from, without reading it.

    Args:
      name: "fashion_mnist" or "mnist".
      directory: use this directory (it must hold the four IDX files).
      search_dirs: installed copies to try when ``directory`` is None
        (default: ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).

    Returns:
      ``(path, kind)`` with kind "directory", "installed" or "embedded".
    """
    key = _canonical(name)
    if directory is not None:
        path = Path(os.fspath(directory))
        if not path.is_dir():
            raise DataError(f"{key} directory: Expect: an existing directory Actual: "
                            f"{'a file' if path.exists() else 'nothing'} at {str(path)!r}")
        for split in _STEMS:
            split_files(path, split)  # raises naming the missing file
        return path, "directory"
    if search_dirs is None:
        search_dirs = (SYSTEM_FASHION_MNIST_DIR,) if key == "fashion_mnist" else ()
    for candidate in search_dirs:
        candidate = Path(os.fspath(candidate))
        if _has_all_files(candidate):
            return candidate, "installed"
    if key == "fashion_mnist":
        return EMBEDDED_DIR, "embedded"
    raise DataError(f"{key}: Expect: a directory holding its IDX files (train-images-idx3-ubyte"
                    f"[.gz] and the three others) Actual: no directory given and no installed "
                    f"copy; download it with `distnet data fetch {key} --dest DIR` and pass "
                    f"directory=DIR")


def verify_embedded(directory: "str | os.PathLike[str]" = EMBEDDED_DIR) -> None:
    """Check the embedded subset's files against their SHA-256 checksums.

    Raises:
      DataError: a file is missing or its checksum differs.
    """
    directory = Path(os.fspath(directory))
    for fname, expected in EMBEDDED_SHA256.items():
        path = directory / fname
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise DataError(f"embedded dataset file {str(path)!r}: Expect: it to be installed "
                            f"with distnet Actual: it is unreadable ({exc.strerror or exc}); "
                            f"reinstall distnet") from exc
        if digest != expected:
            raise DataError(f"embedded dataset file {str(path)!r}: SHA-256: Expect: {expected} "
                            f"Actual: {digest} (the file is corrupt or was modified; reinstall "
                            f"distnet or regenerate it with data/make_fashion_mnist_subset.py)")


def load_dataset(name: str = "fashion_mnist", directory: "str | os.PathLike[str] | None" = None,
                 *, search_dirs: Sequence["str | os.PathLike[str]"] | None = None) -> Splits:
    """Load a named dataset's train and test splits into memory.

    Args:
      name: "fashion_mnist" (default) or "mnist".
      directory: a directory holding the four IDX files (raw or .gz); when
        None, an installed copy (``/usr/share/datasets/fashion-mnist``) is
        used if present, else the embedded Fashion-MNIST subset.
      search_dirs: where installed copies are looked for (see :func:`find_dataset`).

    Returns:
      ``Splits(train, test)``, two :class:`ArrayDataset` with 10 classes; their
      ``source`` says which files were read.

    Raises:
      DataError: files missing or malformed, or an embedded checksum mismatch.

    Example:
      >>> train, test = load_dataset("fashion_mnist")  # doctest: +SKIP
      >>> train.image_shape, train.num_classes         # doctest: +SKIP
      ((28, 28, 1), 10)
    """
    key = _canonical(name)
    path, kind = find_dataset(key, directory, search_dirs)
    if kind == "embedded":
        verify_embedded(path)
    names = FASHION_MNIST_CLASSES if key == "fashion_mnist" else MNIST_CLASSES
    out = []
    for split in ("train", "test"):
        images_file, labels_file = split_files(path, split)
        images, labels = read_idx_pair(images_file, labels_file)
        if images.ndim != 3 or images.dtype.name != "uint8":
            raise DataError(f"IDX file {str(images_file)!r}: images: Expect: uint8 of shape "
                            f"(N, H, W) Actual: {images.dtype.name} of shape {images.shape}")
        what = {"embedded": f"{key} (embedded subset)", "installed": f"{key} (installed)",
                "directory": key}[kind]
        out.append(ArrayDataset(images, labels, num_classes=10, class_names=names,
                                source=f"{what}: {images_file}", files=(images_file, labels_file)))
    return Splits(*out)


def convert_dataset_to_hdf5(name: str, out_dir: "str | os.PathLike[str]",
                            directory: "str | os.PathLike[str] | None" = None, *,
                            search_dirs: Sequence["str | os.PathLike[str]"] | None = None,
                            compression: str | None = None) -> tuple[Path, Path]:
    """Convert a named dataset's two splits to ``OUT_DIR/{name}-{train,test}.h5``.

    The files are found as by :func:`load_dataset` (so with no ``directory``
    Fashion-MNIST falls back to the embedded subset).

    Returns:
      ``(train_path, test_path)``.
    """
    from distnet.data.hdf5_format import convert_idx_to_hdf5

    key = _canonical(name)
    path, kind = find_dataset(key, directory, search_dirs)
    if kind == "embedded":
        verify_embedded(path)
    out_dir = Path(os.fspath(out_dir))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"output directory {str(out_dir)!r}: cannot be created "
                        f"({exc.strerror or exc})") from exc
    names = FASHION_MNIST_CLASSES if key == "fashion_mnist" else MNIST_CLASSES
    paths = []
    for split in ("train", "test"):
        images_file, labels_file = split_files(path, split)
        paths.append(convert_idx_to_hdf5(
            images_file, labels_file, out_dir / f"{key}-{split}.h5", num_classes=10,
            class_names=names, source=f"{key} ({kind}): {images_file.name}, {labels_file.name}",
            compression=compression))
    return paths[0], paths[1]
