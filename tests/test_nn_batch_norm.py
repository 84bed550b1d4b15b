"""Batch normalization: TF 2.21's recorded values, gradient checks, and the
statistics synchronized over 2 and 3 workers (threads in one process, then
real ranks under mpiexec) equal to one worker's."""
import json
import threading
from pathlib import Path

import numpy as np
import pytest

import distnet
from distnet.errors import DTypeError, InvalidArgumentError, ShapeError
from distnet.gradcheck import GradientCheckError, check_gradients
from distnet.nn.batch_norm import batch_norm_train, batch_normalization, moments, moving_average_update
from mpi_util import run_script

TF = json.loads((Path(__file__).parent / "tf_reference" / "nn_values.json").read_text())


def draw(seed, *shape, scale=1.0, shift=0.0):
    """As tests/tf_reference/record_nn.py draws its inputs."""
    return (np.random.RandomState(seed).randn(*shape) * scale + shift).astype(np.float32)


def tf_case(case):
    shape = tuple(TF[case]["shape"])
    c = shape[-1]
    return (draw(1, *shape, scale=2.0, shift=1.0), draw(2, *shape), draw(3, c) * 0.5 + 1.0, draw(4, c),
            {k: np.asarray(v, np.float32) for k, v in TF[case]["layer"].items()},
            {k: np.asarray(v, np.float32) for k, v in TF[case]["nn"].items()})


# -- TensorFlow's numbers ------------------------------------------------------------------

