"""CheckpointManager: naming, rotation, atomicity, stale temporaries, fallback."""
import os
import subprocess
import sys
import textwrap
import warnings

import h5py
import numpy as np
import pytest

import distnet.checkpoint.manager as manager_module
from distnet.checkpoint import (
    CheckpointManager, CheckpointMismatchError, CheckpointState, CheckpointWarning,
    CorruptCheckpointError, checkpoint_name, expected_from, load,
)
from distnet.errors import CheckpointError, InvalidArgumentError


def make_state(step, seed=None):
    rng = np.random.default_rng(step if seed is None else seed)
    params = {"dense/kernel": rng.standard_normal((20, 8)).astype(np.float32),
              "dense/bias": rng.standard_normal(8).astype(np.float32)}
    return CheckpointState(
        params=params,
        ema={k: v * 0.5 for k, v in params.items()},
        optimizer={"name": "momentum", "iterations": step,
                   "slots": {"momentum": {k: v * 0.1 for k, v in params.items()}},
                   "hyper": {"learning_rate": 0.1, "momentum": 0.9}},
        step=step, epoch=step // 10, position=(step % 10) * 32,
        rng={"seed": 0}, config_text="[job]\n", metrics={"loss": 1.0 / (1 + step)},
    )


def corrupt(path):
    """Flip 16 bytes of /params/dense/kernel's raw data on disk (keeping the size)."""
    with h5py.File(path, "r") as f:
        offset = f["/params/dense/kernel"].id.get_chunk_info(0).byte_offset + 100
    with open(path, "r+b") as fh:
        fh.seek(offset)
        chunk = fh.read(16)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in chunk))


def names(directory):
    return sorted(os.listdir(directory))


def test_save_names_files_by_step_and_latest_is_highest(tmp_path):
    mgr = CheckpointManager(tmp_path, max_to_keep=None)
    assert mgr.latest() is None and mgr.restore_latest() is None
    for step in (5, 100, 20):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = mgr.save(make_state(step))
        assert os.path.basename(path) == checkpoint_name(step)
        assert len(caught) == (step == 20)  # 20 is saved after 100
    assert checkpoint_name(100) == "ckpt-00000100.h5"
    assert checkpoint_name(123456789) == "ckpt-123456789.h5"
    assert [os.path.basename(p) for p in mgr.checkpoints()] == \
        ["ckpt-00000005.h5", "ckpt-00000020.h5", "ckpt-00000100.h5"]
    assert mgr.latest().endswith("ckpt-00000100.h5")
    assert mgr.restore_latest().step == 100


def test_max_to_keep_rotation(tmp_path):
    mgr = CheckpointManager(tmp_path / "ckpt", max_to_keep=3)
    for step in range(1, 8):
        mgr.save(make_state(step * 10))
        kept = [int(os.path.basename(p)[5:13]) for p in mgr.checkpoints()]
        assert kept == [s * 10 for s in range(max(1, step - 2), step + 1)]
    assert names(tmp_path / "ckpt") == ["ckpt-00000050.h5", "ckpt-00000060.h5", "ckpt-00000070.h5"]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_max_to_keep_must_be_positive_int(tmp_path, bad):
    with pytest.raises(InvalidArgumentError, match="max_to_keep"):
        CheckpointManager(tmp_path, max_to_keep=bad)


def test_new_file_is_verified_before_the_oldest_is_deleted(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, max_to_keep=2)
    mgr.save(make_state(1))
    mgr.save(make_state(2))
    seen = []
    real_load = manager_module.load

    def spy(path, expected=None, **options):
        seen.append((os.path.basename(path), names(tmp_path)))
        return real_load(path, expected, **options)

    monkeypatch.setattr(manager_module, "load", spy)
    mgr.save(make_state(3))
    assert seen == [("ckpt-00000003.h5",
                     ["ckpt-00000001.h5", "ckpt-00000002.h5", "ckpt-00000003.h5"])]
    assert names(tmp_path) == ["ckpt-00000002.h5", "ckpt-00000003.h5"]


def test_failed_verification_removes_new_file_and_keeps_old(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, max_to_keep=1)
    mgr.save(make_state(1))

    def broken(path, expected=None, **options):
        raise CorruptCheckpointError(f"checkpoint {path}: simulated bad disk")

    monkeypatch.setattr(manager_module, "load", broken)
    with pytest.raises(CheckpointError, match="failed verification.*simulated bad disk"):
        mgr.save(make_state(2))
    assert names(tmp_path) == ["ckpt-00000001.h5"]


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import distnet.checkpoint.writer as writer
    from distnet.checkpoint import CheckpointManager, CheckpointState
    # Die like SIGKILL right after the temporary file is complete and fsynced,
    # before the rename: no Python clean-up runs.
    writer.os.replace = lambda src, dst: os._exit(17)
    mgr = CheckpointManager(sys.argv[1], max_to_keep=3)
    mgr.save(CheckpointState(params={"w": np.full(1000, 2.0, np.float32)}, step=200))
