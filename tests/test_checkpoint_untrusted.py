"""Untrusted files: every crafted file is rejected with a CheckpointError
naming the file and the problem, before a byte of its array data is read."""
import json
import os

import h5py
import numpy as np
import pytest

from distnet.checkpoint import (
    CheckpointMismatchError, CheckpointState, CorruptCheckpointError, UnsafeCheckpointError,
    compute_digest, expected_from, load, write_checkpoint,
)
from distnet.checkpoint import reader
from distnet.checkpoint.writer import header_items, set_text_attribute
from distnet.errors import CheckpointError


def base_state():
    rng = np.random.default_rng(0)
    params = {"dense/kernel": rng.standard_normal((16, 4)).astype(np.float32),
              "dense/bias": np.zeros(4, np.float32)}
    return CheckpointState(params=params, ema={k: v + 1 for k, v in params.items()},
                           optimizer={"name": "adam", "iterations": 1,
                                      "slots": {"m": dict(params), "v": dict(params)}, "hyper": {}},
                           step=10, rng={"seed": 1}, config_text="[job]")


@pytest.fixture
def ckpt(tmp_path):
    return write_checkpoint(tmp_path / "ckpt-00000010.h5", base_state())


@pytest.fixture
def no_data_reads(monkeypatch):
    """Fail if the reader touches array data (it must reject first)."""
    calls = []

    def forbidden(did, *args, **kwargs):
        calls.append(did)
        raise AssertionError("array data was read")

    monkeypatch.setattr(reader, "_read_into", forbidden)
    for method in ("read_direct", "__getitem__"):
        monkeypatch.setattr(h5py.Dataset, method, forbidden)
    return calls


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def replace(f, name, **kwargs):
    del f[name]
    f.create_dataset(name, **kwargs)


def test_the_base_file_loads_and_guard_works(ckpt, no_data_reads):
    with pytest.raises(CheckpointError, match="array data was read"):  # the guard fires
        load(ckpt)
    assert no_data_reads


def _virtual(f, tmp_dir):
    src = os.path.join(tmp_dir, "source.h5")
    with h5py.File(src, "w") as s:
        s["data"] = np.arange(4, dtype=np.float32)
    layout = h5py.VirtualLayout(shape=(4,), dtype=np.float32)
    layout[:] = h5py.VirtualSource(src, "data", shape=(4,))
    del f["params/dense/bias"]
    f.create_virtual_dataset("params/dense/bias", layout)


