"""ArrayDataset, HDF5Dataset and the HDF5 dataset format (writing, converting, validating)."""
from __future__ import annotations

import io
import os
import pickle

import h5py
import numpy as np
import pytest

from distnet.data import (
    FORMAT_NAME, ArrayDataset, HDF5Dataset, convert_idx_to_hdf5, read_metadata,
    write_hdf5_dataset, write_idx,
)
from distnet.errors import DataError, InvalidArgumentError

N, H, W = 300, 6, 5


def arrays(n=N, seed=0, classes=7):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, H, W), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n).astype(np.int64)
    labels[:classes] = np.arange(classes)  # every class present
    return images, labels


@pytest.fixture
def h5file(tmp_path):
    images, labels = arrays()
    path = write_hdf5_dataset(tmp_path / "d.h5", images, labels, num_classes=7,
                              class_names=[f"c{i}" for i in range(7)], source="unit test",
                              chunk_rows=8)
    return path, images, labels


# -- ArrayDataset -------------------------------------------------------------

def test_array_dataset_contract():
    images, labels = arrays()
    ds = ArrayDataset(images, labels)
    assert len(ds) == N and ds.num_classes == 7 and ds.image_shape == (H, W, 1)
    idx = [5, 0, 5, 299]
    x, y = ds.read(idx)
    assert x.dtype == np.float32 and x.shape == (4, H, W, 1)
    assert y.dtype == np.int64 and y.tolist() == labels[idx].tolist()
    np.testing.assert_array_equal(x[..., 0], images[idx] / np.float32(255))
    np.testing.assert_array_equal(np.rint(x[..., 0] * 255).astype(np.uint8), images[idx])
    x, _ = ArrayDataset(np.array([[[0, 255]]], np.uint8), np.array([0])).read([0])
    assert x.ravel().tolist() == [0.0, 1.0]  # 255 maps to exactly 1


def test_array_dataset_float_and_nhwc_images():
    images = np.linspace(0, 1, 2 * 3 * 3 * 2).reshape(2, 3, 3, 2)
    ds = ArrayDataset(images, np.array([1, 0]), num_classes=3)
    x, y = ds.read(np.array([1]))
    assert ds.image_shape == (3, 3, 2) and ds.num_classes == 3
    np.testing.assert_allclose(x[0], images[1].astype(np.float32))


def test_array_dataset_slice_and_empty():
    images, labels = arrays()
    ds = ArrayDataset(images, labels)
    x, y = ds.read(slice(10, 13))
    assert y.tolist() == labels[10:13].tolist()
    x, y = ds.read([])
    assert x.shape == (0, H, W, 1) and x.dtype == np.float32 and y.shape == (0,) and y.dtype == np.int64


@pytest.mark.parametrize("kwargs, match", [
    (dict(labels=np.array([0, 1, 7, 2])), r"Expect: values in \[0, 7\) Actual: 7 at row 2"),
    (dict(labels=np.array([0, -1, 1, 2])), r"Actual: -1 at row 1"),
    (dict(labels=np.array([0, 1, 2])), "4 images and 3 labels"),
    # Float labels are a regression's targets now (issue 23): they take no num_classes.
    (dict(labels=np.array([0.0, 1, 2, 3])), "num_classes: Expect: None with float targets"),
    (dict(labels=np.array(["a", "b", "c", "d"])), "integer class labels or float targets"),
    (dict(labels=np.zeros((4, 1), int)), r"Expect: shape \(N,\)"),
    # Any feature shape is accepted now ((N, features) for tabular data); one value per sample is not.
    (dict(images=np.zeros(4, np.uint8)), r"Expect: shape \(N, ...\) with one row per sample"),
    (dict(images=np.zeros((4, 2, 2), np.int32)), "uint8 or a float type"),
    (dict(images=np.full((4, 2, 2), 1.5)), r"\[0, 1\] Actual: 1.5 in row 0"),
    (dict(images=np.array([0, 0, np.nan, 0]).reshape(4, 1, 1)), r"Actual: nan in row 2"),
    (dict(class_names=["a", "b"]), "Expect: 7 names"),
    (dict(num_classes=0), "positive integer"),
])
def test_array_dataset_validation(kwargs, match):
    args = dict(images=np.zeros((4, 2, 2), np.uint8), labels=np.array([0, 1, 2, 3]), num_classes=7)
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        ArrayDataset(**args)


