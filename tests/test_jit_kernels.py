"""The compiled kernels (distnet/jit.py) give bitwise the numpy paths' results.

Each kernel stands for a numpy path that stays in the code (numba missing or
``DISTNET_JIT=0``); these tests run both on the same inputs, special values
included, and compare the bits.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from distnet import jit
from distnet.optimizers import Adam, AdamW
from distnet.tensor import Variable

pytestmark = pytest.mark.usefixtures("compiled_kernels")   # tests/conftest.py: skipped only with the kernels off


def special_values(rng, n, dtype):
    """Random normals with zeros of both signs, tiny, huge and subnormal values mixed in."""
    x = rng.standard_normal(n).astype(dtype)
    info = np.finfo(dtype)
    picks = np.array([0.0, -0.0, info.tiny, -info.tiny, info.tiny / 4, info.max / 8, -info.max / 8, 1e-30, 3.0],
                     dtype=dtype)
    where = rng.choice(n, size=n // 5, replace=False)
    x[where] = rng.choice(picks, size=where.size)
    return x


def numpy_path(opt):
    """``opt`` with its compiled kernel turned off: the chunked numpy passes run."""
    opt._update_compiled = lambda *args: False
    return opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda: Adam(0.01), lambda: Adam(lambda step: 0.1 / (1 + step), beta1=0.5,
                                                                       beta2=0.75, epsilon=1e-3),
                                  lambda: AdamW(0.01, weight_decay=0.1),
                                  lambda: AdamW(0.01, weight_decay=0.1, decay_filter=lambda name: name == "w")])
def test_adam_kernel_is_bitwise_the_numpy_path(make, dtype):
    rng = np.random.default_rng(0)
    shapes = {"w": (67, 1001), "b": (5,)}   # w over jit.MIN_ELEMENTS, b under it
    init = {k: special_values(rng, int(np.prod(s)), dtype).reshape(s) for k, s in shapes.items()}
    compiled, plain = make(), numpy_path(make())
    compiled.chunk_size = plain.chunk_size = 4096   # several chunks, and a partial last one
    runs = []
    for opt in (compiled, plain):
        variables = {k: Variable(v.copy(), name=k) for k, v in init.items()}
        for step in range(4):
            grads = np.random.default_rng(step)
            pairs = [(special_values(grads, v.data.size, dtype).reshape(v.shape), v) for v in variables.values()]
            opt.apply_gradients(pairs)
        runs.append(({k: v.data for k, v in variables.items()}, opt.state_dict()))
    (w1, s1), (w2, s2) = runs
    for k in shapes:
        assert w1[k].tobytes() == w2[k].tobytes(), k
        for slot in ("m", "v"):
            assert s1["slots"][slot][k].tobytes() == s2["slots"][slot][k].tobytes(), (slot, k)
    assert not np.array_equal(w1["w"], init["w"])   # the update did something


def test_adam_kernel_runs_where_dtypes_agree():
    """A float64 gradient of a float32 variable keeps the numpy path (numpy's casting rules); an array
    under jit.MIN_ELEMENTS takes the kernel once a large one has loaded it, not before."""
    calls = []
    opt = Adam(0.1)
    original = opt._update_compiled
    opt._update_compiled = lambda *args: calls.append(args[1].size) or original(*args)
    n = jit.MIN_ELEMENTS
    v = Variable(np.ones(n, np.float32), name="v")
    small = Variable(np.ones(n - 1, np.float32), name="small")
    opt.apply_gradients([(np.ones(n - 1, np.float32), small)])
    assert calls == []
    opt.apply_gradients([(np.ones(n, np.float32), v)])
    opt.apply_gradients([(np.ones(n, np.float64), v)])
    opt.apply_gradients([(np.ones(n - 1, np.float32), small)])
    opt.apply_gradients([(np.ones(n - 1, np.float64), small)])
    assert calls == [n, n - 1]


def test_small_arrays_take_a_kernel_once_it_is_loaded():
    """jit.worth: from MIN_ELEMENTS on; below, only a kernel this process has loaded already."""
    n = jit.MIN_ELEMENTS
    assert jit.worth(n) and not jit.worth(n - 1)
    fresh = jit.kernel(lambda x: x)
    assert not fresh.loaded and not jit.worth(1, fresh) and jit.worth(n, fresh)
    fresh(1)
    assert fresh.loaded and jit.worth(1, fresh)


def test_small_models_never_import_numba():
    """A process that trains only small arrays pays nothing for the kernels (numba is not imported)."""
    code = ("import sys, numpy as np, distnet\n"
            "from distnet import layers\n"
            "from distnet.data import ArrayDataset\n"
            "from distnet.training.trainer import Trainer\n"
            "x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)\n"
            "y = np.arange(64) % 3\n"
            "model = distnet.Sequential([layers.Conv2D(4, 3, padding='same', activation='relu'), layers.MaxPool2D(2),"
            " layers.Flatten(), layers.Dense(3)], input_shape=(8, 8, 1), seed=0)\n"
            "Trainer(model, 'sparse_softmax_cross_entropy', distnet.optimizers.Adam(0.01),"
            " ArrayDataset(x, y, num_classes=3), global_batch_size=16, steps=3, seed=0).fit()\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_kernels_run_without_a_writable_cache_directory():
    """Where numba finds nowhere to cache (a read-only install and home), the kernels compile in
    memory with a warning, instead of the first call raising numba's "no locator available"."""
    code = ("import warnings, numpy as np\n"
            "from distnet.optimizers import Adam\n"
            "from distnet.tensor import Variable\n"
            "warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    v = Variable(np.ones(70_001, np.float32), name='v')\n"
            "    Adam(0.5).apply_gradients([(np.ones(70_001, np.float32), v)])\n"
            "print(v.data.tobytes().hex()[:16], sum('NUMBA_CACHE_DIR' in str(w.message) for w in seen))\n")
    # numba's locators reduced to NUMBA_CACHE_DIR, which cannot be created: no place to cache
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator", NUMBA_CACHE_DIR="/dev/null/none")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    expected = Variable(np.ones(70_001, np.float32), name="v")
    numpy_path(Adam(0.5)).apply_gradients([(np.ones(70_001, np.float32), expected)])
    assert out.stdout.split() == [expected.data.tobytes().hex()[:16], "1"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 37, 70_001])
@pytest.mark.parametrize("plant", [None, "inf", "-inf", "nan", "overflow"])
@pytest.mark.parametrize("in_place", [False, True])
def test_sum_finite_kernel_is_bitwise_the_numpy_path(dtype, n, plant, in_place, monkeypatch):
    from distnet.distributed import sum_finite

    monkeypatch.setattr(jit, "MIN_ELEMENTS", 1)   # the kernel on small arrays too
    rng = np.random.default_rng(n)
    a, b = special_values(rng, n, dtype), special_values(rng, n, dtype)
    if plant == "overflow":   # finite summands whose sum is not; and a sum of squares that overflows
        a[-1] = b[-1] = np.finfo(dtype).max / 1.5
    elif plant is not None:
        a[n // 2] = float(plant)
    outs, flags = [], []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(sum_finite, "_sum_finite_kernel", None)
        x = a.copy()
        out = x if in_place else np.full_like(a, 7.0)
        flags.append(sum_finite.sum_finite(out, x, b))
        outs.append(out)
    with np.errstate(over="ignore", invalid="ignore"):
        want = a + b
    assert outs[0].tobytes() == outs[1].tobytes() == want.tobytes()
    assert flags[0] == flags[1] == bool(np.isfinite(want).all()) == (plant is None)
