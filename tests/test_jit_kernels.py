"""The compiled kernels (distnet/jit.py) give bitwise the numpy paths' results.

Each kernel stands for a numpy path that stays in the code (numba missing or
``DISTNET_JIT=0``); these tests run both on the same inputs, special values
included, and compare the bits.
"""
from __future__ import annotations

import numpy as np
import pytest

from distnet import jit
from distnet.optimizers import Adam, AdamW
from distnet.tensor import Variable

pytestmark = pytest.mark.skipif(not jit.available(), reason="numba is a dependency; DISTNET_JIT=0 turns it off")


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
    shapes = {"w": (37, 1001), "b": (5,)}
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
    """A float64 gradient of a float32 variable keeps the numpy path (numpy's casting rules)."""
    calls = []
    opt = Adam(0.1)
    original = opt._update_compiled
    opt._update_compiled = lambda *args: calls.append(args[1].dtype) or original(*args)
    v = Variable(np.ones(10, np.float32), name="v")
    opt.apply_gradients([(np.ones(10, np.float32), v)])
    opt.apply_gradients([(np.ones(10, np.float64), v)])
    assert calls == [np.dtype(np.float32)]
