"""OpenBLAS's idle threads spin briefly in distnet's processes (distnet/runner/blas_spin.py).

The variable must be in the environment before numpy loads OpenBLAS: the
``distnet`` command sets it first thing, unless the user set it, and its
workers inherit it.  The FFT convolution's per-frequency split
(``nn._rows.over_parts_one_blas_thread``) runs only where it is brief, on
one BLAS thread, and gives the bits of the unsplit call.
"""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import distnet
from distnet import nn
from distnet.distributed.chunk_threads import ChunkThreads
from distnet.distributed.threads import one_blas_thread
from distnet.nn import _rows
from distnet.runner import blas_spin

#: Stands in for the CLI in a child: what the environment holds and whether numpy is loaded when it starts.
FAKE_CLI = """
import os, sys, types
cli = types.ModuleType("distnet.jobs.cli")
def main():
    print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), "numpy" in sys.modules)
    return 0
cli.main = main
sys.modules["distnet.jobs.cli"] = cli
from distnet.__main__ import main as command
sys.exit(command())
"""


def test_spin_briefly_sets_the_variable_unless_the_user_did():
    env = {}
    blas_spin.spin_briefly(env)
    assert env == {"OPENBLAS_THREAD_TIMEOUT": str(blas_spin.SPIN)}
    env = {"OPENBLAS_THREAD_TIMEOUT": "26"}
    blas_spin.spin_briefly(env)
    assert env == {"OPENBLAS_THREAD_TIMEOUT": "26"}


@pytest.mark.parametrize("value, brief", [("18", True), ("20", True), ("4", True), ("21", False), ("28", False),
                                          ("", False), ("soon", False), (None, False)])
def test_spins_briefly_reads_the_variable(value, brief):
    env = {} if value is None else {"OPENBLAS_THREAD_TIMEOUT": value}
    assert blas_spin.spins_briefly(env) is brief


@pytest.mark.parametrize("user_value, seen", [(None, str(blas_spin.SPIN)), ("26", "26")])
def test_the_command_sets_it_before_numpy_loads(user_value, seen):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if user_value is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = user_value
    out = subprocess.run([sys.executable, "-c", FAKE_CLI], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [seen, "False"]


def _blas_counts():
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_one_blas_thread_restores_the_counts_also_on_error():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_counts()
        assert before and all(n == 2 for n in before)
        with pytest.raises(RuntimeError, match="inside"):
            with one_blas_thread():
                assert all(n == 1 for n in _blas_counts())
                raise RuntimeError("inside")
        assert _blas_counts() == before


def _fft_conv(x, w, g):
    y = nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME", algorithm="fft")
    return [y.data.copy(), *distnet.gradients(distnet.reduce_sum(y * distnet.constant(g)), [x, w])]


def test_the_fft_frequencies_split_over_two_threads_give_the_bits_of_one(monkeypatch):
    rng = np.random.default_rng(3)
    x = distnet.Variable(rng.standard_normal((6, 9, 9, 4)).astype(np.float32))
    w = distnet.Variable((rng.standard_normal((5, 5, 4, 3)) * 0.2).astype(np.float32))
    g = rng.standard_normal((6, 9, 9, 3)).astype(np.float32)
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    whole = _fft_conv(x, w, g)

    pool = ChunkThreads(2, min_per_part=1)
    monkeypatch.setattr(_rows, "_threads", lambda: pool)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "18")
    seen = []   # (thread, BLAS threads) of every run of frequencies
    original = _rows.over_parts_one_blas_thread

    def watched(n, work):
        def recorded(lo, hi):
            seen.append((threading.get_ident(), tuple(_blas_counts())))
            work(lo, hi)
        original(n, recorded)

    monkeypatch.setattr(distnet.nn.conv_fft, "over_parts_one_blas_thread", watched)
    try:
        split = _fft_conv(x, w, g)
    finally:
        pool.close()
    assert len({t for t, _ in seen}) == 2, seen               # forward and backward each split in two
    assert all(all(n == 1 for n in counts) for _, counts in seen)
    for a, b in zip(whole, split):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_without_a_brief_spin_the_frequencies_stay_on_the_calling_thread(monkeypatch):
    pool = ChunkThreads(2, min_per_part=1)
    monkeypatch.setattr(_rows, "_threads", lambda: pool)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "28")
    threads = []
    _rows.over_parts_one_blas_thread(10, lambda lo, hi: threads.append((threading.get_ident(), lo, hi)))
    pool.close()
    assert threads == [(threading.get_ident(), 0, 10)]