@pytest.mark.parametrize("indices, match", [
    ([0, 4], r"\[0, 4\) Actual: 4 at position 1"),
    ([-1], r"Actual: -1 at position 0"),
    ([[0, 1]], "1-D"),
    ([0.5], "integers"),
])
def test_read_index_validation(indices, match):
    ds = ArrayDataset(np.zeros((4, 2, 2), np.uint8), np.array([0, 1, 2, 3]))
    with pytest.raises(InvalidArgumentError, match=match):
        ds.read(indices)


# -- HDF5Dataset: contents ----------------------------------------------------

def test_hdf5_dataset_matches_arrays(h5file):
    path, images, labels = h5file
    ref = ArrayDataset(images, labels, num_classes=7)
    with HDF5Dataset(path) as ds:
        assert len(ds) == N and ds.num_classes == 7 and ds.image_shape == (H, W, 1)
        assert ds.class_names == tuple(f"c{i}" for i in range(7)) and ds.source == "unit test"
        rng = np.random.default_rng(1)
        for idx in (rng.permutation(N)[:37], [3, 3, 1, 299, 0, 3], np.arange(40, 90), [7],
                    slice(None), np.arange(N)[::-1]):
            x, y = ds.read(idx)
            rx, ry = ref.read(idx)
            assert x.dtype == np.float32 and y.dtype == np.int64
            np.testing.assert_array_equal(x, rx)
            np.testing.assert_array_equal(y, ry)
        x, y = ds.read([])
        assert x.shape == (0, H, W, 1) and y.shape == (0,)


def test_file_is_plain_hdf5_with_format_metadata(h5file):
    path, images, labels = h5file
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME and f.attrs["format_version"] == 1
        assert f.attrs["num_classes"] == 7 and f.attrs["layout"] == "NHWC"
        assert [s.decode() if isinstance(s, bytes) else s for s in f.attrs["class_names"]][0] == "c0"
        assert f["images"].shape == (N, H, W, 1) and f["images"].dtype == np.uint8
        assert f["images"].chunks == (8, H, W, 1)
        np.testing.assert_array_equal(f["images"][..., 0], images)
        np.testing.assert_array_equal(f["labels"][()], labels)
    meta = read_metadata(path)
    assert meta.num_samples == N and meta.image_shape == (H, W, 1) and meta.num_classes == 7


def test_float32_and_compressed_files(tmp_path):
    images = np.random.default_rng(2).random((50, 4, 4, 3)).astype(np.float32)
    labels = np.arange(50) % 2
    for comp in (None, "gzip"):
        path = write_hdf5_dataset(tmp_path / f"f-{comp}.h5", images, labels, compression=comp)
        with HDF5Dataset(path) as ds:
            x, y = ds.read([49, 0, 17])
            np.testing.assert_array_equal(x, images[[49, 0, 17]])
            assert y.tolist() == [1, 0, 1] and ds.image_shape == (4, 4, 3)


def test_pickle_reopens_in_the_receiver(h5file):
    path, images, labels = h5file
    ds = HDF5Dataset(path)
    ds.read([1])
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.read([4, 2])[1], labels[[4, 2]])
    ds.close()
    clone.close()
    np.testing.assert_array_equal(ds.read([9])[1], labels[[9]])  # reopened after close
    ds.close()


# -- HDF5Dataset: reads only the requested rows -------------------------------

