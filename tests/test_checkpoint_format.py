"""Checkpoint layout, round trip, digest, strict restore and EMA export."""
import json
import os
import pathlib
import shutil
import subprocess

import h5py
import numpy as np
import pytest

import distnet
from distnet.checkpoint import (
    FORMAT_VERSION, CheckpointMismatchError, CheckpointState, CorruptCheckpointError,
    compute_digest, ema_params, expected_from, export_weights, load, write_checkpoint,
)
from distnet.checkpoint.writer import chunk_shape, header_items
from distnet.errors import CheckpointError, InvalidArgumentError


def make_state(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "conv2d/kernel": rng.standard_normal((5, 5, 1, 4)).astype(np.float32),
        "conv2d/bias": rng.standard_normal(4).astype(np.float32),
        "dense/kernel": rng.standard_normal((300, 7)),           # float64, > 1 chunk? no: small
        "dense_1/bias": rng.standard_normal(3).astype(np.float16),
        "counter": np.array(7, dtype=np.int64),                   # 0-d
        "empty": np.zeros((0, 3), dtype=np.int32),                 # zero-size
        "codes": rng.integers(0, 255, size=(6,), dtype=np.uint8),
        "big_endian": np.arange(5, dtype=">i4"),
    }
    ema = {k: v + 1 for k, v in params.items() if v.dtype.kind == "f"}
    gen = np.random.default_rng(123)
    gen.random(3)
    return CheckpointState(
        params=params,
        ema=ema,
        optimizer={"name": "adam", "iterations": 42,
                   "slots": {"m": {k: v * 0.5 for k, v in ema.items()},
                             "v": {k: v * v for k, v in ema.items()},
                             "unused": {}},
                   "hyper": {"learning_rate": 1e-3, "beta1": 0.9, "schedule": "exponential_decay"}},
        step=1234, epoch=3, position=4500,
        rng={"numpy": json.dumps(gen.bit_generator.state), "seed": 7, "keys": [1, 2, 3]},
        world_size=4,
        config_text='[job]\nname = "mnist — ünïcode"\nsteps = 100\n',
        metrics={"loss": 0.25, "accuracy": 0.875, "diverged": float("nan")},
        data={"train": {"source": "fashion_mnist (embedded subset): /d/train-images-idx3-ubyte.gz",
                        "files": ["/d/train-images-idx3-ubyte.gz", "/d/train-labels-idx1-ubyte.gz"],
                        "samples": 10000, "image_shape": [28, 28, 1], "num_classes": 10,
                        "digest": "ab" * 32}},
        conv_algorithms={"conv2d": "fft", "conv2d_1": "gemm"},
    )


def assert_same(a: CheckpointState, b: CheckpointState):
    for field in ("params", "ema"):
        da, db = getattr(a, field), getattr(b, field)
        assert sorted(da) == sorted(db), field
        for k in da:
            assert da[k].dtype == db[k].dtype, (field, k)
            assert da[k].shape == db[k].shape, (field, k)
            assert da[k].tobytes() == db[k].tobytes(), (field, k)
    sa, sb = a.optimizer["slots"], b.optimizer["slots"]
    assert sorted(sa) == sorted(sb)
    for slot in sa:
        assert sorted(sa[slot]) == sorted(sb[slot])
        for k in sa[slot]:
            assert sa[slot][k].dtype == sb[slot][k].dtype
            assert sa[slot][k].tobytes() == sb[slot][k].tobytes()
    for key in ("name", "iterations", "hyper"):
        assert a.optimizer[key] == b.optimizer[key], key
    for field in ("step", "epoch", "position", "rng", "world_size", "config_text",
                  "format_version", "distnet_version", "data", "conv_algorithms"):
        assert getattr(a, field) == getattr(b, field), field
    assert json.dumps(a.metrics) == json.dumps(b.metrics)  # NaN-aware equality


def test_round_trip_every_field(tmp_path):
    original = make_state()
    path = write_checkpoint(tmp_path / "ckpt-00001234.h5", original)
    assert path == str(tmp_path / "ckpt-00001234.h5")
    back = load(path)
    assert_same(original.validate(), back)
    # The RNG state brings a generator back to the same stream.
    gen = np.random.default_rng()
    gen.bit_generator.state = json.loads(back.rng["numpy"])
    ref = np.random.default_rng(123)
    ref.random(3)
    np.testing.assert_array_equal(gen.random(4), ref.random(4))
    assert back.format_version == FORMAT_VERSION
    assert back.distnet_version == distnet.__version__
    assert os.listdir(tmp_path) == ["ckpt-00001234.h5"]  # no temporary left


