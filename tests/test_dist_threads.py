"""Thread control: each rank's BLAS threads (distnet/distributed/threads.py)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import distnet
from distnet import layers
from distnet.data import ArrayDataset
from distnet.distributed import SingleCommunicator
from distnet.distributed import threads
from distnet.distributed.threads import (THREAD_VARIABLES, PerformanceWarning, blas_kernel_advice, cpu_vector_level,
                                  kernel_vector_level, limit_blas_threads, usable_cores)
from distnet.errors import InvalidArgumentError
from distnet.training.trainer import Trainer
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


def test_one_process_is_left_alone_and_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")   # init's spin advice is another test's
    assert limit_blas_threads(SingleCommunicator(), "auto") is None
    assert limit_blas_threads(SingleCommunicator(), None) is None
    for bad in (0, -1, 1.5, True, "all"):
        with pytest.raises(InvalidArgumentError, match="blas_threads: Expect: 'auto', None or an int > 0"):
            limit_blas_threads(SingleCommunicator(), bad)
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((4, 2, 2, 1), dtype=np.float32), rng.integers(0, 3, 4), num_classes=3)
    model = distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(2, 2, 1), seed=0)
    Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), data,
            global_batch_size=2, steps=1, comm=SingleCommunicator())
    assert distnet.distributed.init(SingleCommunicator(), malloc_tuning=False).blas_threads is None


# --- OpenBLAS kernels held below the CPU by OPENBLAS_CORETYPE --------------

CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx {}\n"


def test_the_cpus_vector_level_is_read_from_its_flags():
    assert cpu_vector_level(CPUINFO.format("avx2 fma avx512f avx512vl")) == "avx512"
    assert cpu_vector_level(CPUINFO.format("avx2 fma")) == "avx2"
    assert cpu_vector_level(CPUINFO.format("avx2")) == "older"      # AVX2 without FMA: not Haswell
    assert cpu_vector_level("processor : 0\n") is None             # no flags line: unknown, no advice
    assert [kernel_vector_level(c) for c in ("SkylakeX", "cooperlake", "Haswell", "ZEN", "Sandybridge")] == \
        ["avx512", "avx512", "avx2", "avx2", "older"]


def test_a_pinned_kernel_older_than_the_cpu_is_named_with_the_variable_that_pins_it():
    advice = blas_kernel_advice({"OPENBLAS_CORETYPE": "Haswell"}, ["Haswell"], "avx512")
    assert "Haswell kernels" in advice and "OPENBLAS_CORETYPE=Haswell" in advice and "AVX-512" in advice
    assert "Unset OPENBLAS_CORETYPE" in advice
    older = blas_kernel_advice({"OPENBLAS_CORETYPE": "Sandybridge"}, ["Sandybridge"], "avx2")
    assert "Sandybridge kernels" in older and "AVX2 and FMA" in older


def test_no_advice_when_openblas_chose_or_the_pin_matches_the_cpu(monkeypatch):
    assert blas_kernel_advice({}, ["Haswell"], "avx512") is None                      # OpenBLAS's own choice
    assert blas_kernel_advice({"OPENBLAS_CORETYPE": ""}, ["Haswell"], "avx512") is None
    assert blas_kernel_advice({"OPENBLAS_CORETYPE": "SkylakeX"}, ["SkylakeX"], "avx512") is None
    assert blas_kernel_advice({"OPENBLAS_CORETYPE": "Haswell"}, ["Haswell"], "avx2") is None
    assert blas_kernel_advice({"OPENBLAS_CORETYPE": "Zen"}, ["Zen"], "avx2") is None
    assert blas_kernel_advice({"OPENBLAS_CORETYPE": "Haswell"}, [], "avx512") is None   # no OpenBLAS (MKL)
    monkeypatch.setattr(threads, "cpu_vector_level", lambda: None)                   # CPU unknown
    assert blas_kernel_advice({"OPENBLAS_CORETYPE": "Haswell"}, ["Haswell"]) is None


def test_init_warns_and_building_a_trainer_does_not(monkeypatch):
    monkeypatch.setattr(threads, "blas_kernel_advice", lambda: "held back")
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")   # the spin advice: the next tests
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((4, 2, 2, 1), dtype=np.float32), rng.integers(0, 3, 4), num_classes=3)

    def make():
        model = distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(2, 2, 1), seed=0)
        return Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.1), data,
                       global_batch_size=2, steps=1, comm=SingleCommunicator())

    with pytest.warns(PerformanceWarning, match="held back"):
        proc = distnet.distributed.init(SingleCommunicator(), malloc_tuning=False)
    assert proc.abort_hook is None   # one process: nothing to abort
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        make()   # building objects changes nothing in the process and says nothing


def test_several_openblas_threads_that_spin_long_are_named_with_the_variable_and_its_value():
    advice = threads.blas_spin_advice({}, [2])
    assert "OPENBLAS_THREAD_TIMEOUT=20" in advice and "distnet command" in advice
    assert threads.blas_spin_advice({"OPENBLAS_THREAD_TIMEOUT": "28"}, [2, 1]) == advice
    assert threads.blas_spin_advice({"OPENBLAS_THREAD_TIMEOUT": "20"}, [2]) is None   # brief: the command's value
    assert threads.blas_spin_advice({}, [1]) is None                                 # one thread: nothing spins
    assert threads.blas_spin_advice({}, []) is None                                  # no OpenBLAS (MKL)


def test_init_warns_of_a_long_spin_on_several_blas_threads_only(monkeypatch):
    from threadpoolctl import threadpool_limits

    import warnings

    monkeypatch.setattr(threads, "blas_kernel_advice", lambda: None)
    for value, warns in (("28", True), ("20", False)):
        monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", value)
        with threadpool_limits(limits=2, user_api="blas"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            distnet.distributed.init(SingleCommunicator(), blas_threads=None, malloc_tuning=False)
        said = [str(w.message) for w in caught if issubclass(w.category, PerformanceWarning)]
        assert (len(said) == 1 and "OPENBLAS_THREAD_TIMEOUT" in said[0]) if warns else said == [], (value, said)
