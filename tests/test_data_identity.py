"""distnet.data.identity: which samples a run used, from the samples themselves."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from distnet.data import HDF5Dataset, convert_idx_to_hdf5, load_dataset
from distnet.data.builtin import EMBEDDED_DIR, split_files
from distnet.data.identity import data_identity, dataset_identity, describe, same_data
from distnet.data.idx import read_idx
from distnet.errors import InvalidArgumentError
from distnet.jobs.job import SubsetDataset


def independent_digest(images_u8: np.ndarray, labels: np.ndarray, num_classes: int) -> str:
    """The documented digest, computed from the raw IDX arrays in one piece."""
    x = (images_u8.astype(np.float32) / np.float32(255.0))[..., np.newaxis]
    n, h, w, c = x.shape
    d = hashlib.sha256(b"distnet-dataset-digest-v1\n")
    d.update(f"{n}:{h},{w},{c}:{num_classes}\n".encode())
    d.update(hashlib.sha256(x.tobytes()).digest())
    d.update(hashlib.sha256(labels.astype(np.int64).tobytes()).digest())
    return d.hexdigest()


@pytest.fixture(scope="module")
def embedded():
    return load_dataset("fashion_mnist", EMBEDDED_DIR)


def test_the_embedded_test_split_is_named_by_its_files_count_and_content(embedded):
    _, test = embedded
    ident = dataset_identity(test)
    images_file, labels_file = split_files(EMBEDDED_DIR, "test")
    assert ident["files"] == [str(images_file), str(labels_file)]
    assert ident["samples"] == 2000 and ident["image_shape"] == [28, 28, 1] and ident["num_classes"] == 10
    assert ident["digest"] == independent_digest(read_idx(images_file), read_idx(labels_file), 10)
    # Reading in blocks of any size hashes the same stream.
    assert dataset_identity(test, block_rows=7)["digest"] == ident["digest"]
    line = describe(ident)
    assert line == f"fashion_mnist: {images_file}, 2000 samples, sha256 {ident['digest'][:12]}"


def test_the_same_images_as_hdf5_have_the_same_digest_and_a_subset_another(tmp_path, embedded):
    _, test = embedded
    images_file, labels_file = split_files(EMBEDDED_DIR, "test")
    h5 = convert_idx_to_hdf5(images_file, labels_file, tmp_path / "fashion-test.h5", num_classes=10)
    with HDF5Dataset(h5) as ds:
        ident = dataset_identity(ds)
    idx_ident = dataset_identity(test)
    assert ident["files"] == [str(h5)] and ident["samples"] == 2000
    assert same_data(ident, idx_ident) is True
    # The banner line names the HDF5 file first, then where it came from.
    assert describe(ident).startswith(f"{h5} (converted from IDX t10k-images-idx3-ubyte.gz + "
                                      f"t10k-labels-idx1-ubyte.gz), 2000 samples, sha256 ")
    subset = dataset_identity(SubsetDataset(test, 1000))
    assert subset["samples"] == 1000 and subset["files"] == idx_ident["files"]
    assert subset["digest"] != idx_ident["digest"] and same_data(subset, idx_ident) is False
    assert subset["digest"] == independent_digest(read_idx(images_file)[:1000],
                                                  read_idx(labels_file)[:1000], 10)


def test_one_changed_label_changes_the_digest(embedded):
    from distnet.data import ArrayDataset

    _, test = embedded
    x, y = test.images[:50], test.labels[:50].copy()
    a = dataset_identity(ArrayDataset(x, y, num_classes=10))
    y[17] = (y[17] + 1) % 10
    b = dataset_identity(ArrayDataset(x, y, num_classes=10))
    assert a["digest"] != b["digest"] and same_data(a, b) is False
    assert a["files"] == [] and describe(a).startswith("in memory, 50 samples")


def test_data_identity_and_unknowns(embedded):
    train, test = embedded
    both = data_identity(train, test)
    assert set(both) == {"train", "test"} and both["train"]["samples"] == 10000
    assert set(data_identity(train)) == {"train"}
    assert same_data(None, both["test"]) is None and same_data({}, both["test"]) is None
    with pytest.raises(InvalidArgumentError, match=r"block_rows: Expect: an int >= 1 Actual: 0"):
        dataset_identity(test, block_rows=0)


def test_a_trained_checkpoint_records_its_data_and_eval_warns_on_other_data(tmp_path):
    """End to end: the trainer writes the data's identity into its checkpoints,
    and `distnet eval` on other test data says so."""
    import subprocess
    import sys
    from pathlib import Path

    from distnet.checkpoint import load

    job = Path(__file__).resolve().parent.parent / "examples" / "jobs" / "mlp.toml"
    run = tmp_path / "run"
    base = [sys.executable, "-m", "distnet"]
    done = subprocess.run(base + ["train", str(job), "--progress", "none", "--run-dir", str(run), "--set",
                                  "train.steps=3", "--set", "data.train_samples=300", "--set",
                                  "data.test_samples=100"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ckpt = sorted((run / "checkpoints").glob("*.h5"))[-1]
    state = load(ckpt)
    assert state.data["train"]["samples"] == 300 and state.data["test"]["samples"] == 100
    same = subprocess.run(base + ["eval", str(ckpt)], capture_output=True, text=True, timeout=300)
    assert same.returncode == 0, same.stderr
    assert "other data" not in same.stderr
    # Other samples of the same data, asked for: said in the result, not warned about.
    other = subprocess.run(base + ["eval", str(ckpt), "--set", "data.test_samples=200"], capture_output=True,
                           text=True, timeout=300)
    assert other.returncode == 0, other.stderr
    assert "other data" not in other.stderr and "(first 200), 200 samples" in other.stdout
