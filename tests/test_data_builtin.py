"""Named datasets: where they are found, the embedded subset and its checksums."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from distnet.data import builtin
from distnet.data import HDF5Dataset, convert_dataset_to_hdf5, find_dataset, load_dataset
from distnet.data.builtin import EMBEDDED_DIR, EMBEDDED_SHA256, FASHION_MNIST_CLASSES, verify_embedded
from distnet.data.idx import read_idx, write_idx
from distnet.errors import DataError

REPO = Path(__file__).resolve().parent.parent
SYSTEM = builtin.SYSTEM_FASHION_MNIST_DIR
NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def make_dir(path: Path, n_train=30, n_test=12, gz=True, seed=0, hw=(4, 3)) -> dict:
    """A directory with the four IDX files of a tiny synthetic dataset."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, *hw), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        ext = ".gz" if gz else ""
        write_idx(path / (NAMES[split][0] + ext), x)
        write_idx(path / (NAMES[split][1] + ext), y)
        arrays[split] = (x, y)
    return arrays


# -- the embedded subset ------------------------------------------------------

def test_embedded_subset_loads_with_expected_shape():
    train, test = load_dataset("fashion_mnist", search_dirs=[])
    assert (len(train), len(test)) == (10_000, 2_000)
    assert train.image_shape == (28, 28, 1) and train.num_classes == 10 == test.num_classes
    assert train.class_names == FASHION_MNIST_CLASSES and "embedded" in train.source
    x, y = train.read([0, 9_999])
    assert x.dtype == np.float32 and y.dtype == np.int64 and 0 <= x.min() and x.max() <= 1
    # Every class is present in both splits, none far from an even share.
    for ds, n in ((train, 10_000), (test, 2_000)):
        counts = np.bincount(ds.labels, minlength=10)
        assert counts.min() > 0.9 * n / 10 and counts.max() < 1.1 * n / 10


def test_embedded_checksums_match_files_and_readme():
    verify_embedded()
    readme = (REPO / "data" / "README.md").read_text()
    for fname, digest in EMBEDDED_SHA256.items():
        assert hashlib.sha256((EMBEDDED_DIR / fname).read_bytes()).hexdigest() == digest
        assert digest in readme and fname in readme
    total = sum((EMBEDDED_DIR / f).stat().st_size for f in EMBEDDED_SHA256)
    assert total < 5.5e6


def test_licence_ships_with_the_data():
    top = (REPO / "data" / "LICENSE").read_text()
    assert "Copyright © [2017] Zalando SE" in top and "Permission is hereby granted" in top
    assert (EMBEDDED_DIR / "LICENSE").read_text() == top


def corrupted_copy(tmp_path: Path, fname: str) -> Path:
    copy = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, copy)
    data = bytearray((copy / fname).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / fname).write_bytes(bytes(data))
    return copy