CASES = {
    "soft link": (lambda f, d: f.__setitem__("params/alias", h5py.SoftLink("/params/dense/kernel")),
                  "soft link"),
    "soft link replacing a variable": (
        lambda f, d: (f.__delitem__("params/dense/bias"),
                      f.__setitem__("params/dense/bias", h5py.SoftLink("/ema/dense/bias"))),
        "soft link"),
    "/state as a soft link": (lambda f, d: (f.__delitem__("state"),
                                            f.__setitem__("state", h5py.SoftLink("/optimizer"))),
                              "/state is a soft link"),
    "/state as an external link": (lambda f, d: (f.__delitem__("state"),
                                                 f.__setitem__("state", h5py.ExternalLink("/x.h5", "/s"))),
                                   "/state is an external link"),
    "external link": (lambda f, d: f.__setitem__("params/ext", h5py.ExternalLink("/etc/passwd", "/x")),
                      "external link"),
    "hard link alias": (lambda f, d: f.__setitem__("params/alias", f["params/dense/kernel"]),
                        "reachable by 2 hard links"),
    "hard link cycle": (lambda f, d: f.__setitem__("params/dense/loop", f["params"]),
                        "reachable by 2 hard links"),
    "named datatype": (lambda f, d: f.__setitem__("params/t", np.dtype("f4")), "named datatype"),
    "virtual dataset": (_virtual, "virtual dataset"),
    "external raw data": (lambda f, d: replace(f, "params/dense/bias", shape=(4,), dtype="f4",
                                               external=[(os.path.join(d, "raw.bin"), 0, 16)]),
                          "external file"),
    "object reference": (lambda f, d: replace(f, "params/dense/bias", shape=(4,), dtype=h5py.ref_dtype,
                                              chunks=(4,), fletcher32=True),
                         "object/region reference"),
    "opaque": (lambda f, d: replace(f, "params/dense/bias", shape=(4,), dtype="V4", chunks=(4,),
                                    fletcher32=True), "opaque"),
    "vlen int": (lambda f, d: replace(f, "params/dense/bias", shape=(4,), dtype=h5py.vlen_dtype(np.int32),
                                      chunks=(4,)), "variable-length"),
    "string where a float is expected": (
        lambda f, d: replace(f, "params/dense/bias", data=np.array([b"0.0"] * 4), chunks=(4,),
                             fletcher32=True), "Actual: string"),
    "vlen string": (lambda f, d: replace(f, "params/dense/bias", data=["a", "b", "c", "d"],
                                         dtype=h5py.string_dtype()), "Actual: string"),
    "compound": (lambda f, d: replace(f, "params/dense/bias", shape=(4,),
                                      dtype=np.dtype([("a", "f4"), ("b", "i4")]), chunks=(4,),
                                      fletcher32=True), "compound"),
    "enum": (lambda f, d: replace(f, "params/dense/bias", shape=(4,),
                                  dtype=h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"), chunks=(4,),
                                  fletcher32=True), "enum"),
    "complex": (lambda f, d: replace(f, "params/dense/bias", shape=(4,), dtype="c8", chunks=(4,),
                                     fletcher32=True), "compound"),
    "bool": (lambda f, d: replace(f, "params/dense/bias", shape=(4,), dtype="?", chunks=(4,),
                                  fletcher32=True), "enum"),
    "gzip filter": (lambda f, d: replace(f, "params/dense/bias", data=np.zeros(4, "f4"), compression="gzip",
                                         fletcher32=True), "Expect: only fletcher32"),
    "no checksum": (lambda f, d: replace(f, "params/dense/bias", data=np.zeros(4, "f4")),
                    "without checksum"),
    "null dataspace": (lambda f, d: replace(f, "params/dense/bias", data=h5py.Empty("f4")),
                       "null dataspace"),
    "huge declared shape": (lambda f, d: replace(f, "params/dense/bias", shape=(2 ** 40,), dtype="f4",
                                                 chunks=(1024,), fletcher32=True),
                            "declares 4398046" ),
    "huge shape in a new variable": (lambda f, d: f.create_dataset("ema/huge", shape=(2 ** 31, 2 ** 20),
                                                                   dtype="f8", chunks=(1, 1024),
                                                                   fletcher32=True),
                                     "the file has only"),
    "attribute on a dataset": (lambda f, d: f["params/dense/bias"].attrs.__setitem__("x", 1),
                               "has attributes"),
    "unknown root attribute": (lambda f, d: f.attrs.__setitem__("evil", "x"), "unexpected attribute 'evil'"),
    "reference attribute": (lambda f, d: (f["state"].attrs.__delitem__("rng"),
                                          f["state"].attrs.create("rng", f["params"].ref,
                                                                  dtype=h5py.ref_dtype)),
                            "Expect: a string or an integer"),
    "variable-length string attribute": (lambda f, d: (f["state"].attrs.__delitem__("config_text"),
                                                       f["state"].attrs.__setitem__("config_text", "[job]")),
                                         "variable-length string"),
    "variable-length format marker": (lambda f, d: (f.attrs.__delitem__("format"),
                                                    f.attrs.__setitem__("format", "distnet-checkpoint")),
                                      "not a scalar fixed-length string"),
    "array attribute": (lambda f, d: f["state"].attrs.__setitem__("step", np.arange(3)),
                        "Expect: a scalar"),
    "dataset in /state": (lambda f, d: f.create_dataset("state/blob", data=np.zeros(4, "f4"),
                                                        chunks=(4,), fletcher32=True),
                          "unexpected dataset /state/blob"),
    "unknown top-level group": (lambda f, d: f.create_group("extra"), "unexpected ['extra']"),
    "invalid variable name": (lambda f, d: f.create_dataset("params/bad name", data=np.zeros(4, "f4"),
                                                            chunks=(4,), fletcher32=True),
                              "invalid name"),
}


