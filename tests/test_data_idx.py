"""The IDX reader: round trips, every header/length/gzip defect, and a bounded fuzz test."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distnet.data.idx import (
    IDX_DTYPES, decode_idx, encode_idx, read_idx, read_idx_header, read_idx_pair, write_idx,
)
from distnet.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def idx_bytes(code: int, shape, payload: bytes) -> bytes:
    """Hand-assembled IDX bytes (independent of encode_idx)."""
    header = bytes([0, 0, code, len(shape)]) + b"".join(int(s).to_bytes(4, "big") for s in shape)
    return header + payload


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# -- valid files ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_every_dtype(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, arr)


def test_decodes_hand_made_big_endian_file():
    # Two int16 values 0x0102 and -2, big-endian; a 1x2 array.
    data = idx_bytes(0x0B, (1, 2), b"\x01\x02\xff\xfe")
    arr = decode_idx(data)
    assert arr.dtype == np.int16 and arr.shape == (1, 2)
    assert arr.tolist() == [[258, -2]]


def test_compression_detected_from_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw_named_gz = tmp_path / "raw.gz"
    raw_named_gz.write_bytes(encode_idx(arr))
    gz_named_raw = tmp_path / "compressed-idx1-ubyte"
    gz_named_raw.write_bytes(encode_idx(arr, compress=True))
    np.testing.assert_array_equal(read_idx(raw_named_gz), arr)
    np.testing.assert_array_equal(read_idx(gz_named_raw), arr)
    assert read_idx_header(gz_named_raw).compressed
    assert not read_idx_header(raw_named_gz).compressed


def test_encode_is_reproducible_and_matches_hand_made():
    arr = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    assert encode_idx(arr) == idx_bytes(0x08, (2, 2), bytes([1, 2, 3, 4]))
    assert encode_idx(arr, compress=True) == encode_idx(arr, compress=True)


def test_header_only_read(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((7, 2, 3), np.float32))
    h = read_idx_header(path)
    assert h.shape == (7, 2, 3) and h.dtype == np.dtype(">f4") and h.payload_bytes == 7 * 6 * 4


def test_zero_items_is_a_valid_file():
    arr = decode_idx(idx_bytes(0x08, (0, 28, 28), b""))
    assert arr.shape == (0, 28, 28)


# -- header defects -----------------------------------------------------------

def error_of(data: bytes, name: str = "file.idx", **kw) -> str:
    with pytest.raises(DataError) as info:
        decode_idx(data, name=name, **kw)
    return str(info.value)


@pytest.mark.parametrize("compress", [False, True])
def test_bad_magic(compress):
    data = b"\x00\x01\x08\x01" + (3).to_bytes(4, "big") + b"abc"
    msg = error_of(gz(data) if compress else data, name="bad-magic")
    assert "bad-magic" in msg and "magic number" in msg and "0x00 0x00" in msg and "0x01" in msg


def test_unknown_dtype_code():
    msg = error_of(idx_bytes(0x0A, (1,), b"\x00"))
    assert "dtype code" in msg and "0x0A" in msg and "0x08" in msg and "file.idx" in msg


def test_zero_dimensions():
    msg = error_of(bytes([0, 0, 8, 0]))
    assert "number of dimensions" in msg and "at least 1" in msg and "Actual: 0" in msg


def test_truncated_dimension_sizes():
    msg = error_of(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + b"\x00\x00")
    assert "dimension sizes" in msg and "ends after 6 of 12 bytes" in msg


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_file_shorter_than_the_fixed_header(cut):
    msg = error_of(bytes([0, 0, 8, 1])[:cut])
    assert "file.idx" in msg


def test_required_ndim():
    msg = error_of(idx_bytes(0x08, (2, 2), bytes(4)), ndim=1)
    assert "number of dimensions" in msg and "Expect: 1" in msg and "Actual: 2" in msg


# -- length defects -----------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_truncated_data(compress):
    data = idx_bytes(0x0C, (2, 3), bytes(4 * 6 - 1))
    msg = error_of(gz(data) if compress else data)
    assert "data length" in msg and "Expect: 24 data bytes" in msg
    assert "Actual: 23 data bytes (the file is truncated)" in msg


@pytest.mark.parametrize("compress", [False, True])
def test_trailing_bytes(compress):
    data = idx_bytes(0x08, (2, 2), bytes(4) + b"xyz")
    msg = error_of(gz(data) if compress else data)
    assert "data length" in msg and "3 trailing byte(s)" in msg


def test_huge_declared_size_is_rejected_without_allocating():
    # 4 GiB x 4 GiB x 4 GiB of doubles declared in a 30-byte file.
    data = idx_bytes(0x0E, (2**32 - 1,) * 3, b"\x00" * 6)
    msg = error_of(data)
    assert "data length" in msg and "truncated" in msg
    msg = error_of(gz(data))
    assert "cannot hold that many" in msg


# -- gzip defects -------------------------------------------------------------

def test_truncated_gzip_stream():
    data = gz(encode_idx(np.arange(1000, dtype=np.int32)))
    msg = error_of(data[: len(data) // 2])
    assert "gzip stream" in msg and "truncated" in msg


def test_corrupt_gzip_crc():
    data = bytearray(gz(encode_idx(np.arange(100, dtype=np.uint8))))
    data[-8] ^= 0xFF  # the CRC-32 field of the trailer
    msg = error_of(bytes(data))
    assert "gzip stream" in msg and "corrupt" in msg


def test_corrupt_deflate_data():
    data = bytearray(gz(encode_idx(np.arange(4000, dtype=np.int32))))
    for i in range(12, len(data) - 8, 7):
        data[i] ^= 0x5A
    msg = error_of(bytes(data))
    assert "file.idx" in msg


def test_garbage_after_gzip_member():
    data = gz(encode_idx(np.arange(10, dtype=np.uint8))) + b"garbage!"
    msg = error_of(data)
    assert "gzip stream" in msg and "corrupt" in msg


# -- files --------------------------------------------------------------------

def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="cannot be opened"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="cannot be opened"):
        read_idx(tmp_path)
    with pytest.raises(DataError, match="Expect: a path"):
        read_idx(12)


def test_reads_from_a_pipe(tmp_path):
    """A non-regular file (no size known up front) is read and checked all the same."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    arr = np.arange(6, dtype=np.int16).reshape(2, 3)
    writer = subprocess.Popen([sys.executable, "-c",
                               "import sys; open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))",
                               str(fifo), encode_idx(arr, compress=True).hex()])
    try:
        np.testing.assert_array_equal(read_idx(fifo), arr)
    finally:
        writer.wait(timeout=60)