def test_checksum_mismatch_is_a_data_error(tmp_path, monkeypatch):
    copy = corrupted_copy(tmp_path, "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError) as info:
        verify_embedded(copy)
    msg = str(info.value)
    assert "train-labels-idx1-ubyte.gz" in msg and "SHA-256" in msg
    assert EMBEDDED_SHA256["train-labels-idx1-ubyte.gz"] in msg
    # load_dataset verifies before reading.
    monkeypatch.setattr(builtin, "EMBEDDED_DIR", copy)
    with pytest.raises(DataError, match="SHA-256"):
        load_dataset(search_dirs=[])


def test_missing_embedded_file(tmp_path):
    copy = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_DIR, copy)
    (copy / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*reinstall"):
        verify_embedded(copy)


def test_regeneration_script(tmp_path):
    """The script in data/ keeps the header (count set to n) and the first n items."""
    spec = importlib.util.spec_from_file_location("make_subset", REPO / "data" / "make_fashion_mnist_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    src = tmp_path / "full"
    arrays = make_dir(src, n_train=10_003, n_test=2_001, hw=(2, 2))
    out = tmp_path / "out"
    assert script.main(["--source", str(src), "--out", str(out)]) == 0
    for split, n in (("train", 10_000), ("test", 2_000)):
        x, y = arrays[split]
        np.testing.assert_array_equal(read_idx(out / f"{NAMES[split][0]}.gz"), x[:n])
        np.testing.assert_array_equal(read_idx(out / f"{NAMES[split][1]}.gz"), y[:n])
    first = (out / "train-images-idx3-ubyte.gz").read_bytes()
    assert script.main(["--source", str(src), "--out", str(out), "--check"]) == 0
    assert script.main(["--source", str(src), "--out", str(out)]) == 0
    assert (out / "train-images-idx3-ubyte.gz").read_bytes() == first  # reproducible bytes
    (out / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (out / "train-labels-idx1-ubyte.gz").read_bytes())
    assert script.main(["--source", str(src), "--out", str(out), "--check"]) == 1


# Compares the embedded subset with Debian's full files; .ci/run installs
# dataset-fashion-mnist, so this runs in CI (the checksum tests run everywhere).
@pytest.mark.skipif(not (SYSTEM / "train-images-idx3-ubyte.gz").exists(),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_embedded_rows_are_the_first_rows_of_the_installed_dataset():
    full_train, full_test = load_dataset("fashion_mnist", directory=SYSTEM)
    sub_train, sub_test = load_dataset("fashion_mnist", search_dirs=[])
    assert (len(full_train), len(full_test)) == (60_000, 10_000)
    np.testing.assert_array_equal(sub_train.images, full_train.images[:10_000])
    np.testing.assert_array_equal(sub_train.labels, full_train.labels[:10_000])
    np.testing.assert_array_equal(sub_test.images, full_test.images[:2_000])
    np.testing.assert_array_equal(sub_test.labels, full_test.labels[:2_000])


# -- where a dataset is found -------------------------------------------------

def test_default_prefers_the_installed_copy():
    path, kind = find_dataset("fashion_mnist")
    if (SYSTEM / "train-images-idx3-ubyte.gz").exists():
        assert (path, kind) == (SYSTEM, "installed")
    else:
        assert (path, kind) == (EMBEDDED_DIR, "embedded")


def test_search_dirs_order(tmp_path):
    good, partial = tmp_path / "good", tmp_path / "partial"
    arrays = make_dir(good)
    make_dir(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_dataset("fashion_mnist", search_dirs=[partial, good]) == (good, "installed")
    assert find_dataset("fashion-mnist", search_dirs=[partial]) == (EMBEDDED_DIR, "embedded")
    train, test = load_dataset("fashion_mnist", search_dirs=[tmp_path / "absent", good])
    assert "installed" in train.source and len(train) == 30 and len(test) == 12
    np.testing.assert_array_equal(test.labels, arrays["test"][1])


@pytest.mark.parametrize("gz", [True, False])
def test_directory_wins_and_mnist_from_directory(tmp_path, gz):
    arrays = make_dir(tmp_path / "mnist", gz=gz)
    train, test = load_dataset("mnist", tmp_path / "mnist")
    assert train.class_names == tuple("0123456789") and train.num_classes == 10
    assert train.image_shape == (4, 3, 1) and len(train) == 30 and len(test) == 12
    x, y = test.read([11, 0])
    np.testing.assert_array_equal(x[..., 0], arrays["test"][0][[11, 0]] / np.float32(255))
    np.testing.assert_array_equal(y, arrays["test"][1][[11, 0]])
    fm_train, _ = load_dataset("fashion_mnist", directory=tmp_path / "mnist")
    assert len(fm_train) == 30 and fm_train.class_names == FASHION_MNIST_CLASSES


def test_bad_names_and_directories(tmp_path):
    with pytest.raises(DataError, match="Expect: one of fashion_mnist, mnist Actual: 'cifar10'"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="data fetch mnist"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="Expect: an existing directory Actual: nothing"):
        load_dataset("mnist", tmp_path / "absent")
    make_dir(tmp_path / "d")
    (tmp_path / "d" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train split: Expect: train-labels-idx1-ubyte.gz or "
                                        "train-labels-idx1-ubyte Actual: neither"):
        load_dataset("mnist", tmp_path / "d")


def test_malformed_files_in_a_directory(tmp_path):
    make_dir(tmp_path / "d")
    write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(DataError, match="12 images and 11 labels"):
        load_dataset("mnist", tmp_path / "d")
    write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match=r"\[0, 10\) Actual: 10 at row 0"):
        load_dataset("mnist", tmp_path / "d")


def test_convert_named_dataset_to_hdf5(tmp_path):
    arrays = make_dir(tmp_path / "src")
    train_path, test_path = convert_dataset_to_hdf5("mnist", tmp_path / "h5", tmp_path / "src")
    assert train_path.name == "mnist-train.h5" and test_path.name == "mnist-test.h5"
    with HDF5Dataset(train_path) as train:
        assert len(train) == 30 and train.class_names == tuple("0123456789")
        x, y = train.read(np.arange(30))
    np.testing.assert_array_equal(y, arrays["train"][1])
    np.testing.assert_array_equal(x[..., 0], arrays["train"][0] / np.float32(255))