def test_the_base_file_loads(ckpt):
    assert load(ckpt, expected_from(base_state().params)).step == 10


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_file_is_rejected_before_reading(ckpt, tmp_path, no_data_reads, case):
    build, match = CASES[case]
    edit(ckpt, lambda f: build(f, str(tmp_path)))
    for expected in (None, expected_from(base_state().params)):
        with pytest.raises(CheckpointError) as info:
            load(ckpt, expected)
        msg = str(info.value)
        assert ckpt in msg, msg
        if expected is None or not isinstance(info.value, CheckpointMismatchError):
            assert match in msg, msg
    assert no_data_reads == []


def test_huge_shape_matching_no_model_is_a_mismatch(ckpt, no_data_reads):
    # A crafted shape that fits in the file but not the model: listed as a mismatch.
    edit(ckpt, lambda f: replace(f, "params/dense/bias", shape=(8,), dtype="f4", chunks=(8,),
                                 fletcher32=True))
    with pytest.raises(CheckpointMismatchError, match=r"/params/dense/bias: file \[8\], model \[4\]"):
        load(ckpt, expected_from(base_state().params))
    assert no_data_reads == []


def test_unwritten_chunks_are_rejected(tmp_path, no_data_reads):
    state = base_state()
    state.params["big"] = np.ones(100_000, np.float32)   # makes the file large enough
    path = write_checkpoint(tmp_path / "c.h5", state)
    # 4 KiB declared, nothing stored: fits in the file's metadata slack, so
    # only the per-array storage check can catch it.
    edit(path, lambda f: replace(f, "params/dense/bias", shape=(1024,), dtype="f4", chunks=(256,),
                                 fletcher32=True))
    with pytest.raises(CorruptCheckpointError, match="chunks never written"):
        load(path)
    assert no_data_reads == []


def test_max_bytes_caps_the_declared_size(ckpt, no_data_reads):
    with pytest.raises(UnsafeCheckpointError, match="max_bytes=100"):
        load(ckpt, max_bytes=100)
    assert no_data_reads == []


@pytest.mark.parametrize("content, match", [
    (b"", "Expect: an HDF5 file"),
    (b"[job]\nname='x'\n", "Expect: an HDF5 file"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "cannot be opened as HDF5"),
])
def test_not_hdf5(tmp_path, content, match):
    path = tmp_path / "c.h5"
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpointError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


def test_plain_hdf5_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CorruptCheckpointError, match="attribute /format is missing"):
        load(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated(ckpt, fraction):
    with open(ckpt, "r+b") as fh:
        fh.truncate(int(os.path.getsize(ckpt) * fraction))
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        load(ckpt)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nope.h5")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load(tmp_path)


def _recraft(path, attr_path, value):
    """Change a header attribute AND recompute the digest, as an attacker
    could: the digest detects damage, not malice, so content is still checked."""
    with h5py.File(path, "r+") as f:
        where, name = attr_path.rsplit("/", 1)
        if isinstance(value, str):
            del f[where or "/"].attrs[name]
            set_text_attribute(f[where or "/"], name, value)
        else:
            f[where or "/"].attrs[name] = value
        arrays = []
        f.visititems(lambda n, o: arrays.append((n, o[()])) if isinstance(o, h5py.Dataset) else None)
        state = base_state().validate()
        header = header_items(state)
        header[attr_path] = str(value)
        del f.attrs["sha256"]
        set_text_attribute(f, "sha256", compute_digest(arrays, header))


@pytest.mark.parametrize("attr_path, value, match", [
    ("/state/rng", "[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ("/state/rng", "[1, 2]", "rng is not a JSON object"),
    ("/state/metrics", '{"loss": "low"}', "Expect: a number"),
    ("/optimizer/hyper", '{"lr": [1]}', "Expect: a float or a str"),
    ("/state/rng", "{", "not valid JSON"),
])
def test_crafted_header_with_valid_digest(ckpt, attr_path, value, match):
    _recraft(ckpt, attr_path, value)
    with pytest.raises(CorruptCheckpointError, match=match):
        load(ckpt)


def test_crafted_negative_step_with_valid_digest(ckpt):
    _recraft(ckpt, "/state/step", np.int64(-5))
    with pytest.raises(CorruptCheckpointError, match=r"step: Expect: in \[0"):
        load(ckpt)


def test_recraft_helper_makes_loadable_files(ckpt):
    _recraft(ckpt, "/state/rng", json.dumps({"seed": 2}))
    assert load(ckpt).rng == {"seed": 2}