def test_file_errors_name_the_path(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(0x08, (5,), bytes(3)))
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "data length" in str(info.value)


def write_pair(tmp_path, n_images, n_labels, label_dtype=np.uint8, image_shape=(4, 4)):
    ipath, lpath = tmp_path / "images.gz", tmp_path / "labels.gz"
    write_idx(ipath, np.zeros((n_images, *image_shape), np.uint8))
    write_idx(lpath, np.arange(n_labels).astype(label_dtype) % 3)
    return ipath, lpath


def test_pair_loads(tmp_path):
    x, y = read_idx_pair(*write_pair(tmp_path, 6, 6))
    assert x.shape == (6, 4, 4) and y.tolist() == [0, 1, 2, 0, 1, 2]


def test_pair_count_mismatch(tmp_path):
    ipath, lpath = write_pair(tmp_path, 6, 5)
    with pytest.raises(DataError) as info:
        read_idx_pair(ipath, lpath)
    msg = str(info.value)
    assert str(ipath) in msg and str(lpath) in msg and "6 images and 5 labels" in msg


def test_pair_wrong_ranks_and_label_dtype(tmp_path):
    ipath, lpath = write_pair(tmp_path, 3, 3, image_shape=(4,))
    with pytest.raises(DataError, match=r"3 \(N, H, W\).*Actual: 2"):
        read_idx_pair(ipath, lpath)
    ipath, lpath = write_pair(tmp_path, 3, 3, label_dtype=np.float32)
    with pytest.raises(DataError, match="integer type for labels"):
        read_idx_pair(ipath, lpath)
    with pytest.raises(DataError, match=r"1 \(N,\) for labels"):
        read_idx_pair(ipath, ipath)


