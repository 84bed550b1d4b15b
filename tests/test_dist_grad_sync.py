"""Replicated: the sample-weighted mean over ranks, regularization
counted once, global scalars, non-finite flag.  In process with a world of
one and with a simulated world; under real ``mpiexec`` with uneven shards."""
from __future__ import annotations

import numpy as np
import pytest

from distnet.distributed import CollectiveError, Replicated, SingleCommunicator
from distnet.distributed.strategies.base import reduce_arrays
from distnet.errors import DistributedError, InvalidArgumentError, ShapeError
from distnet.tensor import Variable
from mpi_util import run_mpi


def make_vars():
    return [Variable(np.zeros((2, 3), np.float32), name="dense/kernel"),
            Variable(np.zeros(3, np.float32), name="dense/bias"),
            Variable(np.zeros((4,), np.float32), name="a/w")]


class SumOfWorlds(SingleCommunicator):
    """A communicator that all-reduces by adding what other simulated ranks
    contributed (given as a list of buffers), to test the arithmetic of
    uneven shards in process."""

    def __init__(self, others):
        super().__init__()
        self.others = others   # list of lists of buffers, one list per other rank
        self.calls_made = 0

    def allreduce_(self, arr, op="sum"):
        for other in self.others:
            arr += other[self.calls_made]
        self.calls_made += 1
        return arr


def test_single_rank_returns_the_gradients_themselves(rng):
    variables = make_vars()
    grads = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    res = reduce_arrays(Replicated(SingleCommunicator(), variables), grads, 7)
    assert res.global_count == 7 and res.is_finite
    for g, want in zip(res.grads, grads):
        np.testing.assert_allclose(g, want, rtol=1e-6)
    assert [v for _, v in res.grads_and_vars()] == variables