@pytest.mark.parametrize("case", ["bn4", "bn2"])
def test_training_output_gradients_and_moving_statistics_match_tf(case):
    x, r, gamma, beta, ref, _ = tf_case(case)
    xt, gt, bt = distnet.constant(x), distnet.constant(gamma), distnet.constant(beta)
    y, st = batch_norm_train(xt, gt, bt, epsilon=1e-3)
    np.testing.assert_allclose(y.numpy(), ref["y"], rtol=1e-5, atol=1e-5)
    dx, dg, db = distnet.gradients(distnet.reduce_sum(y * distnet.constant(r)), [xt, gt, bt])
    np.testing.assert_allclose(dx, ref["dx"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dg, ref["dgamma"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, ref["dbeta"], rtol=1e-5, atol=1e-5)
    # TF's layer: a 4-D input takes the fused kernel, whose moving variance is fed the unbiased
    # batch variance; a 2-D input the biased one.
    fed = st.unbiased_variance() if x.ndim == 4 else st.variance
    mm = moving_average_update(np.zeros(x.shape[-1], np.float32), st.mean, 0.9)
    mv = moving_average_update(np.ones(x.shape[-1], np.float32), fed, 0.9)
    np.testing.assert_allclose(mm, ref["moving_mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mv, ref["moving_variance"], rtol=1e-6, atol=1e-7)
    y_inf = batch_normalization(xt, mm, mv, beta, gamma, 1e-3)
    np.testing.assert_allclose(y_inf.numpy(), ref["y_inference_after_one_update"], rtol=1e-5, atol=1e-5)


def test_the_other_variance_would_not_match_tf():
    """The biased/unbiased choice above is visible in the numbers (the check can fail)."""
    x, _, gamma, beta, ref, _ = tf_case("bn4")
    st = batch_norm_train(distnet.constant(x), gamma, beta, epsilon=1e-3).statistics
    wrong = moving_average_update(np.ones(2, np.float32), st.variance, 0.9)
    assert not np.allclose(wrong, ref["moving_variance"], rtol=1e-4)


@pytest.mark.parametrize("case", ["bn4", "bn2"])
def test_moments_and_batch_normalization_match_tf(case):
    x, r, gamma, beta, _, ref = tf_case(case)
    axes = list(range(x.ndim - 1))
    xt = distnet.constant(x)
    m, v = moments(xt, axes)
    np.testing.assert_allclose(m.numpy(), ref["mean"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v.numpy(), ref["variance"], rtol=1e-5, atol=1e-6)
    mk, vk = moments(xt, axes, keepdims=True)
    assert mk.shape == ref["mean_keep"].shape == (1,) * (x.ndim - 1) + (x.shape[-1],)
    np.testing.assert_allclose(vk.numpy(), ref["variance_keep"], rtol=1e-5, atol=1e-6)
    y = batch_normalization(xt, m, v, beta, gamma, 1e-3)
    np.testing.assert_allclose(y.numpy(), ref["y"], rtol=1e-5, atol=1e-5)
    dx, = distnet.gradients(distnet.reduce_sum(y * distnet.constant(r)), [xt])
    np.testing.assert_allclose(dx, ref["dx"], rtol=1e-4, atol=1e-5)


def test_moments_known_values():
    m, v = moments(distnet.constant([[1.0, 2.0], [3.0, 6.0]]), axes=[0])
    np.testing.assert_array_equal(m.numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(v.numpy(), [1.0, 4.0])


# -- gradient checks -----------------------------------------------------------------------

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("shape,axis", [((4, 3, 3, 2), -1), ((6, 3), -1), ((3, 4, 2, 2), 1), ((5, 1), 0)])
def test_fused_backward_gradient_check(shape, axis):
    x = RNG.standard_normal(shape) * 2 + 1
    c = shape[axis]
    check_gradients(lambda x, g, b: batch_norm_train(x, g, b, epsilon=1e-3, axis=axis).output,
                    [x, RNG.random(c) + 0.5, RNG.standard_normal(c)])


def test_gradient_check_without_scale_and_offset():
    check_gradients(lambda x: batch_norm_train(x, epsilon=1e-2).output, [RNG.standard_normal((5, 3))])


def test_composed_ops_gradient_check():
    def by_hand(x, mean_shift, g, b):
        m, v = moments(x, [0, 1, 2])
        return batch_normalization(x, m + mean_shift, v, b, g, 1e-3)

    check_gradients(by_hand, [RNG.standard_normal((3, 2, 2, 3)), RNG.standard_normal(3) * 0.1,
                              RNG.random(3) + 0.5, RNG.standard_normal(3)])
    check_gradients(lambda x: moments(x, [0], keepdims=True)[1], [RNG.standard_normal((4, 3))])


def test_gradient_check_notices_a_wrong_backward(monkeypatch):
    """The check above can fail: drop the mean-gradient term and it does."""
    from distnet.nn import batch_norm as mod

    original = mod.BatchNormTrain.backward

    def wrong(self, g, needs):
        dx, dg, db = original(self, g, needs)
        return (None if dx is None else dx + g * 0.01), dg, db

    monkeypatch.setattr(mod.BatchNormTrain, "backward", wrong)
    with pytest.raises(GradientCheckError):
        check_gradients(lambda x: batch_norm_train(x, epsilon=1e-3).output, [RNG.standard_normal((5, 2))])


def test_fused_equals_composed():
    x, g, b = RNG.standard_normal((6, 2, 2, 3)), RNG.random(3) + 0.5, RNG.standard_normal(3)
    y1 = batch_norm_train(x, g, b, epsilon=1e-3).output.numpy()
    m, v = moments(distnet.constant(x), [0, 1, 2])
    y2 = batch_normalization(distnet.constant(x), m, v, b, g, 1e-3).numpy()
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)


# -- synchronized statistics: simulated workers ---------------------------------------------

class ThreadSum:
    """An all-reduce between threads of one process: every worker's vector, summed."""

    def __init__(self, n):
        self.barrier = threading.Barrier(n, timeout=30)
        self.slots = [None] * n

    def reducer(self, rank):
        def reduce(vec):
            self.slots[rank] = vec.copy()
            self.barrier.wait()
            total = sum(self.slots[1:], self.slots[0].copy())
            self.barrier.wait()
            return total

        return reduce


def split_rows(n, workers):
    base, extra = divmod(n, workers)
    starts = [r * base + min(r, extra) for r in range(workers)]
    return [slice(s, s + base + (1 if r < extra else 0)) for r, s in enumerate(starts)]


def run_workers(x, r, gamma, beta, workers, combine, sync=True):
    """Each worker's shard, normalized and differentiated in its own thread; the global gradients."""
    parts = split_rows(len(x), workers)
    hub = ThreadSum(workers)
    results = [None] * workers
    errors = []

    def work(k):
        try:
            xt, gt, bt = distnet.constant(x[parts[k]]), distnet.constant(gamma), distnet.constant(beta)
            y, st = batch_norm_train(xt, gt, bt, epsilon=1e-3, reducer=hub.reducer(k) if sync else None,
                                     combine=combine)
            n_k = parts[k].stop - parts[k].start
            scale = 1.0 / n_k if combine == "mean" else 1.0 / len(x)
            loss = distnet.reduce_sum(y * distnet.constant(r[parts[k]])) * scale
            results[k] = (y.numpy(), st, n_k / len(x) if combine == "mean" else 1.0,
                          *distnet.gradients(loss, [xt, gt, bt]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            hub.barrier.abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    y = np.concatenate([res[0] for res in results])
    dx = np.concatenate([res[3] * res[2] for res in results])
    dg = sum(res[4] * res[2] for res in results)
    db = sum(res[5] * res[2] for res in results)
    return y, dx, dg, db, [res[1] for res in results]


def one_worker(x, r, gamma, beta):
    xt, gt, bt = distnet.constant(x), distnet.constant(gamma), distnet.constant(beta)
    y, st = batch_norm_train(xt, gt, bt, epsilon=1e-3)
    loss = distnet.reduce_sum(y * distnet.constant(r)) * (1.0 / len(x))
    return (y.numpy(), *distnet.gradients(loss, [xt, gt, bt]), st)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_simulated_workers_equal_one_worker(workers, combine):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((11, 3, 2, 4)) * 1.5 + 0.5     # 11 samples: uneven shards
    r = rng.standard_normal(x.shape)
    gamma, beta = rng.random(4) + 0.5, rng.standard_normal(4)
    y1, dx1, dg1, db1, st1 = one_worker(x, r, gamma, beta)
    y, dx, dg, db, stats = run_workers(x, r, gamma, beta, workers, combine)
    for st in stats:
        np.testing.assert_allclose(st.mean, st1.mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(st.variance, st1.variance, rtol=1e-12)
        assert st.count == st1.count == 11 * 3 * 2
    np.testing.assert_allclose(y, y1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx1, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dg, dg1, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(db, db1, rtol=1e-12, atol=1e-13)


def test_per_worker_statistics_differ_from_one_worker():
    """Without the reducer every worker normalizes by its own shard (TF's and Horovod's default)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 5)) * 2 + np.arange(8)[:, None]     # shards with different means
    r = rng.standard_normal(x.shape)
    y1 = one_worker(x, r, np.ones(5), np.zeros(5))[0]
    y, _, _, _, stats = run_workers(x, r, np.ones(5), np.zeros(5), 2, "mean", sync=False)
    assert stats[0].count == 4 * 1 and not np.allclose(stats[0].mean, stats[1].mean)
    assert not np.allclose(y, y1, atol=1e-3)
    np.testing.assert_allclose(y[:4], one_worker(x[:4], r[:4], np.ones(5), np.zeros(5))[0], rtol=1e-12)


def test_a_stand_in_adds_nothing_and_gets_zero_gradients():
    """A worker without samples joins both reductions through a stand-in: the other worker's
    results are one worker's, the stand-in's gradients are zeros and its statistics the global ones."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 2, 3)) * 2 + 1
    r = rng.standard_normal(x.shape)
    gamma, beta = rng.random(3) + 0.5, rng.standard_normal(3)
    hub, results, errors = ThreadSum(2), [None, None], []

    def work(k):
        try:
            data = x if k == 0 else stand_in_sample
            xt, gt, bt = distnet.constant(data), distnet.constant(gamma), distnet.constant(beta)
            y, st = batch_norm_train(xt, gt, bt, epsilon=1e-3, reducer=hub.reducer(k), combine="sum",
                                     stand_in=k == 1)
            loss = distnet.reduce_sum(y * distnet.constant(r[:len(data)])) * (1.0 / len(x))
            results[k] = (y.numpy(), st, *distnet.gradients(loss, [xt, gt, bt]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            hub.barrier.abort()

    stand_in_sample = x[:1] * 5.0 + 3.0   # far from the batch: it would move the statistics if counted
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    y1, dx1, dg1, db1, st1 = one_worker(x, r, gamma, beta)
    (y, st, dx, dg, db), (_, st_in, dx_in, dg_in, db_in) = results
    np.testing.assert_allclose(y, y1, rtol=1e-12, atol=1e-12)
    for got, want in ((dx, dx1), (dg, dg1), (db, db1)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    for g in (dx_in, dg_in, db_in):
        assert not np.any(g)
    assert st.count == st_in.count == 7 * 2 and st_in.local_count == 0
    np.testing.assert_array_equal(st_in.mean, st.mean)
    np.testing.assert_allclose(st.mean, st1.mean, rtol=1e-12)
    with pytest.raises(InvalidArgumentError, match="stand_in=True: Expect: a reducer"):
        batch_norm_train(distnet.constant(x), stand_in=True)


@pytest.mark.parametrize("nprocs", [2, 3])
@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_mpi_ranks_equal_one_process(tmp_path, nprocs, combine):
    got = run_script("batch_norm_sync.py", tmp_path, f"bn{nprocs}{combine}", combine, nprocs=nprocs, timeout=120)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((11, 3, 2, 4)) * 1.5 + 0.5
    r = rng.standard_normal(x.shape)
    gamma, beta = rng.random(4) + 0.5, rng.standard_normal(4)
    y1, dx1, dg1, db1, st1 = one_worker(x, r, gamma, beta)
    assert int(got["count"]) == st1.count
    np.testing.assert_allclose(got["mean"], st1.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["variance"], st1.variance, rtol=1e-12)
    np.testing.assert_allclose(got["y"], y1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["dx"], dx1, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got["dgamma"], dg1, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got["dbeta"], db1, rtol=1e-12, atol=1e-13)


# -- moving averages and errors ---------------------------------------------------------------

def test_moving_average_update_is_tf1_momentum():
    moving = np.array([1.0, 2.0], np.float32)
    out = moving_average_update(moving, np.array([3.0, 0.0]), 0.99)
    assert out is moving
    np.testing.assert_allclose(moving, [1.0 * 0.99 + 3.0 * 0.01, 2.0 * 0.99], rtol=1e-6)


def test_unbiased_variance_uses_the_global_count():
    st = batch_norm_train(distnet.constant([[1.0], [3.0]]), epsilon=1e-3).statistics
    assert st.count == 2 and st.variance[0] == 1.0 and st.unbiased_variance()[0] == 2.0


def test_errors():
    x = distnet.constant(np.ones((2, 3), np.float32))
    with pytest.raises(DTypeError, match="floating"):
        batch_norm_train(distnet.constant([[1, 2]]))
    with pytest.raises(ShapeError, match=r"Expect: shape \(3,\)"):
        batch_norm_train(x, np.ones(2, np.float32))
    with pytest.raises(DTypeError, match="float64"):
        batch_norm_train(x, distnet.constant(np.ones(3)))
    with pytest.raises(InvalidArgumentError, match="epsilon > 0"):
        batch_norm_train(x, epsilon=0.0)
    with pytest.raises(InvalidArgumentError, match="axis"):
        batch_norm_train(x, axis=2)
    with pytest.raises(InvalidArgumentError, match="combine"):
        batch_norm_train(x, combine="avg")
    with pytest.raises(ShapeError, match="reducer"):
        batch_norm_train(x, reducer=lambda v: v[:2])
    with pytest.raises(DTypeError, match="floating"):
        moments(distnet.constant([1, 2]), [0])