def test_encode_rejects_unsupported_dtype():
    with pytest.raises(DataError, match="dtype"):
        encode_idx(np.zeros(3, np.int64))
    with pytest.raises(DataError, match="number of dimensions"):
        encode_idx(np.float32(1.0))


def test_errors_survive_python_O(tmp_path):
    """Validation is not done with assert: it still works under ``python -O``."""
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(0x08, (10,), bytes(9)))
    code = ("import sys\nfrom distnet.data.idx import read_idx\nfrom distnet.errors import DataError\n"
            "try:\n    read_idx(sys.argv[1])\nexcept DataError as e:\n    print('DataError', e)\n")
    out = subprocess.run([sys.executable, "-O", "-c", code, str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("DataError") and "truncated" in out.stdout


# -- bounded fuzz -------------------------------------------------------------

@st.composite
def valid_idx(draw):
    code = draw(st.sampled_from(sorted(IDX_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    n = int(np.prod(shape)) * IDX_DTYPES[code].itemsize
    payload = draw(st.binary(min_size=n, max_size=n))
    compress = draw(st.booleans())
    raw = idx_bytes(code, shape, payload)
    return (gz(raw) if compress else raw), raw


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8), st.just(0)),
    st.tuples(st.just("header"), st.integers(0, 15), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("size"), st.integers(0, 2), st.integers(0, 2**32 - 1)),
)


def mutate(data: bytes, raw: bytes, m) -> bytes:
    kind, a, b = m
    buf = bytearray(data)
    if kind == "flip" and buf:
        buf[a % len(buf)] ^= b
    elif kind == "truncate":
        del buf[a % (len(buf) + 1):]
    elif kind == "append":
        buf += a
    elif kind == "header":
        # Rewrite a byte of the uncompressed header, then recompress if needed.
        r = bytearray(raw)
        if a < len(r):
            r[a] = b
        buf = bytearray(gz(bytes(r)) if data[:2] == b"\x1f\x8b" else r)
    elif kind == "insert":
        pos = a % (len(buf) + 1)
        buf[pos:pos] = b
    elif kind == "size":
        r = bytearray(raw)
        ndim = r[3]
        if a < ndim:
            r[4 + 4 * a: 8 + 4 * a] = b.to_bytes(4, "big")
        buf = bytearray(gz(bytes(r)) if data[:2] == b"\x1f\x8b" else r)
    return bytes(buf)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(valid_idx(), st.lists(mutation, min_size=1, max_size=3))
def test_fuzz_only_data_error_comes_out(file, mutations):
    data, raw = file
    ok = decode_idx(data)  # the unmutated file loads, with its declared shape and values
    assert ok.shape == tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3]))
    assert ok.astype(ok.dtype.newbyteorder(">")).tobytes() == raw[4 + 4 * raw[3]:]
    for m in mutations:
        data = mutate(data, raw, m)
    try:
        arr = decode_idx(data, name="fuzzed")
    except DataError as exc:
        assert "fuzzed" in str(exc)
    else:
        # A successful load is exactly what the (decompressed) bytes say.
        plain = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        assert arr.dtype.isnative and encode_idx(arr) == plain


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(valid_idx(), mutation)
def test_fuzz_files_on_disk(file, m):
    data, raw = file
    data = mutate(data, raw, m)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fuzzed-idx")
        with open(path, "wb") as f:
            f.write(data)
        try:
            read_idx(path)
        except DataError as exc:
            assert path in str(exc)
