"""The compiled kernels of the optimizers other than Adam, and of the EMA, give
bitwise their numpy paths' results (distnet/jit.py), on one thread and on two.

Each case runs the compiled path and the numpy path (the kernel switched off:
``_update_compiled`` returning False, the EMA's ``_ema_kernel`` None, as
without numba) from the same start on the same gradients, special values
included, over several chunks, and compares every bit of the weights and slots.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_jit_kernels import numpy_path, special_values

from distnet import jit
from distnet.distributed.chunk_threads import ChunkThreads
from distnet.model import moving_averages
from distnet.model.moving_averages import ExponentialMovingAverage
from distnet.model.schedules import ExponentialDecay
from distnet.optimizers import Adadelta, Adagrad, Adam, GradientDescent, Momentum, RMSProp
from distnet.tensor import Variable

pytestmark = [pytest.mark.usefixtures("compiled_kernels"),   # tests/conftest.py: skipped only with the kernels off
              # huge values overflow, infinities give NaNs: IEEE's answers, on purpose
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]

#: Every variant of every optimizer with a kernel here, as ``learning_rate -> optimizer``.
OPTIMIZERS = {
    "sgd": GradientDescent,
    "momentum": lambda lr: Momentum(lr, momentum=0.9),
    "nesterov": lambda lr: Momentum(lr, momentum=0.9, use_nesterov=True),
    "momentum 0": lambda lr: Momentum(lr, momentum=0.0),
    "rmsprop": lambda lr: RMSProp(lr, decay=0.9),
    "rmsprop momentum": lambda lr: RMSProp(lr, decay=0.8, momentum=0.9, epsilon=1e-3),
    "rmsprop centered": lambda lr: RMSProp(lr, decay=0.9, centered=True),
    "rmsprop centered momentum": lambda lr: RMSProp(lr, decay=0.7, momentum=0.5, centered=True),
    "adagrad": lambda lr: Adagrad(lr, initial_accumulator_value=0.5),
    "adadelta": lambda lr: Adadelta(lr, rho=0.9, epsilon=1e-6),
}
#: A constant rate, and a schedule (the rate changes every step).
RATES = {"constant": 0.01, "schedule": ExponentialDecay(0.1, decay_steps=1, decay_rate=0.7)}
SHAPES = {"w": (67, 1001), "b": (5,)}   # w over jit.MIN_ELEMENTS (66 chunks of 1024 and a partial one), b under
CHUNK = 1024


def with_specials(rng, n, dtype, nonfinite):
    """:func:`special_values`, with infinities and NaNs mixed in when ``nonfinite``."""
    x = special_values(rng, n, dtype)
    if nonfinite:
        where = rng.choice(n, size=n // 50, replace=False)
        x[where] = rng.choice(np.array([np.inf, -np.inf, np.nan], dtype=dtype), size=where.size)
    return x


def train(opt, dtype, *, threads=1, nonfinite=False, steps=4):
    """Weights and slots (bytes) after ``steps`` updates from a fixed start on fixed gradients."""
    opt.chunk_size = CHUNK
    opt._chunk_threads = ChunkThreads(threads)   # not the BLAS threads of the test's process
    if threads > 1:
        assert opt._chunk_threads.parts(-(-int(np.prod(SHAPES["w"])) // CHUNK)) == threads
    rng = np.random.default_rng(0)
    variables = [Variable(special_values(rng, int(np.prod(s)), dtype).reshape(s), name=k) for k, s in SHAPES.items()]
    for step in range(steps):
        grads = np.random.default_rng(step + 1)
        opt.apply_gradients([(with_specials(grads, v.data.size, dtype, nonfinite).reshape(v.shape), v)
                             for v in variables])
    out = {v.name: v.data.tobytes() for v in variables}
    out.update({(slot, k): a.tobytes() for slot, arrays in opt.state_dict()["slots"].items() for k, a in arrays.items()})
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_kernel_is_bitwise_the_numpy_path(name, rate, dtype):
    make = OPTIMIZERS[name]
    compiled = train(make(RATES[rate]), dtype)
    assert compiled == train(numpy_path(make(RATES[rate])), dtype)
    start = np.random.default_rng(0)
    assert compiled["w"] != special_values(start, int(np.prod(SHAPES["w"])), dtype).tobytes()   # it did something


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_kernel_with_infinities_and_nans(name, dtype):
    make = OPTIMIZERS[name]
    assert train(make(0.01), dtype, nonfinite=True) == train(numpy_path(make(0.01)), dtype, nonfinite=True)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_kernel_on_two_threads_is_bitwise_one(name):
    make = OPTIMIZERS[name]
    assert train(make(RATES["schedule"]), np.float32, threads=2) == train(make(RATES["schedule"]), np.float32)


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
@pytest.mark.parametrize("name", list(OPTIMIZERS) + ["adam"])
def test_dtypes_numba_does_not_compile_keep_the_numpy_path(name, dtype):
    """float16 and long double (and mixed dtypes) are updated by numpy; numba would refuse them."""
    assert not jit.compiles(np.zeros(1, dtype))
    assert not jit.compiles(np.zeros(1, np.float32), np.zeros(1, np.float64))
    n = jit.MIN_ELEMENTS
    v = Variable(np.ones(n, dtype), name="v")
    (Adam if name == "adam" else OPTIMIZERS[name])(1.0).apply_gradients([(np.full(n, 0.5, dtype), v)])
    assert v.dtype == dtype and np.all(v.data < 1)


def ema_run(dtype, monkeypatch, *, compiled=True, threads=1, nonfinite=False):
    """The shadows' bytes after a few EMA updates of changing weights, with and without ``num_updates``."""
    with monkeypatch.context() as patch:
        if not compiled:
            patch.setattr(moving_averages, "_ema_kernel", None)   # as without numba
        ema = ExponentialMovingAverage(0.99)
        ema.chunk_size = CHUNK
        ema._chunk_threads = ChunkThreads(threads)
        if threads > 1:
            assert ema._chunk_threads.parts(-(-int(np.prod(SHAPES["w"])) // CHUNK)) == threads
        rng = np.random.default_rng(0)
        variables = [Variable(special_values(rng, int(np.prod(s)), dtype).reshape(s), name=k)
                     for k, s in SHAPES.items()]
        ema.build(variables)
        for step, num_updates in enumerate([None, 0, 3, 10 ** 6, None]):
            values = np.random.default_rng(step + 1)
            for v in variables:
                v.assign(with_specials(values, v.data.size, dtype, nonfinite).reshape(v.shape))
            ema.apply(variables, num_updates=num_updates)
        return {k: s.data.tobytes() for k, s in ema.shadows.items()}


@pytest.mark.parametrize("nonfinite", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ema_kernel_is_bitwise_the_numpy_path(dtype, nonfinite, monkeypatch):
    assert (ema_run(dtype, monkeypatch, nonfinite=nonfinite)
            == ema_run(dtype, monkeypatch, compiled=False, nonfinite=nonfinite))


def test_ema_kernel_on_two_threads_is_bitwise_one(monkeypatch):
    assert ema_run(np.float32, monkeypatch, threads=2) == ema_run(np.float32, monkeypatch)


def test_ema_kernel_is_called_once_per_part(monkeypatch):
    """The compiled path runs where it should: one kernel call per thread's part (ChunkThreads' split);
    the variable under jit.MIN_ELEMENTS in one call, once the large one has loaded the kernel (it has:
    "w" comes first)."""
    calls = []
    kernel = moving_averages._ema_kernel

    class Counted:   # the kernel, counting its calls; loaded when the kernel is
        loaded = property(lambda self: kernel.loaded)

        def __call__(self, s, x, d):
            calls.append(s.size)
            return kernel(s, x, d)

    monkeypatch.setattr(moving_averages, "_ema_kernel", Counted())
    ema_run(np.float32, monkeypatch, threads=2)
    n = int(np.prod(SHAPES["w"]))
    first = -(-n // CHUNK) // 2 * CHUNK   # part 0: the first half of the chunks
    assert sorted(calls) == sorted([first, n - first] * 5 + [int(np.prod(SHAPES["b"]))] * 5)


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_ema_dtypes_numba_does_not_compile_keep_the_numpy_path(dtype):
    n = jit.MIN_ELEMENTS
    v = Variable(np.ones(n, dtype), name="v")
    ema = ExponentialMovingAverage(0.5)
    ema.build([v])
    v.assign(np.zeros(n, dtype))
    ema.apply([v])
    assert ema.average(v).dtype == dtype and np.all(ema.average(v).data == 0.5)
