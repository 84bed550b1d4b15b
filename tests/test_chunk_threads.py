"""ChunkThreads: element-wise updates over chunks on several threads give the one-thread bits."""
import threading
import warnings

import numpy as np
import pytest

import distnet
from distnet.distributed.chunk_threads import ChunkThreads, blas_threads
from distnet.errors import InvalidArgumentError
from distnet.tensor import Variable


def test_every_item_once_in_contiguous_parts_on_several_threads():
    pool = ChunkThreads(3, min_per_part=2)
    seen, names = [], set()
    lock = threading.Lock()

    def work(part, lo, hi):
        with lock:
            seen.append((part, lo, hi))
            names.add(threading.current_thread().name)

    pool.run(20, work)
    assert sorted(seen) == [(0, 0, 6), (1, 6, 13), (2, 13, 20)]
    # part 0 in the caller, the others on the pool (whose idle thread may take both)
    assert threading.current_thread().name in names and len(names) >= 2
    assert all(n.startswith("distnet-chunks") for n in names - {threading.current_thread().name})
    seen.clear()
    pool.run(3, work)   # too few items for a second part
    assert seen == [(0, 0, 3)]
    pool.close()


def test_one_thread_runs_in_the_caller_and_starts_no_pool():
    pool = ChunkThreads(1, min_per_part=1)
    where = []
    pool.run(100, lambda part, lo, hi: where.append((threading.current_thread().name, lo, hi)))
    assert where == [(threading.current_thread().name, 0, 100)] and pool._pool is None


def test_an_error_in_a_worker_reaches_the_caller():
    pool = ChunkThreads(2, min_per_part=1)

    def work(part, lo, hi):
        if part == 1:
            raise ValueError("boom in part 1")

    with pytest.raises(ValueError, match="boom in part 1"):
        pool.run(10, work)
    pool.close()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "many"])
def test_bad_thread_count(bad):
    with pytest.raises(InvalidArgumentError, match="threads: Expect: an int >= 1 or 'blas'"):
        ChunkThreads(bad)


def test_blas_threads_is_a_positive_count():
    assert blas_threads() >= 1


OPTIMIZERS = [
    lambda: distnet.optimizers.Adam(0.01),
    lambda: distnet.optimizers.Momentum(0.1, momentum=0.9, use_nesterov=True),
    lambda: distnet.optimizers.RMSProp(0.01, momentum=0.5, centered=True),
    lambda: distnet.optimizers.GradientDescent(0.1),
]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_optimizers_on_two_threads_give_the_one_thread_bits(make):
    rng = np.random.default_rng(0)
    shapes = [(37, 29), (7,), (1001,)]   # 17 chunks of 64 and a partial one; one small; one odd
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    results = []
    for threads in (1, 2):
        opt = make()
        opt.chunk_size = 64
        opt._chunk_threads = ChunkThreads(threads, min_per_part=2)
        vs = [Variable(a.copy(), name=f"v{i}") for i, a in enumerate(init)]
        for step in grads:
            opt.apply_gradients(list(zip(step, vs)))
        results.append([v.numpy() for v in vs] + [np.asarray(a) for s in opt.state_dict()["slots"].values()
                                                  for a in s.values()])
        if threads == 2:
            assert opt._chunk_threads._pool is not None   # the big variables really ran on two threads
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_ema_on_two_threads_gives_the_one_thread_bits():
    rng = np.random.default_rng(1)
    results = []
    for threads in (1, 2):
        ema = distnet.ExponentialMovingAverage(0.9)
        ema.chunk_size = 64
        ema._chunk_threads = ChunkThreads(threads, min_per_part=2)
        v = Variable(rng.standard_normal((50, 41)).astype(np.float32) if threads == 1 else results[0][0],
                     name="w")
        start = v.numpy().copy()
        for step in range(3):
            v.assign(start + step)
            ema.apply([v], num_updates=step)
        results.append((start, ema.average(v).numpy()))
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("mode", ["ignore", "raise"])
def test_the_callers_errstate_holds_in_every_part(mode):
    # numpy keeps np.errstate in a context variable: a pool thread starts from its own context
    # unless the part runs in a copy of the caller's.
    pool = ChunkThreads(2, min_per_part=1)
    big = np.full(1000, 3e38, np.float32)
    out = np.empty_like(big)
    on_pool = []

    def work(part, lo, hi):
        on_pool.append(part)
        if part == 1:   # only the pool's part overflows
            np.multiply(big[lo:hi], np.float32(10), out=out[lo:hi])

    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a warning from the pool's part fails the "ignore" case
        with np.errstate(over=mode):
            if mode == "raise":
                with pytest.raises(FloatingPointError, match="overflow"):
                    pool.run(1000, work)
            else:
                pool.run(1000, work)
                assert np.isinf(out[500:]).all()
    assert sorted(on_pool) == [0, 1]
    pool.close()