def test_uneven_shards_give_the_sample_weighted_mean(rng):
    """Rank 0 has 1 sample, rank 1 has 3: the mean is over the 4 samples, not
    the mean of the two ranks' means."""
    variables = make_vars()
    per_sample = [[rng.standard_normal(v.shape) for v in variables] for _ in range(4)]
    mean0 = [per_sample[0][k] for k in range(3)]
    mean1 = [sum(per_sample[i][k] for i in (1, 2, 3)) / 3 for k in range(3)]
    layout = Replicated(SingleCommunicator(), variables).layout
    # Rank 1's packed contribution: count 3, loss sum 0, then its share 3/4 * mean1.
    share = layout.pack([(m * 3 / 4).astype(np.float32) for m in mean1], np.zeros(layout.total, np.float32))
    contribution = [np.concatenate([[3.0, 0.0], share]).astype(np.float32)]
    sync = Replicated(SumOfWorlds([contribution]), variables, scalar_names=("loss_sum",))
    res = reduce_arrays(sync, [m.astype(np.float32) for m in mean0], 1, global_count=4)
    assert res.global_count == 4
    for k, v in enumerate(variables):
        want = sum(per_sample[i][k] for i in range(4)) / 4
        np.testing.assert_allclose(res.grads[k], want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(res.grads[k], (mean0[k] + mean1[k]) / 2, atol=1e-3)


def test_regularization_gradient_enters_exactly_once(rng):
    variables = make_vars()
    grads = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    reg = [np.full(v.shape, 0.5, np.float32) for v in variables]
    res = reduce_arrays(Replicated(SingleCommunicator(), variables), grads, 5, regularization_grads=reg)
    for g, d, r in zip(res.grads, grads, reg):
        np.testing.assert_allclose(g, d + r, rtol=1e-6)


def test_a_rank_with_no_samples_contributes_zeros_but_gets_the_average():
    variables = make_vars()
    # The other rank: 6 samples, its share of the mean 2.0 everywhere.
    contribution = [np.concatenate([[6.0], np.full(sum(v.size for v in variables), 2.0)]).astype(np.float32)]
    sync = Replicated(SumOfWorlds([contribution]), variables)
    garbage = [np.full(v.shape, np.nan, np.float32) for v in variables]   # ignored: count 0
    res = reduce_arrays(sync, garbage, 0, regularization_grads={"a/w": np.ones(4, np.float32)}, global_count=6)
    assert res.global_count == 6 and res.is_finite
    np.testing.assert_allclose(res.grads[0], 2.0)
    np.testing.assert_allclose(res.grads[2], 3.0)


def test_no_gradients_at_all_from_an_empty_rank():
    contribution = [np.concatenate([[2.0], np.full(13, 2.0)]).astype(np.float32)]
    res = Replicated(SumOfWorlds([contribution]), make_vars()).reduce(0)   # no sink this step: zeros
    assert res.global_count == 2
    for g in res.grads:
        np.testing.assert_allclose(g, 2.0)


def test_an_empty_global_batch_is_an_error():
    with pytest.raises(CollectiveError, match="empty"):
        Replicated(SingleCommunicator(), make_vars()).reduce(0)


def test_scalars_are_summed_and_the_count_reported():
    sync = Replicated(SingleCommunicator(), make_vars(), scalar_names=("loss_sum", "correct"))
    res = reduce_arrays(sync, [None] * 3, 4, scalars={"loss_sum": 2.5, "correct": 3})
    assert res.scalars == {"loss_sum": 2.5, "correct": 3.0}
    assert res.global_count == 4


def test_known_global_count_is_checked():
    sync = Replicated(SingleCommunicator(), make_vars())
    with pytest.raises(DistributedError, match="global_count"):
        reduce_arrays(sync, [None] * 3, 4, global_count=5)
    with pytest.raises(InvalidArgumentError, match="global_count"):
        reduce_arrays(sync, [None] * 3, 4, global_count=3)


def test_mapping_input_and_missing_gradients_are_zero(rng):
    variables = make_vars()
    g = rng.standard_normal((2, 3)).astype(np.float32)
    res = reduce_arrays(Replicated(SingleCommunicator(), variables), {"dense/kernel": g}, 2)
    np.testing.assert_allclose(res.grads[0], g, rtol=1e-6)
    assert not res.grads[1].any() and not res.grads[2].any()


def test_non_finite_is_flagged():
    variables = make_vars()
    sync = Replicated(SingleCommunicator(), variables, bucket_bytes=16)
    for bad in (np.nan, np.inf, -np.inf):
        grads = [np.zeros(v.shape, np.float32) for v in variables]
        grads[1][2] = bad
        assert not reduce_arrays(sync, grads, 1).is_finite
    assert reduce_arrays(sync, [None] * 3, 1).is_finite
    huge = [np.full(v.shape, 3e38, np.float32) for v in variables]   # finite, but the sum overflows
    assert reduce_arrays(sync, huge, 1).is_finite


def test_layout_is_in_sorted_name_order_whatever_the_list_order():
    a = Replicated(SingleCommunicator(), make_vars())
    b = Replicated(SingleCommunicator(), list(reversed(make_vars())))
    grads = {"a/w": np.full(4, 1.0), "dense/bias": np.full(3, 2.0), "dense/kernel": np.full((2, 3), 3.0)}
    reduce_arrays(a, grads, 1)
    reduce_arrays(b, grads, 1)
    np.testing.assert_array_equal(a.buffer, b.buffer)
    np.testing.assert_array_equal(a.buffer[1:5], 1.0)   # a/w first, after the count


def test_buckets_are_consecutive_slices_of_the_buffer():
    sync = Replicated(SingleCommunicator(), make_vars(), bucket_bytes=20)
    assert [b.size for b in sync.buckets] == [5, 5, 4]   # 1 count + 13 gradient elements
    assert all(np.shares_memory(b, sync.buffer) for b in sync.buckets)
    assert sync.nbytes == 4 * 14
    assert len(Replicated(SingleCommunicator(), make_vars()).buckets) == 1


def test_results_are_views_into_the_buffer():
    sync = Replicated(SingleCommunicator(), make_vars())
    res = reduce_arrays(sync, [None] * 3, 1)
    assert all(np.shares_memory(g, sync.buffer) for g in res.grads)


def test_gradients_written_into_the_views_are_scaled_in_place(rng):
    variables = make_vars()
    contribution = [np.concatenate([[1.0], np.zeros(13)]).astype(np.float32)]   # another rank: 1 sample, zeros
    sync = Replicated(SumOfWorlds([contribution]), variables)
    views = sync.grad_views()
    want = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    for view, w in zip(views, want):
        np.copyto(view, w)
    res = reduce_arrays(sync, views, 3, global_count=4)
    for g, w in zip(res.grads, want):
        np.testing.assert_allclose(g, w * 3 / 4, rtol=1e-6)


def test_prescaled_gradients_are_summed_as_they_are():
    variables = make_vars()
    contribution = [np.concatenate([[2.0], np.full(13, 0.25)]).astype(np.float32)]
    sync = Replicated(SumOfWorlds([contribution]), variables)
    res = reduce_arrays(sync, [np.full(v.shape, 0.5, np.float32) for v in variables], 2, prescaled=True)
    assert res.global_count == 4
    for g in res.grads:
        np.testing.assert_allclose(g, 0.75)


@pytest.mark.parametrize("build, exc, words", [
    (lambda: Replicated(SingleCommunicator(), []), InvalidArgumentError, "at least one"),
    (lambda: Replicated(SingleCommunicator(), make_vars() + [Variable([1.0], name="a/w")]),
     InvalidArgumentError, r"Found duplicates: \['a/w'\]"),
    (lambda: Replicated(SingleCommunicator(), make_vars(), bucket_bytes=0), InvalidArgumentError,
     "bucket_bytes"),
    (lambda: Replicated(SingleCommunicator(), make_vars(), scalar_names=("count",)),
     InvalidArgumentError, "scalar_names"),
])
def test_bad_construction_is_refused(build, exc, words):
    with pytest.raises(exc, match=words):
        build()


def test_bad_sync_arguments_are_refused():
    sync = Replicated(SingleCommunicator(), make_vars(), scalar_names=("loss_sum",))
    with pytest.raises(ShapeError, match=r"'dense/kernel'.*\(2, 3\).*\(3, 2\)"):
        reduce_arrays(sync, [np.zeros((3, 2)), None, None], 1)
    with pytest.raises(InvalidArgumentError, match="3 gradients"):
        reduce_arrays(sync, [None], 1)
    with pytest.raises(InvalidArgumentError, match="unknown variables"):
        reduce_arrays(sync, {"nope": np.zeros(1)}, 1)
    with pytest.raises(InvalidArgumentError, match="local_count"):
        reduce_arrays(sync, [None] * 3, -1)
    with pytest.raises(InvalidArgumentError, match="scalars"):
        reduce_arrays(sync, [None] * 3, 1, scalars={"accuracy": 1.0})
    with pytest.raises(ShapeError, match="regularization"):
        reduce_arrays(sync, [None] * 3, 1, regularization_grads=[np.zeros(5), None, None])


@pytest.mark.mpi
@pytest.mark.parametrize("counts", [(4, 4), (3, 0, 5)])
def test_mpi_sample_weighted_mean_with_uneven_shards(counts):
    run = run_mpi("grad_sync_check.py", len(counts), *counts, timeout=60)
    assert run.returncode == 0, run.describe()
    assert sorted(run.values("DONE")) == [str(r) for r in range(len(counts))], run.describe()
    assert len(run.values("OK")) == 13, run.describe()


# -- overlap: non-blocking buckets started as gradients become final --------
class RecordingWorld(SingleCommunicator):
    """Records when each bucket's non-blocking all-reduce starts, what the
    bucket held then, and the tests / waits made on it."""

    def __init__(self):
        super().__init__()
        self.events = []

    def iallreduce_(self, arr, op="sum"):
        world = self
        index = len([e for e in self.events if e[0] == "start"])
        self.events.append(("start", index, arr.size, arr.copy()))

        class Req:
            def test(self):
                world.events.append(("test", index))
                return False

            def wait(self):
                world.events.append(("wait", index))
        return Req()


def overlap_vars():
    # sorted: a/w (4), b/w (6), c/w (8): with the 2 scalars, 20 floats.
    return [Variable(np.zeros(n, np.float32), name=name) for name, n in (("c/w", 8), ("a/w", 4), ("b/w", 6))]


def test_overlap_starts_each_bucket_when_its_variables_are_final_last_first(rng):
    world = RecordingWorld()
    variables = overlap_vars()
    sync = Replicated(world, variables, bucket_bytes=24, scalar_names=("loss_sum",), overlap=True)
    # Buckets of 6 floats: [cnt, loss, a0..a3], [b0..b5], [c0..c5], [c6, c7].
    assert [b.size for b in sync.buckets] == [6, 6, 6, 2]
    grads = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    sink = sync.gradient_sink(accumulate=False, local_count=3, scalars={"loss_sum": 1.5})
    assert world.events == []
    sink(0, grads[0])       # c/w: buckets 3 and 2 are complete, started last first, then tested
    assert [(e[1], e[2]) for e in world.events if e[0] == "start"] == [(0, 2), (1, 6)]
    np.testing.assert_array_equal(world.events[0][3], grads[0][6:])
    assert world.events[-1] == ("test", 0)   # MPI is given a chance to move the started buckets
    sink(1, grads[1])       # a/w: bucket 0 is complete, but bucket 1 (b/w) comes first
    assert len([e for e in world.events if e[0] == "start"]) == 2
    sink(2, grads[2])
    starts = [e for e in world.events if e[0] == "start"]
    assert [e[2] for e in starts] == [2, 6, 6, 6]
    np.testing.assert_array_equal(starts[3][3], [3, 1.5, *grads[1]])
    res = sync.reduce(3, scalars={"loss_sum": 1.5}, global_count=3)
    assert [e[1] for e in world.events if e[0] == "wait"] == [0, 1, 2, 3]
    for g, want in zip(res.grads, grads):
        np.testing.assert_array_equal(g, want)
    assert res.scalars == {"loss_sum": 1.5} and res.global_count == 3


def test_overlap_sync_without_begin_starts_every_bucket_last_first():
    """A rank with no sample skips begin(); it must still start the same
    non-blocking reductions in the same order as its peers."""
    world = RecordingWorld()
    sync = Replicated(world, overlap_vars(), bucket_bytes=24, scalar_names=("loss_sum",), overlap=True)
    with pytest.raises(CollectiveError):   # alone in the world, an empty batch
        sync.reduce(0)
    assert [e[2] for e in world.events if e[0] == "start"] == [2, 6, 6, 6]
    assert [e[1] for e in world.events if e[0] == "wait"] == [0, 1, 2, 3]


def test_overlap_in_one_process_equals_the_blocking_sync_bitwise(rng):
    variables = overlap_vars()
    grads = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    reg = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    plain = Replicated(SingleCommunicator(), variables, bucket_bytes=24, scalar_names=("loss_sum",))
    want = reduce_arrays(plain, grads, 4, scalars={"loss_sum": 2.0}, regularization_grads=reg, global_count=4,
                        prescaled=True)
    sync = Replicated(SingleCommunicator(), variables, bucket_bytes=24, scalar_names=("loss_sum",),
                      overlap=True)
    sink = sync.gradient_sink(accumulate=False, local_count=4, scalars={"loss_sum": 2.0})
    for i in (2, 0, 1):
        sink(i, grads[i])
    got = sync.reduce(4, scalars={"loss_sum": 2.0}, regularization_grads=reg, global_count=4)
    for g, w in zip(got.grads, want.grads):
        np.testing.assert_array_equal(g, w)
    assert got.scalars == want.scalars and got.is_finite
    # The next step can begin again; a non-finite gradient is still flagged.
    sink = sync.gradient_sink(accumulate=False, local_count=4, scalars={"loss_sum": 2.0})
    bad = [g.copy() for g in grads]
    bad[0][0] = np.nan
    for i in range(3):
        sink(i, bad[i])
    assert not sync.reduce(4, scalars={"loss_sum": 2.0}, global_count=4).is_finite


def test_overlap_misuse_is_refused():
    variables = overlap_vars()
    with pytest.raises(InvalidArgumentError, match="overlap: Expect: True or False"):
        Replicated(SingleCommunicator(), variables, overlap="yes")
    sync = Replicated(SingleCommunicator(), variables, overlap=True, scalar_names=("loss_sum",))
    sync.gradient_sink(accumulate=False, local_count=2, scalars={"loss_sum": 1.0})
    with pytest.raises(InvalidArgumentError, match="an overlapped step already begun"):
        sync.gradient_sink(accumulate=False, local_count=2, scalars={"loss_sum": 1.0})
    with pytest.raises(InvalidArgumentError, match="as given to gradient_sink"):
        sync.reduce(3, scalars={"loss_sum": 1.0})
    sync.gradient_sink(accumulate=False, local_count=2, scalars={"loss_sum": 1.0})
    with pytest.raises(InvalidArgumentError, match="an overlapped step already begun"):
        reduce_arrays(sync, [np.zeros(v.shape, np.float32) for v in variables], 2, scalars={"loss_sum": 1.0})


@pytest.mark.parametrize("overlap", [False, True])
def test_sync_allocates_no_large_array(overlap):
    """The step's reduce works in the preallocated buffer: with gradients
    landed by the sink and a regularization gradient, a reduce of 4 MB
    allocates nothing close to a gradient's size."""
    import tracemalloc

    variables = [Variable(np.zeros((1000, 1000), np.float32), name="big"),
                 Variable(np.zeros(10, np.float32), name="small")]
    sync = Replicated(SingleCommunicator(), variables, bucket_bytes=1 << 20, scalar_names=("loss_sum",),
                      overlap=overlap)
    views = sync.grad_views()
    reg = [np.full((1000, 1000), 0.5, np.float32), None]
    grads = [np.ones(v.shape, np.float32) for v in variables]
    tracemalloc.start()
    try:
        for _ in range(2):
            sink = sync.gradient_sink(accumulate=False, local_count=3, scalars={"loss_sum": 1.0})
            for i in (1, 0):
                sink(i, grads[i])
            res = sync.reduce(3, scalars={"loss_sum": 1.0}, regularization_grads=reg, global_count=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.is_finite and res.grads[0] is not None
    np.testing.assert_array_equal(views[0], 1.5)
    assert peak < 64 * 1024, f"reduce allocated {peak} bytes at peak (a gradient is 4 MB)"


def test_no_test_of_requests_outside_an_overlapped_backward():
    world = RecordingWorld()
    sync = Replicated(world, overlap_vars(), bucket_bytes=24, overlap=True)
    # Not the last micro-batch: no bucket may start (the buffer is not final).
    sink = sync.gradient_sink(accumulate=False, local_count=1, scalars={}, last=False)
    for i in range(3):
        sink(i, np.zeros(sync.variables[i].shape, np.float32))
    assert world.events == []
    sync.reduce(1)
    assert [e[0] for e in world.events].count("test") == 0


def test_overlap_and_float16_compression_are_refused_together():
    v = [Variable(np.zeros(3, np.float32), name="a")]
    with pytest.raises(InvalidArgumentError, match=r"overlap=True with compression='float16': Expect: one of them"):
        Replicated(SingleCommunicator(), v, overlap=True, compression="float16")


# -- shared_memory: the two ranks' buffers summed through a shared window ------------
def test_shared_sum_is_refused_or_left_off_where_it_cannot_run():
    variables = make_vars()
    with pytest.raises(InvalidArgumentError, match="shared_memory=True: Expect: an MPI job of 2 ranks on one machine "
                                                   "Actual: 1 rank"):
        Replicated(SingleCommunicator(), variables, shared_memory=True)
    assert not Replicated(SingleCommunicator(), variables, shared_memory="auto").shared
    with pytest.raises(InvalidArgumentError, match="shared_memory=True with overlap=True"):
        Replicated(SingleCommunicator(), variables, overlap=True, shared_memory=True)
    with pytest.raises(InvalidArgumentError, match="shared_memory: Expect: 'auto', True or False Actual: 'yes'"):
        Replicated(SingleCommunicator(), variables, shared_memory="yes")


@pytest.mark.mpi
def test_mpi_shared_sum_gives_the_all_reduce_bits_and_finite_decision():
    run = run_mpi("shared_sum_check.py", 2, timeout=120)
    assert run.returncode == 0, run.describe()
    assert sorted(run.values("DONE")) == ["0", "1"], run.describe()
    assert len(run.values("OK")) == 2 * (2 * 7 + 1), run.describe()