""")


def test_crash_between_write_and_rename(tmp_path):
    mgr = CheckpointManager(tmp_path, max_to_keep=3)
    first = mgr.save(make_state(100))
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    leftovers = [n for n in names(tmp_path) if n != "ckpt-00000100.h5"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".ckpt-00000200.h5.tmp-")
    # Finding the latest never looks at the temporary file.
    assert mgr.latest() == first
    assert mgr.restore_latest().step == 100
    # A new writer's manager cleans the leftover up; a reader's does not.
    CheckpointManager(tmp_path, is_writer=False)
    assert len(names(tmp_path)) == 2
    fresh = CheckpointManager(tmp_path)
    assert fresh.removed_temporary == [str(tmp_path / leftovers[0])]
    assert names(tmp_path) == ["ckpt-00000100.h5"]


def test_temporary_names_never_match_finished_pattern(tmp_path):
    for name in (".ckpt-00000300.h5.tmp-123", "ckpt-00000300.h5.tmp-5", "ckpt-300.h5",
                 "ckpt-0000030a.h5", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    mgr = CheckpointManager(tmp_path, is_writer=False)
    assert mgr.latest() is None
    CheckpointManager(tmp_path)  # only the hidden temporary name is removed
    assert ".ckpt-00000300.h5.tmp-123" not in names(tmp_path)
    assert "notes.txt" in names(tmp_path) and "ckpt-300.h5" in names(tmp_path)


def test_corrupt_newest_falls_back_with_a_warning(tmp_path):
    mgr = CheckpointManager(tmp_path, max_to_keep=3)
    for step in (10, 20, 30):
        mgr.save(make_state(step))
    newest = mgr.latest()
    corrupt(newest)
    with pytest.raises(CorruptCheckpointError, match="fletcher32"):
        load(newest)
    with pytest.warns(CheckpointWarning, match="ckpt-00000030.h5") as record:
        state = mgr.restore_latest(expected_from(make_state(0).params))
    assert len(record) == 1
    assert state.step == 20
    ref = make_state(20)
    for k, v in ref.params.items():
        assert state.params[k].tobytes() == v.tobytes()


def test_truncated_newest_falls_back(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(make_state(1))
    newest = mgr.save(make_state(2))
    with open(newest, "r+b") as fh:
        fh.truncate(os.path.getsize(newest) // 3)
    with pytest.warns(CheckpointWarning, match="truncated or corrupt"):
        assert mgr.restore_latest().step == 1


def test_all_corrupt_lists_every_file(tmp_path):
    mgr = CheckpointManager(tmp_path)
    paths = [mgr.save(make_state(s)) for s in (1, 2)]
    corrupt(paths[0])
    with open(paths[1], "wb") as fh:
        fh.write(b"not hdf5 at all")
    with pytest.warns(CheckpointWarning):
        with pytest.raises(CheckpointError, match="no usable checkpoint") as info:
            mgr.restore_latest()
    msg = str(info.value)
    assert paths[0] in msg and paths[1] in msg
    assert "Expect: an HDF5 file" in msg and "corrupt" in msg


def test_mismatch_does_not_fall_back(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(make_state(1))
    mgr.save(make_state(2))
    expected = expected_from(make_state(0).params)
    expected["dense/kernel"] = ((21, 8), np.float32)
    with pytest.raises(CheckpointMismatchError, match="ckpt-00000002.h5"):
        mgr.restore_latest(expected)


def test_non_writer_does_nothing(tmp_path):
    class Comm:
        rank, size = 1, 2

    target = tmp_path / "ckpt"
    mgr = CheckpointManager(target, comm=Comm())
    assert not mgr.is_writer
    assert mgr.save(make_state(1)) is None
    assert not target.exists()
    writer = CheckpointManager(target)
    writer.save(make_state(1))
    assert mgr.restore_latest().step == 1  # every rank may read


def test_same_step_overwrites(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(make_state(5, seed=1))
    mgr.save(make_state(5, seed=2))
    assert names(tmp_path) == ["ckpt-00000005.h5"]
    got = mgr.restore_latest()
    assert got.params["dense/bias"].tobytes() == make_state(5, seed=2).params["dense/bias"].tobytes()


def test_saving_an_older_step_keeps_it_and_warns(tmp_path):
    mgr = CheckpointManager(tmp_path, max_to_keep=2)
    mgr.save(make_state(100))
    mgr.save(make_state(200))
    with pytest.warns(CheckpointWarning, match="newer checkpoints exist.*ckpt-00000200.h5"):
        path = mgr.save(make_state(150))
    assert os.path.exists(path)
    assert names(tmp_path) == ["ckpt-00000150.h5", "ckpt-00000200.h5"]
    with pytest.warns(CheckpointWarning):
        mgr.save(make_state(50))   # the oldest, yet never deleted right after saving
    assert "ckpt-00000050.h5" in names(tmp_path)


KILL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from distnet.checkpoint import CheckpointManager, CheckpointState
    mgr = CheckpointManager(sys.argv[1], max_to_keep=2)
    first = int(sys.argv[2])
    big = np.random.default_rng(first).standard_normal(1_000_000).astype(np.float32)  # 4 MB
    print("ready", flush=True)
    for step in range(first, first + 10_000):
        big[0] = step
        mgr.save(CheckpointState(params={"big": big}, step=step))
        print(step, flush=True)
""")


def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint(tmp_path, capsys):
    """Kill a writer with SIGKILL at random moments (some land mid-write):
    the newest finished file always loads, without any fallback."""
    import random
    import signal
    import time

    rnd = random.Random(1234)
    last_step, mid_write = 0, 0
    kills = 6
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path), str(last_step + 1)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rnd.uniform(0.05, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            proc.stdout.close()
        mid_write += any(n.startswith(".ckpt-") for n in names(tmp_path))
        mgr = CheckpointManager(tmp_path, max_to_keep=2)  # removes the leftover temporary
        assert not any(n.startswith(".ckpt-") for n in names(tmp_path))
        if mgr.latest() is None:  # killed before its first save finished
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error", CheckpointWarning)
            state = mgr.restore_latest({"big": ((1_000_000,), np.float32)})
        assert state.step >= last_step and state.params["big"][0] == state.step
        last_step = state.step
    assert last_step > 0
    with capsys.disabled():
        print(f"\n{kills} SIGKILLs, {mid_write} during a write; newest step {last_step}, always loadable")