def test_non_contiguous_and_scalar_inputs(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    state = CheckpointState(params={"t": base.T, "s": np.float64(2.5)})
    back = load(write_checkpoint(tmp_path / "c.h5", state))
    np.testing.assert_array_equal(back.params["t"], base.T)
    assert back.params["s"].shape == () and back.params["s"] == 2.5


def test_plain_h5py_reads_the_layout(tmp_path):
    state = make_state()
    path = write_checkpoint(tmp_path / "c.h5", state)
    with h5py.File(path, "r") as f:
        assert set(f) == {"params", "ema", "optimizer", "state"}
        np.testing.assert_array_equal(f["/params/conv2d/kernel"][()], state.params["conv2d/kernel"])
        np.testing.assert_array_equal(f["/ema/dense/kernel"][()], state.ema["dense/kernel"])
        np.testing.assert_array_equal(f["/optimizer/m/conv2d/bias"][()],
                                      state.optimizer["slots"]["m"]["conv2d/bias"])
        assert "unused" in f["/optimizer"]
        assert f["/state"].attrs["step"] == 1234
        assert f["/state"].attrs["epoch"] == 3
        assert f["/state"].attrs["position"] == 4500
        assert f["/state"].attrs["world_size"] == 4
        # Text is fixed-length UTF-8: h5py hands back bytes.
        assert f["/state"].attrs["config_text"].decode("utf-8") == state.config_text
        assert json.loads(f["/state"].attrs["rng"]) == state.rng
        assert f["/optimizer"].attrs["name"] == b"adam"
        assert f["/optimizer"].attrs["iterations"] == 42
        assert f.attrs["format"] == b"distnet-checkpoint"
        assert f["/state"].attrs["format_version"] == FORMAT_VERSION
        assert f["/state"].attrs["distnet_version"].decode() == distnet.__version__
        assert len(f.attrs["sha256"]) == 64
        for group in (f, f["/state"], f["/optimizer"]):
            for name in group.attrs:
                tid = h5py.h5a.open(group.id, name.encode()).get_type()
                assert not (tid.get_class() == h5py.h5t.STRING and tid.is_variable_str()), name
        # Every non-empty, non-scalar array carries a fletcher32 checksum;
        # nothing is stored as an object dtype.
        seen = []

        def check(name, obj):
            if isinstance(obj, h5py.Dataset):
                seen.append(name)
                assert obj.dtype.kind in "fiu", name
                if obj.size and obj.ndim:
                    assert obj.fletcher32 and obj.chunks is not None, name
                    assert obj.compression is None, name
        f.visititems(check)
        assert len(seen) == len(state.arrays())


def test_h5dump_lists_the_layout(tmp_path, capsys):
    path = write_checkpoint(tmp_path / "c.h5", make_state())
    h5dump = shutil.which("h5dump")
    # h5dump is a separate C tool, the proof that plain HDF5 reads our files;
    # .ci/run installs hdf5-tools, so this runs in CI.
    if h5dump is None:
        with capsys.disabled():
            print("\nh5dump not installed (apt-get install hdf5-tools): "
                  "skipping the h5dump listing check; plain h5py is checked above")
        pytest.skip("h5dump not installed (apt-get install hdf5-tools)")
    out = subprocess.run([h5dump, "-n", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for line in ("dataset    /params/conv2d/kernel", "dataset    /ema/dense/kernel",
                 "dataset    /optimizer/v/conv2d/bias", "group      /state"):
        assert line in out.stdout
    attrs = subprocess.run([h5dump, "-A", "-g", "/state", path], capture_output=True, text=True, timeout=60)
    assert attrs.returncode == 0, attrs.stderr
    assert '"step"' in attrs.stdout and "1234" in attrs.stdout


def test_digest_covers_names_dtypes_shapes_bytes_and_header():
    a = np.arange(6, dtype=np.float32)
    header = {"/state/step": "1"}
    base = compute_digest([("params/w", a)], header)
    assert base == compute_digest([("params/w", a.copy())], dict(header))
    variants = [
        ([("params/v", a)], header),                                  # name
        ([("params/w", a.reshape(2, 3))], header),                    # shape
        ([("params/w", a.view(np.int32))], header),                   # dtype, same bytes
        ([("params/w", np.where(a == 5, 6, a).astype(np.float32))], header),  # one value
        ([("params/w", a)], {"/state/step": "2"}),                    # header value
        ([("params/w", a), ("params/x", a[:0])], header),             # an extra empty array
    ]
    digests = {compute_digest(arrs, h) for arrs, h in variants}
    assert base not in digests and len(digests) == len(variants)


def test_digest_follows_the_documented_recipe(tmp_path):
    """Recompute the stored digest from plain h5py reads, following
    docs/checkpoints.md, without distnet's code."""
    import hashlib

    path = write_checkpoint(tmp_path / "c.h5", make_state())
    h = hashlib.sha256(b"distnet-checkpoint-digest-v1\n")
    with h5py.File(path, "r") as f:
        arrays = []
        f.visititems(lambda n, o: arrays.append((n, o[()])) if isinstance(o, h5py.Dataset) else None)
        for name, arr in sorted(arrays, key=lambda item: item[0]):
            arr = np.asarray(arr)
            p = name.encode()
            shape = ",".join(str(d) for d in arr.shape).encode()
            h.update(b"A%d:%s%s:%s:%d\n" % (len(p), p, arr.dtype.str.encode(), shape, arr.nbytes))
            h.update(arr.tobytes())
        attrs = {}
        for group in ("/", "/optimizer", "/state"):
            for name, value in f[group].attrs.items():
                if name != "sha256":
                    key = f"{group.rstrip('/')}/{name}"
                    attrs[key] = value if isinstance(value, bytes) else str(int(value)).encode()
        for key in sorted(attrs):
            k, v = key.encode(), attrs[key]
            h.update(b"H%d:%s%d:%s\n" % (len(k), k, len(v), v))
        assert f.attrs["sha256"].decode() == h.hexdigest()


def test_digest_insists_on_sorted_order():
    from distnet.checkpoint.writer import Digest

    d = Digest()
    d.add("params/b", np.zeros(1))
    with pytest.raises(ValueError, match="sorted order"):
        d.add("params/a", np.zeros(1))


def test_changed_array_fails_the_digest(tmp_path):
    path = write_checkpoint(tmp_path / "c.h5", make_state())
    with h5py.File(path, "r+") as f:  # rewritten through HDF5: fletcher32 is recomputed
        f["/params/conv2d/bias"][0] += 1.0
    with pytest.raises(CorruptCheckpointError, match="digest mismatch") as info:
        load(path)
    assert path in str(info.value)


def test_changed_state_attribute_fails_the_digest(tmp_path):
    path = write_checkpoint(tmp_path / "c.h5", make_state())
    with h5py.File(path, "r+") as f:
        f["/state"].attrs["step"] = np.int64(1235)
    with pytest.raises(CorruptCheckpointError, match="digest mismatch"):
        load(path)


def test_wrong_format_version_is_named(tmp_path):
    path = write_checkpoint(tmp_path / "c.h5", make_state())
    with h5py.File(path, "r+") as f:
        f["/state"].attrs["format_version"] = np.int64(FORMAT_VERSION + 1)
        f["/state"].attrs["added_in_a_later_version"] = "x"  # the version is reported first
    with pytest.raises(CorruptCheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        load(path)


def test_data_identity_is_stored_as_json_and_covered_by_the_digest(tmp_path):
    path = write_checkpoint(tmp_path / "c.h5", make_state())
    with h5py.File(path, "r") as f:
        stored = json.loads(f["/state"].attrs["data"].decode("utf-8"))
        assert f["/state"].attrs["format_version"] == 3 == FORMAT_VERSION
    assert stored == make_state().data
    assert load(path).data == make_state().data
    with h5py.File(path, "r+") as f:  # another test set claimed after the fact
        f["/state"].attrs.modify("data", np.bytes_(json.dumps({"train": {"samples": 60000}}).encode()))
    with pytest.raises(CorruptCheckpointError, match="digest mismatch"):
        load(path)


def test_the_convolution_plan_is_stored_as_json_and_covered_by_the_digest(tmp_path):
    path = write_checkpoint(tmp_path / "c.h5", make_state())
    with h5py.File(path, "r") as f:
        assert json.loads(f["/state"].attrs["conv_algorithms"].decode("utf-8")) == make_state().conv_algorithms
    assert load(path).conv_algorithms == {"conv2d": "fft", "conv2d_1": "gemm"}
    with h5py.File(path, "r+") as f:  # another plan claimed after the fact
        f["/state"].attrs.modify("conv_algorithms", np.bytes_(b'{"conv2d":"gemm","conv2d_1":"gemm"}'))
    with pytest.raises(CorruptCheckpointError, match="digest mismatch"):
        load(path)


def test_format_2_files_still_load_without_a_convolution_plan(tmp_path):
    state = make_state()
    state.conv_algorithms, state.format_version = {}, 2
    path = write_checkpoint(tmp_path / "v2.h5", state)
    with h5py.File(path, "r") as f:
        assert "conv_algorithms" not in f["/state"].attrs and f["/state"].attrs["format_version"] == 2
    back = load(path)
    assert back.format_version == 2 and back.conv_algorithms == {} and back.data == make_state().data
    assert_same(state.validate(), back)
    state.conv_algorithms = {"conv2d": "fft"}
    with pytest.raises(InvalidArgumentError, match="conv_algorithms: a format-1 or -2 checkpoint cannot hold it"):
        write_checkpoint(tmp_path / "bad.h5", state)
    state = make_state()
    state.conv_algorithms = {"conv2d": 3}
    with pytest.raises(InvalidArgumentError, match=r"conv_algorithms: Expect: a dict \{layer name: algorithm"):
        write_checkpoint(tmp_path / "bad.h5", state)


def test_format_1_files_still_load_without_a_data_identity(tmp_path):
    state = make_state()
    state.data, state.conv_algorithms = {}, {}
    state.format_version = 1
    path = write_checkpoint(tmp_path / "v1.h5", state)
    with h5py.File(path, "r") as f:
        assert "data" not in f["/state"].attrs and f["/state"].attrs["format_version"] == 1
    back = load(path)
    assert back.format_version == 1 and back.data == {}
    assert_same(state.validate(), back)
    # Exported weights keep the version's layout and the identity.
    export_weights(write_checkpoint(tmp_path / "v2.h5", make_state()), tmp_path / "w.h5", use_ema=False)
    assert load(tmp_path / "w.h5").data == make_state().data


def test_a_format_1_file_with_a_data_attribute_is_refused(tmp_path):
    state = make_state()
    state.data, state.conv_algorithms = {}, {}
    state.format_version = 1
    path = write_checkpoint(tmp_path / "v1.h5", state)
    with h5py.File(path, "r+") as f:
        f["/state"].attrs["data"] = np.bytes_(b"{}")
    with pytest.raises(CorruptCheckpointError, match="unexpected attribute 'data'"):
        load(path)


@pytest.mark.parametrize("data, version, message", [
    ({"train": {1, 2}}, 2, "data must hold JSON-able values only"),
    ({1: {}}, 2, "data: Expect: a dict with str keys"),
    ({"train": {}}, 1, "a format-1 checkpoint cannot hold it"),
    ({}, 4, r"format_version: Expect: one of \(1, 2, 3\) Actual: 4"),
])
def test_bad_data_or_version_is_refused_before_writing(tmp_path, data, version, message):
    state = make_state()
    state.data, state.format_version = data, version
    with pytest.raises(InvalidArgumentError, match=message):
        write_checkpoint(tmp_path / "c.h5", state)
    assert os.listdir(tmp_path) == []


def test_missing_group_is_named(tmp_path):
    path = write_checkpoint(tmp_path / "c.h5", make_state())
    with h5py.File(path, "r+") as f:
        del f["ema"]
    with pytest.raises(CorruptCheckpointError, match=r"missing \['ema'\]"):
        load(path)
    with h5py.File(path, "r+") as f:
        del f["state"]
    with pytest.raises(CorruptCheckpointError, match="group /state is missing"):
        load(path)


def test_strict_expected_lists_all_problems_at_once(tmp_path):
    state = make_state()
    path = write_checkpoint(tmp_path / "c.h5", state)
    expected = expected_from(state.params)
    assert load(path, expected).step == 1234
    del expected["conv2d/bias"]                         # unexpected in the file
    expected["dense_2/kernel"] = ((3, 3), np.float32)   # missing from the file
    expected["dense/kernel"] = ((300, 8), np.float64)   # shape mismatch
    with pytest.raises(CheckpointMismatchError) as info:
        load(path, expected)
    msg = str(info.value)
    assert path in msg
    assert "missing" in msg and "dense_2/kernel" in msg
    assert "unexpected" in msg and "conv2d/bias" in msg
    assert "/params/dense/kernel: file [300, 7], model [300, 8]" in msg
    assert "/ema/dense/kernel" in msg and "/optimizer/m/dense/kernel" in msg


def test_strict_expected_checks_dtype(tmp_path):
    state = make_state()
    path = write_checkpoint(tmp_path / "c.h5", state)
    expected = expected_from(state.params)
    expected["conv2d/kernel"] = ((5, 5, 1, 4), np.float64)
    with pytest.raises(CheckpointMismatchError, match="file dtype float32, model float64"):
        load(path, expected)
    with pytest.raises(InvalidArgumentError, match="Expect: \\(shape, dtype\\)"):
        load(path, {"conv2d/kernel": 3})
    # The caller's mistake is reported as such, even for a file that is not there.
    with pytest.raises(InvalidArgumentError, match="expected: Expect: a dict"):
        load(path + ".missing", [("conv2d/kernel", (5, 5, 1, 4), "float32")])
    with pytest.raises(InvalidArgumentError, match="max_bytes"):
        load(path, max_bytes=-1)


@pytest.mark.parametrize("bad, match", [
    ({"params": {"": np.zeros(2)}}, "Expect: a checkpoint path"),
    ({"params": {"a//b": np.zeros(2)}}, "Expect: a checkpoint path"),
    ({"params": {"a/../b": np.zeros(2)}}, "Expect: a checkpoint path"),
    ({"params": {"kernel\n": np.zeros(2)}}, "Expect: a checkpoint path"),
    ({"params": {"dense kernel": np.zeros(2)}}, "Expect: a checkpoint path"),
    ({"params": {"a": np.zeros(2), "a/b": np.zeros(2)}}, "both 'a' and 'a/b'"),
    ({"params": {"w": np.array([object()])}}, "dtype: Expect: one of .* Actual: object"),
    ({"params": {"w": np.array(["x"])}}, "dtype: Expect: .* Actual: <U1"),
    ({"params": {"w": np.zeros(2, np.complex64)}}, "dtype: Expect: .* Actual: complex64"),
    ({"params": {"w": [1.0, 2.0]}}, "Expect: a numpy array Actual: list"),
    ({"params": {}, "step": -1}, r"step: Expect: in \[0"),
    ({"params": {}, "step": 1.5}, "step: Expect: an int Actual: float"),
    ({"params": {}, "world_size": 0}, r"world_size: Expect: in \[1"),
    ({"params": {}, "rng": {"g": object()}}, "rng must hold JSON-able values"),
    ({"params": {}, "metrics": {"loss": "low"}}, r"metrics\['loss'\]: Expect: a number Actual: str"),
    ({"params": {}, "config_text": b"x"}, "config_text: Expect: a str Actual: bytes"),
    ({"params": {}, "config_text": "a\x00b"}, "contains a NUL character"),
    ({"params": {}, "optimizer": {"name": "sgd", "slot": {}}}, "unknown keys"),
    ({"params": {}, "optimizer": {"slots": {"m/x": {}}}}, "must not contain '/'"),
    ({"params": {}, "optimizer": {"hyper": {"lr": [1]}}}, "Expect: a float or a str Actual: list"),
])
def test_invalid_state_is_rejected_before_writing(tmp_path, bad, match):
    with pytest.raises(InvalidArgumentError, match=match):
        write_checkpoint(tmp_path / "c.h5", CheckpointState(**bad))
    assert os.listdir(tmp_path) == []


def test_only_the_writer_writes(tmp_path):
    class Comm:
        def __init__(self, rank):
            self.rank, self.size = rank, 2

    state = make_state()
    assert write_checkpoint(tmp_path / "a.h5", state, comm=Comm(1)) is None
    assert write_checkpoint(tmp_path / "b.h5", state, is_writer=False) is None
    assert os.listdir(tmp_path) == []
    assert write_checkpoint(tmp_path / "c.h5", state, comm=Comm(0)) is not None
    assert os.listdir(tmp_path) == ["c.h5"]


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path / "c.h5", make_state(0))
    import distnet.checkpoint.writer as writer

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.os, "replace", fail)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        write_checkpoint(path, make_state(1))
    assert path in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c.h5"]
    assert_same(make_state(0).validate(), load(path))


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        write_checkpoint(tmp_path / "nope" / "c.h5", make_state())


def test_chunk_shape():
    assert chunk_shape((), 4) is None
    assert chunk_shape((0, 5), 4) is None
    assert chunk_shape((10,), 4, target=1024) == (10,)
    # 6272 rows of 4 KiB, at most 256 rows a chunk: 25 equal chunks of 251 rows.
    assert chunk_shape((6272, 1024), 4, target=2 ** 20) == (251, 1024)
    assert chunk_shape((6272, 1024), 4, target=4 * 2 ** 20) == (896, 1024)  # 7 x 896 = 6272
    assert chunk_shape((3, 5000), 8, target=1024) == (1, 125)
    for shape in [(7,), (6272, 1024), (5, 5, 1, 32), (3, 1000, 1000), (1001, 3)]:
        c = chunk_shape(shape, 4, target=2 ** 12)
        assert len(c) == len(shape) and all(1 <= a <= b for a, b in zip(c, shape))
        assert int(np.prod(c)) * 4 <= 2 ** 12
        # Allocated chunks (HDF5 allocates every chunk in full) waste < 1 %.
        allocated = int(np.prod([-(-n // k) * k for n, k in zip(shape, c)]))
        assert allocated <= int(np.prod(shape)) * 1.01


def test_header_items_are_text():
    items = header_items(make_state().validate())
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in items.items())
    assert items["/state/step"] == "1234"


def test_ema_params_and_export(tmp_path):
    state = make_state()
    src = write_checkpoint(tmp_path / "c.h5", state)
    full = load(src)
    # 'counter', 'empty', 'codes', 'big_endian' have no shadow.
    with pytest.raises(CheckpointError, match="without an EMA shadow"):
        ema_params(full)
    weights = ema_params(full, strict=False)
    np.testing.assert_array_equal(weights["conv2d/kernel"], state.ema["conv2d/kernel"])
    np.testing.assert_array_equal(weights["counter"], state.params["counter"])
    out = export_weights(src, tmp_path / "model-ema.h5", use_ema=True, strict=False)
    exported = load(out, expected_from(state.params))
    assert exported.ema == {} and exported.optimizer["slots"] == {} and exported.rng == {}
    assert exported.step == state.step and exported.config_text == state.config_text
    for k, v in weights.items():
        assert exported.params[k].tobytes() == v.tobytes() and exported.params[k].dtype == v.dtype
    trained = load(export_weights(src, tmp_path / "model.h5", use_ema=False))
    for k, v in state.params.items():
        assert trained.params[k].tobytes() == v.tobytes()


def test_ema_params_without_shadows(tmp_path):
    state = CheckpointState(params={"w": np.ones(2, np.float32)})
    with pytest.raises(CheckpointError, match="no EMA shadow weights"):
        ema_params(state)
    path = write_checkpoint(tmp_path / "c.h5", state)
    with pytest.raises(CheckpointError, match="no EMA shadow weights"):
        export_weights(path, tmp_path / "e.h5")


def test_package_never_unpickles():
    root = pathlib.Path(distnet.__file__).parent
    for source in root.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "pickle.load" not in text, source
        assert "allow_pickle=True" not in text, source


def test_long_config_text_round_trips(tmp_path):
    # Past 64 KiB HDF5 moves attributes to its dense storage.
    text = "".join(f"key_{i} = {i * 7 % 1000}  # ünïcode\n" for i in range(5000))
    assert len(text.encode()) > 2 ** 17
    state = CheckpointState(params={"w": np.ones(3, np.float32)}, config_text=text)
    assert load(write_checkpoint(tmp_path / "c.h5", state)).config_text == text
