"""Thread control: each rank's BLAS threads (distnet/dist/threads.py)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.data import ArrayDataset
from distnet.dist import SingleCommunicator
from distnet.dist.threads import THREAD_VARIABLES, limit_blas_threads, usable_cores
from distnet.errors import InvalidArgumentError
from distnet.trainer import Trainer
from mpi_util import run_mpi

UNSET = {v: "" for v in THREAD_VARIABLES}   # as if the user had set none of them


def _threads(run) -> dict:
    assert run.returncode == 0, run.describe()
    found = dict(re.findall(r"THREADS rank=(\d+) (set=\S+ blas=\[[^\]]*\])", run.stdout))
    assert sorted(found) == [str(r) for r in range(len(found))] and found, run.describe()
    return found


@pytest.mark.mpi
def test_two_ranks_on_one_machine_split_its_cores_when_the_environment_does_not_say():
    share = max(1, usable_cores() // 2)
    got = _threads(run_mpi("blas_threads.py", 2, "auto", env=UNSET, timeout=60))
    assert set(got.values()) == {f"set={share} blas=[{share}]"}, got


@pytest.mark.mpi
def test_a_thread_count_in_the_environment_or_none_is_left_alone():
    # mpi_env gives every rank OMP_NUM_THREADS=1 etc.: auto must not touch it.
    assert set(_threads(run_mpi("blas_threads.py", 2, "auto", timeout=60)).values()) == {"set=None blas=[1]"}
    assert {v.split()[0] for v in _threads(run_mpi("blas_threads.py", 2, "none", env=UNSET,
                                                   timeout=60)).values()} == {"set=None"}
    assert set(_threads(run_mpi("blas_threads.py", 3, "1", env=UNSET, timeout=60)).values()) == {"set=1 blas=[1]"}


def test_one_process_is_left_alone_and_bad_values_are_refused():
    assert limit_blas_threads(SingleCommunicator(), "auto") is None
    assert limit_blas_threads(SingleCommunicator(), None) is None
    for bad in (0, -1, 1.5, True, "all"):
        with pytest.raises(InvalidArgumentError, match="blas_threads: Expect: 'auto', None or an int > 0"):
            limit_blas_threads(SingleCommunicator(), bad)
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((4, 2, 2, 1), dtype=np.float32), rng.integers(0, 3, 4), num_classes=3)
    model = distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(2, 2, 1), seed=0)
    t = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), data,
                global_batch_size=2, steps=1, comm=SingleCommunicator())
    assert t.blas_threads is None
