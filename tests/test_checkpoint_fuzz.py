"""Fuzz: mutated valid checkpoints either load with identical content (the
mutation hit unused bytes) or raise CheckpointError; nothing else, no hang."""
import faulthandler
import os

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distnet.checkpoint import CheckpointState, load, write_checkpoint
from distnet.errors import CheckpointError

# A hang is turned into a crash with a traceback instead of a stuck CI run.
HANG_SECONDS = 60
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def small_state():
    rng = np.random.default_rng(3)
    params = {"conv2d/kernel": rng.standard_normal((3, 3, 1, 2)).astype(np.float32),
              "conv2d/bias": rng.standard_normal(2).astype(np.float32),
              "dense/kernel": rng.standard_normal((40, 5)),
              "step_count": np.array(3, np.int64)}
    floats = {k: v for k, v in params.items() if v.dtype.kind == "f"}
    return CheckpointState(
        params=params, ema={k: v * 0.9 for k, v in floats.items()},
        optimizer={"name": "adam", "iterations": 3,
                   "slots": {"m": {k: v * 0.1 for k, v in floats.items()},
                             "v": {k: v * v for k, v in floats.items()}},
                   "hyper": {"learning_rate": 0.001, "epsilon": 1e-8}},
        step=3, epoch=0, position=96, rng={"numpy": '{"state": 1}'}, world_size=2,
        config_text="[job]\nsteps = 3\n", metrics={"loss": 2.25})


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    path = write_checkpoint(directory / "ckpt-00000003.h5", small_state())
    with open(path, "rb") as fh:
        data = fh.read()
    return Valid((str(directory), data, load(path)))


class Valid(tuple):
    """(directory, file bytes, loaded state), with a short repr for reports."""

    def __repr__(self):
        return f"<valid checkpoint of {len(self[1])} bytes in {self[0]}>"


def same_content(a, b):
    if sorted(a.arrays()) != sorted(b.arrays()):
        return False
    for (_, x), (_, y) in zip(sorted(a.arrays().items()), sorted(b.arrays().items())):
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            return False
    fields = ("step", "epoch", "position", "rng", "world_size", "config_text", "metrics",
              "format_version", "distnet_version")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and \
        {k: v for k, v in a.optimizer.items() if k != "slots"} == \
        {k: v for k, v in b.optimizer.items() if k != "slots"}


def outcome(path, reference):
    """'loaded' (content identical to the original) or 'rejected'; any other
    exception propagates and fails the test."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        state = load(path)
    except CheckpointError as err:
        assert path in str(err)
        return "rejected"
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert same_content(state, reference), "a mutated file loaded with different content"
    return "loaded"


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_byte_flips(valid, data):
    directory, original, reference = valid
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)),
                               min_size=1, max_size=8))
    mutated = bytearray(original)
    for offset, mask in flips:
        mutated[offset] ^= mask
    path = os.path.join(directory, "flipped.h5")
    with open(path, "wb") as fh:
        fh.write(mutated)
    outcome(path, reference)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_bit_flips_in_metadata(valid, data):
    # The first 4 KiB hold the superblock, object headers and chunk index.
    # (A file with variable-length string attributes once hung HDF5 here:
    # their global heap has no checksum; the writer uses fixed-length ones.)
    directory, original, reference = valid
    flips = data.draw(st.lists(st.tuples(st.integers(0, min(4096, len(original)) - 1),
                                         st.integers(0, 7)), min_size=1, max_size=3))
    mutated = bytearray(original)
    for offset, bit in flips:
        mutated[offset] ^= 1 << bit
    path = os.path.join(directory, "metadata.h5")
    with open(path, "wb") as fh:
        fh.write(mutated)
    outcome(path, reference)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_truncation(valid, data):
    directory, original, reference = valid
    length = data.draw(st.integers(0, len(original) - 1))
    path = os.path.join(directory, "truncated.h5")
    with open(path, "wb") as fh:
        fh.write(original[:length])
    assert outcome(path, reference) == "rejected"


ATTRIBUTE_VALUES = st.one_of(
    st.integers(-2 ** 63, 2 ** 63 - 1).map(np.int64),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(min_size=1, max_size=40).map(np.void),
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=5).map(np.array),
    st.sampled_from(["distnet-checkpoint", "0" * 64, "{}", "[]", "1", "adam"]),
    st.sampled_from([np.int64(0), np.int64(1), np.int64(2), np.int64(-1), np.int64(3)]),
)


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_attribute_changes(valid, data):
    directory, original, reference = valid
    path = os.path.join(directory, "attributes.h5")
    with open(path, "wb") as fh:
        fh.write(original)
    with h5py.File(path, "r+") as f:
        objects = ["/"]
        f.visit(lambda name: objects.append("/" + name))
        where = data.draw(st.sampled_from(sorted(objects)), label="object")
        existing = sorted(f[where].attrs)
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            new_name = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=12)
            name = data.draw(st.sampled_from(existing) | new_name if existing else new_name,
                             label="name")
            value = data.draw(ATTRIBUTE_VALUES, label="value")
            if name in f[where].attrs:
                del f[where].attrs[name]
            f[where].attrs[name] = value
    outcome(path, reference)


def test_unchanged_copy_loads(valid):
    directory, original, reference = valid
    path = os.path.join(directory, "copy.h5")
    with open(path, "wb") as fh:
        fh.write(original)
    assert outcome(path, reference) == "loaded"