class CountingFile(io.RawIOBase):
    """An in-memory file that records every (offset, size) read from it."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)
        self.reads: list[tuple[int, int]] = []
        self.name = "counting"

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._buf.seek(offset, whence)

    def tell(self):
        return self._buf.tell()

    def readinto(self, b):
        pos = self._buf.tell()
        n = self._buf.readinto(b)
        self.reads.append((pos, n))
        return n


def test_shard_read_touches_only_the_requested_rows_chunks(tmp_path):
    """A rank's shard read reads from disk the chunks holding its rows and nothing
    else of /images: every byte range read is matched against the chunk map."""
    n, rows_per_chunk = 4000, 10
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)  # 3 MB
    labels = rng.integers(0, 10, size=n)
    path = write_hdf5_dataset(tmp_path / "big.h5", images, labels, chunk_rows=rows_per_chunk)
    with h5py.File(path, "r") as f:
        dset = f["images"]
        chunks = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]
    chunk_of_offset = {c.byte_offset: c.chunk_offset[0] // rows_per_chunk for c in chunks}
    chunk_bytes = chunks[0].size
    data = path.read_bytes()
    shard = np.random.default_rng(4).permutation(n)[:25]  # rank 3 of 160, say
    fileobj = CountingFile(data)
    with HDF5Dataset(fileobj, chunk_cache_bytes=0) as ds:
        fileobj.reads.clear()
        x, y = ds.read(shard)
        reads = list(fileobj.reads)
    # Correct rows, in the requested order.
    np.testing.assert_array_equal(x[..., 0], images[shard] / np.float32(255))
    np.testing.assert_array_equal(y, labels[shard])
    # Which /images chunks were read: exactly those holding a requested row.
    read_chunks = set()
    other_bytes = 0
    for offset, size in reads:
        hit = [chunk_of_offset[o] for o in chunk_of_offset if o < offset + size and offset < o + chunk_bytes]
        read_chunks.update(hit)
        if not hit:
            other_bytes += size  # index nodes and the labels
    assert read_chunks == set((shard // rows_per_chunk).tolist())
    # Everything else read (chunk index nodes, the labels' chunk) is small: here
    # under 64 KiB, while the file is 3 MB and the shard's chunks 25 x 7.8 KB.
    assert other_bytes < 64 * 1024
    total = sum(size for _, size in reads)
    assert total <= len(read_chunks) * chunk_bytes + other_bytes < len(data) // 10


def test_contiguous_request_is_read_as_one_slice(h5file, monkeypatch):
    path, images, labels = h5file
    calls = []
    real = h5py.Dataset.read_direct

    def spy(self, dest, source_sel=None, dest_sel=None):
        calls.append((self.name, source_sel))
        return real(self, dest, source_sel, dest_sel)

    monkeypatch.setattr(h5py.Dataset, "read_direct", spy)
    with HDF5Dataset(path) as ds:
        x, y = ds.read(np.arange(16, 64))  # chunks 2..7 exactly
    assert ("/images", np.s_[16:64]) in calls
    np.testing.assert_array_equal(y, labels[16:64])


# -- validation when loading --------------------------------------------------

def make_file(path, **overrides):
    """A valid file, then apply overrides: None deletes, a value replaces."""
    images, labels = arrays(40)
    write_hdf5_dataset(path, images, labels, num_classes=7)
    with h5py.File(path, "r+") as f:
        for key, value in overrides.items():
            if key in ("images", "labels"):
                del f[key]
                if value is not None:
                    f.create_dataset(key, data=value)
            elif value is None:
                del f.attrs[key]
            else:
                f.attrs[key] = value
    return path


@pytest.mark.parametrize("overrides, match", [
    (dict(images=None), r"dataset '/images': Expect: it to exist Actual: only \['labels'\]"),
    (dict(labels=None), r"dataset '/labels': Expect: it to exist"),
    (dict(format="something-else"), "attribute 'format': Expect: 'distnet-image-dataset'"),
    (dict(format=None), "attribute 'format'"),
    (dict(format_version=2), r"'format_version': Expect: an integer in \[1, 1\] Actual: 2"),
    (dict(num_classes=None), "'num_classes': Expect: a positive integer Actual: None"),
    (dict(num_classes=0), "'num_classes': Expect: a positive integer Actual: 0"),
    (dict(class_names=np.array(["a", "b"], dtype=h5py.string_dtype())), "Expect: 7 names Actual: 2"),
    (dict(images=np.zeros((40, 6, 5), np.uint8)), r"'/images': Expect: shape \(N, H, W, C\)"),
    (dict(images=np.zeros((40, 6, 5, 1), np.float64)), "Expect: dtype uint8 or float32 Actual: float64"),
    (dict(labels=np.zeros((40, 1), np.int64)), r"'/labels': Expect: shape \(N,\)"),
    (dict(labels=np.zeros(40, np.float32)), "integer dtype Actual: float32"),
    (dict(labels=np.zeros(39, np.int64)), "40 images and 39 labels"),
])
def test_malformed_files(tmp_path, overrides, match):
    path = make_file(tmp_path / "bad.h5", **overrides)
    with pytest.raises(DataError, match=match) as info:
        HDF5Dataset(path)
    assert str(path) in str(info.value)


def test_label_out_of_range_names_first_bad_row(tmp_path):
    labels = np.arange(40) % 7
    labels[23], labels[31] = 9, -2
    path = make_file(tmp_path / "bad.h5", labels=labels.astype(np.int16))
    with pytest.raises(DataError, match=r"Expect: values in \[0, 7\) Actual: 9 at row 23"):
        HDF5Dataset(path)
    # Without the scan at opening, reading the bad row still fails clearly.
    ds = HDF5Dataset(path, validate_labels=False)
    assert ds.read([0, 1])[1].tolist() == [0, 1]
    with pytest.raises(DataError, match="Actual: -2 at row 31"):
        ds.read([30, 31])
    ds.close()


def test_float_images_out_of_range_fail_on_read(tmp_path):
    images = np.zeros((40, 6, 5, 1), np.float32)
    images[12, 0, 0, 0] = 3.0
    path = make_file(tmp_path / "bad.h5", images=images)
    with HDF5Dataset(path) as ds:
        ds.read([11, 13])
        with pytest.raises(DataError, match=r"\[0, 1\] Actual: 3.0 in row 12"):
            ds.read([13, 12])


def test_not_hdf5_missing_and_directory(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello, not HDF5\n")
    with pytest.raises(DataError, match="Expect: an HDF5 file"):
        HDF5Dataset(text)
    with pytest.raises(DataError, match="Expect: an existing file Actual: nothing at that path"):
        HDF5Dataset(tmp_path / "missing.h5")
    with pytest.raises(DataError, match="Actual: a directory"):
        HDF5Dataset(tmp_path)
    with pytest.raises(DataError, match="Expect: a str, os.PathLike or binary file object"):
        HDF5Dataset(3.5)


# -- writing ------------------------------------------------------------------

def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "d.h5"
    images, labels = arrays(20)
    write_hdf5_dataset(path, images, labels)
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        write_hdf5_dataset(path, images[:5], labels[:5])
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["d.h5"]  # no temporary file left behind


@pytest.mark.parametrize("kwargs, match", [
    (dict(compression="zstd"), "compression: Expect: None, 'gzip' or 'lzf'"),
    (dict(chunk_rows=0), "chunk_rows: Expect: a positive integer"),
    (dict(labels=np.array([0, 1, 2, 99])), "Actual: 99 at row 3"),
])
def test_write_validation(tmp_path, kwargs, match):
    args = dict(images=np.zeros((4, 2, 2), np.uint8), labels=np.array([0, 1, 2, 3]), num_classes=10)
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        write_hdf5_dataset(tmp_path / "x.h5", **args)
    assert not os.listdir(tmp_path)


def test_write_to_bad_destination(tmp_path):
    images, labels = arrays(10)
    with pytest.raises(DataError, match="Expect: a writable directory"):
        write_hdf5_dataset(tmp_path / "no" / "such" / "dir.h5", images, labels)
    with pytest.raises(DataError, match="Expect: a file name Actual: the directory"):
        write_hdf5_dataset(tmp_path, images, labels)


def test_convert_idx_to_hdf5(tmp_path):
    images, labels = arrays(64, seed=5, classes=10)
    write_idx(tmp_path / "img.gz", images)
    write_idx(tmp_path / "lab", labels.astype(np.uint8))
    out = convert_idx_to_hdf5(tmp_path / "img.gz", tmp_path / "lab", tmp_path / "out.h5",
                              class_names=[str(i) for i in range(10)])
    with HDF5Dataset(out) as ds:
        assert len(ds) == 64 and ds.num_classes == 10 and ds.source == "converted from IDX img.gz + lab"
        x, y = ds.read(np.arange(64))
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(np.rint(x[..., 0] * 255).astype(np.uint8), images)


def test_convert_rejects_mismatched_idx_pair(tmp_path):
    images, labels = arrays(10)
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lab", labels[:9].astype(np.uint8))
    with pytest.raises(DataError, match="10 images and 9 labels"):
        convert_idx_to_hdf5(tmp_path / "img", tmp_path / "lab", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
