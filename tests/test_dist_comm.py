"""Communicators: the single-process one in process, the MPI one under real
``mpiexec -n 2`` and ``-n 3`` runs checked against numpy."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from distnet.distributed import SingleCommunicator, block_counts, get_communicator, launched_world_size
from distnet.errors import DistributedError, DTypeError, InvalidArgumentError
from mpi_util import mpi_env, run_mpi

COMM_CHECKS = 21   # OK lines comm_ops.py prints on rank 0


def _python(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=mpi_env(env_extra))


# -- choosing a communicator ----------------------------------------------
@pytest.mark.parametrize("env, size", [
    ({}, None),
    ({"PMI_SIZE": "4", "PMI_RANK": "1"}, 4),
    ({"PMI_SIZE": "1", "PMI_RANK": "0"}, 1),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, 2),
    ({"MV2_COMM_WORLD_SIZE": "3"}, 3),
    ({"PMI_RANK": "0"}, -1),
    ({"PMIX_RANK": "2"}, -1),
])
def test_launched_world_size_reads_the_launcher_environment(env, size):
    assert launched_world_size(env) == size


def test_launched_world_size_rejects_garbage():
    with pytest.raises(DistributedError, match="PMI_SIZE"):
        launched_world_size({"PMI_SIZE": "two"})


def test_auto_without_launcher_is_single_and_never_imports_mpi4py():
    res = _python("import sys, distnet.distributed as d; c = d.get_communicator('auto'); "
                  "print(type(c).__name__, c.rank, c.size, 'mpi4py' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["SingleCommunicator", "0", "1", "False"]


def test_auto_with_a_size_one_launch_is_single():
    res = _python("import sys, distnet.distributed as d; c = d.get_communicator('auto'); "
                  "print(type(c).__name__, 'mpi4py' in sys.modules)", {"PMI_SIZE": "1"})
    assert res.stdout.split() == ["SingleCommunicator", "False"], res.stderr


def test_explicit_mpi_without_mpi4py_is_a_clear_error():
    res = _python("import sys; sys.modules['mpi4py'] = None\n"
                  "import distnet.distributed as d\n"
                  "try:\n    d.get_communicator('mpi')\n"
                  "except d.CollectiveError:\n    print('wrong error type')\n"
                  "except Exception as e:\n    print(type(e).__name__, '|', e)\n")
    assert res.returncode == 0, res.stderr
    name, message = res.stdout.split(" | ", 1)
    assert name == "DistributedError"
    assert "pip install mpi4py mpich" in message and "import failed" in message


def test_unknown_kind_is_refused():
    with pytest.raises(InvalidArgumentError, match="'auto', 'single' or 'mpi'"):
        get_communicator("nccl")


def test_explicit_single_is_honoured_even_under_a_launcher(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "4")
    assert isinstance(get_communicator("single"), SingleCommunicator)


# -- the single-process communicator -----------------------------------------
def test_single_collectives_are_the_identity():
    comm = SingleCommunicator()
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    before = a.copy()
    for op in ("sum", "max", "min"):
        assert comm.allreduce_(a, op=op) is a
    assert comm.bcast_(a) is a
    np.testing.assert_array_equal(a, before)
    comm.barrier()
    assert comm.allgather_object({"x": 1}) == [{"x": 1}]
    assert comm.bcast_object((1, "a")) == (1, "a")
    flat = np.arange(5.0)
    np.testing.assert_array_equal(comm.reduce_scatter(flat), flat)
    np.testing.assert_array_equal(comm.allgather(flat), flat)


@pytest.mark.parametrize("bad, exc, words", [
    (np.zeros((4, 4))[:, 0], InvalidArgumentError, "C-contiguous"),
    ([1.0, 2.0], InvalidArgumentError, "numpy array"),
    (np.zeros(3, np.complex128), DTypeError, "complex128"),
    (np.zeros(3, bool), DTypeError, "bool"),
])
def test_single_validates_buffers_like_mpi(bad, exc, words):
    with pytest.raises(exc, match=words):
        SingleCommunicator().allreduce_(bad)


def test_single_rejects_read_only_bad_op_and_bad_root():
    comm = SingleCommunicator()
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="writable"):
        comm.allreduce_(ro)
    with pytest.raises(InvalidArgumentError, match="prod"):
        comm.allreduce_(np.zeros(3), op="prod")
    with pytest.raises(InvalidArgumentError, match="root"):
        comm.bcast_(np.zeros(3), root=1)
    with pytest.raises(InvalidArgumentError, match="counts"):
        comm.reduce_scatter(np.zeros(4), counts=[3])


def test_single_abort_ends_the_process_with_the_code():
    res = _python("import distnet.distributed as d; d.SingleCommunicator().abort(7, 'stopping now'); print('survived')")
    assert res.returncode == 7
    assert "survived" not in res.stdout
    assert "[rank 0] stopping now" in res.stderr


@pytest.mark.parametrize("total, size, want", [(10, 3, [4, 3, 3]), (9, 3, [3, 3, 3]), (2, 3, [1, 1, 0]),
                                                (0, 2, [0, 0]), (7, 1, [7])])
def test_block_counts(total, size, want):
    assert block_counts(total, size) == want


# -- real MPI ------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_collectives_match_numpy(nprocs):
    run = run_mpi("comm_ops.py", nprocs, timeout=60)
    assert run.returncode == 0, run.describe()
    assert sorted(run.values("DONE")) == sorted(f"{r} {nprocs} MPICommunicator" for r in range(nprocs)), run.describe()
    assert len(run.values("OK")) == COMM_CHECKS, run.describe()


def _can_unshare_network() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.mpi
def test_mpi_needs_no_network():
    """hydra forks the ranks locally and they talk through shared memory: the
    job runs in a network namespace where no interface, not even loopback, is up."""
    # Taking the network away needs a new network namespace (root + unshare);
    # CI runs as root, so this runs there.
    if not _can_unshare_network():
        pytest.skip("needs root and `unshare -n` (a new network namespace) to take the network away")
    run = run_mpi("comm_ops.py", 2, timeout=60, prefix=("unshare", "-n"))
    assert run.returncode == 0, run.describe()
    assert len(run.values("DONE")) == 2 and len(run.values("OK")) == COMM_CHECKS, run.describe()
