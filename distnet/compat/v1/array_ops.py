"""TF1's tensor-making and shape ops in graph mode: placeholder, constant,
zeros/ones/fill, reshape, concat, cast, ..., and the random draws.

Every op calls the distnet function of the same name when the session runs
it; the random draws use distnet's initializers with a generator the session
owns per op, seeded from ``set_random_seed`` and the op's ``seed`` as TF1
derives them (the statistics are TF1's, the values are distnet's own).
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

import distnet
from distnet.model import initializers as _init
from distnet.compat.v1.graph import (
    TensorShape, Tensor, as_dtype, as_shape, build, convert_to_tensor, get_default_graph, leaf, probes_for,
)
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor, _to_array

#: TF1's graph seed when only an op seed is given.
DEFAULT_GRAPH_SEED = 87654321


def _dt(dtype: Any):
    return as_dtype(dtype)


# -- placeholders and constants -------------------------------------------------------

def placeholder(dtype: Any, shape: Any = None, name: str | None = None) -> Tensor:
    """A tensor whose value must be fed: ``sess.run(..., feed_dict={x: value})``.

    ``shape`` may have ``None`` sizes (any batch size) or be None (any shape,
    e.g. a Python scalar).
    """
    dt = as_dtype(dtype)
    st = as_shape(shape)

    def compute(run, values):
        raise InvalidArgumentError(
            f"You must feed a value for placeholder tensor {op.name!r} with dtype {dt.name} and shape {st}: "
            f"Expect: feed_dict={{{op.name.split('/')[-1]}: value}} in sess.run")

    t = leaf("Placeholder", compute, dt, st, probes_for(st, dt), name=name or "Placeholder")
    op = t.op
    op._placeholder = True
    return t


def placeholder_with_default(input: Any, shape: Any, name: str | None = None) -> Tensor:  # noqa: A002
    """A placeholder that takes ``input``'s value when it is not fed."""
    default = convert_to_tensor(input)
    st = as_shape(shape)
    t = leaf("PlaceholderWithDefault", lambda run, values: values[0], default.dtype, st,
             probes_for(st, default.dtype), name=name or "PlaceholderWithDefault", inputs=[default])
    t.op._placeholder = True
    return t


def constant(value: Any, dtype: Any = None, shape: Any = None, name: str = "Const", verify_shape: bool = False) -> Tensor:
    """A constant tensor (TF1's ``tf.constant``).

    With ``shape``: a scalar ``value`` fills it; a list with as many elements
    is reshaped; a shorter list is padded with its last element (TF1's rule).
    """
    arr = _to_array(value.data if isinstance(value, EagerTensor) else value, _dt(dtype))
    if shape is not None:
        shape = tuple(int(n) for n in (shape if isinstance(shape, (list, tuple)) else [shape]))
        n = int(np.prod(shape, dtype=np.int64))
        if verify_shape and arr.shape != shape:
            raise TypeError(f"Expected Tensor's shape: {shape}, got {arr.shape}.")
        if arr.size == n:
            arr = arr.reshape(shape)
        elif arr.size == 1:
            arr = np.full(shape, arr.reshape(()), dtype=arr.dtype)
        elif 0 < arr.size < n:
            flat = arr.reshape(-1)
            arr = np.concatenate([flat, np.full(n - flat.size, flat[-1], dtype=arr.dtype)]).reshape(shape)
        else:
            raise TypeError(f"constant: Expect: at most {n} elements for shape {list(shape)} Actual: {arr.size}")
    value_t = distnet.constant(np.array(arr, copy=True))
    value_t.data.flags.writeable = False
    t = leaf("Const", lambda run, values: value_t, arr.dtype, TensorShape(list(arr.shape)),
             (value_t.data, value_t.data), name=name)
    info = getattr(value, "shard_info", None)
    if info is not None:
        t.op._placeholder = True   # this rank's part of the data (see distributed.shard)
        get_default_graph()._shard = info
    return t


def _dims(shape: Any):
    """A shape for distnet.zeros/ones/fill: sizes that are run-time values (``tf.shape(x)[0]``) as ints."""
    return _ints(shape) if isinstance(shape, (list, tuple, EagerTensor)) else shape


def zeros(shape: Any, dtype: Any = np.float32, name: str | None = None) -> Tensor:
    return build("Zeros", lambda s, d: distnet.zeros(_dims(s), d), shape, as_dtype(dtype), _name=name)


def ones(shape: Any, dtype: Any = np.float32, name: str | None = None) -> Tensor:
    return build("Ones", lambda s, d: distnet.ones(_dims(s), d), shape, as_dtype(dtype), _name=name)


def fill(dims: Any, value: Any, name: str | None = None) -> Tensor:
    return build("Fill", lambda s, v: distnet.fill(_dims(s), v), dims, value, _name=name)


def zeros_like(tensor: Any, dtype: Any = None, name: str | None = None, optimize: bool = True) -> Tensor:
    return build("ZerosLike", distnet.zeros_like, tensor, as_dtype(dtype), _name=name)


def ones_like(tensor: Any, dtype: Any = None, name: str | None = None, optimize: bool = True) -> Tensor:
    return build("OnesLike", distnet.ones_like, tensor, as_dtype(dtype), _name=name)


def range(start: Any, limit: Any = None, delta: Any = 1, dtype: Any = None, name: str = "range") -> Tensor:  # noqa: A001
    """``[start, start + delta, ...)`` below ``limit`` (TF1's ``tf.range``)."""
    if limit is None:
        start, limit = 0, start

    def fn(a, b, d):
        vals = [v.data.item() if isinstance(v, EagerTensor) else v for v in (a, b, d)]
        arr = np.arange(*vals)
        if dtype is not None:
            arr = arr.astype(dtype)
        elif arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)
        return distnet.constant(arr)

    return build("Range", fn, start, limit, delta, _name=name)


# -- shapes and moving elements -------------------------------------------------------

def shape(input: Any, name: str | None = None, out_type: Any = np.int32) -> Tensor:  # noqa: A002
    """The run-time shape of ``input`` as a 1-D integer tensor."""
    return build("Shape", lambda x: distnet.constant(np.array(x.shape, dtype=out_type)), input, _name=name)


def size(input: Any, name: str | None = None, out_type: Any = np.int32) -> Tensor:  # noqa: A002
    return build("Size", lambda x: distnet.constant(np.array(x.size, dtype=out_type)), input, _name=name)


def rank(input: Any, name: str | None = None) -> Tensor:  # noqa: A002
    return build("Rank", lambda x: distnet.constant(np.array(x.ndim, dtype=np.int32)), input, _name=name)


def _ints(shape: Any):
    if isinstance(shape, EagerTensor):
        return tuple(int(n) for n in shape.data.reshape(-1))
    if isinstance(shape, (list, tuple)):
        return tuple(int(n.data) if isinstance(n, EagerTensor) else int(n) for n in shape)
    return shape


def reshape(tensor: Any, shape: Any, name: str | None = None) -> Tensor:
    return build("Reshape", lambda x, s: distnet.reshape(x, _ints(s)), tensor, shape, _name=name)


def transpose(a: Any, perm: Any = None, name: str = "transpose", conjugate: bool = False) -> Tensor:
    return build("Transpose", distnet.transpose, a, perm, _name=name)


def concat(values: Any, axis: Any, name: str = "concat") -> Tensor:
    return build("ConcatV2", lambda vs, ax: distnet.concat(vs, int(_scalar(ax))), list(values), axis, _name=name)


def stack(values: Any, axis: int = 0, name: str = "stack") -> Tensor:
    return build("Pack", distnet.stack, list(values), axis, _name=name)


def unstack(value: Any, num: int | None = None, axis: int = 0, name: str = "unstack") -> list:
    """The slices of ``value`` along ``axis`` (composed from indexing); the size must be known."""
    value = convert_to_tensor(value)
    n = num if num is not None else value.shape[axis].value
    if n is None:
        raise ValueError(f"Cannot infer num from shape {value.shape}")
    lead = (builtins.slice(None),) * (axis % value.shape.ndims)
    return [value[lead + (i,)] for i in builtins.range(n)]


def expand_dims(input: Any, axis: Any = None, name: str | None = None, dim: Any = None) -> Tensor:  # noqa: A002
    ax = dim if axis is None else axis
    return build("ExpandDims", lambda x, a: distnet.expand_dims(x, int(_scalar(a))), input, ax, _name=name)


def squeeze(input: Any, axis: Any = None, name: str | None = None, squeeze_dims: Any = None) -> Tensor:  # noqa: A002
    return build("Squeeze", distnet.squeeze, input, squeeze_dims if axis is None else axis, _name=name)


def gather(params: Any, indices: Any, validate_indices: Any = None, name: str | None = None, axis: int = 0) -> Tensor:
    return build("GatherV2", distnet.gather, params, indices, axis, _name=name)


def one_hot(indices: Any, depth: Any, on_value: Any = None, off_value: Any = None, axis: Any = None,
            dtype: Any = None, name: str | None = None) -> Tensor:
    return build("OneHot", lambda i, d, on, off: distnet.one_hot(i, int(_scalar(d)), on, off, axis, dtype),
                 indices, depth, on_value, off_value, _name=name)


def cast(x: Any, dtype: Any, name: str | None = None) -> Tensor:
    return build("Cast", distnet.cast, x, as_dtype(dtype), _name=name)


def to_float(x: Any, name: str = "ToFloat") -> Tensor:
    return cast(x, np.float32, name)


def to_double(x: Any, name: str = "ToDouble") -> Tensor:
    return cast(x, np.float64, name)


def to_int32(x: Any, name: str = "ToInt32") -> Tensor:
    return cast(x, np.int32, name)


def to_int64(x: Any, name: str = "ToInt64") -> Tensor:
    return cast(x, np.int64, name)


def identity(input: Any, name: str | None = None) -> Tensor:  # noqa: A002
    """The same value (and gradient) under a new name."""
    return build("Identity", lambda x: x, input, _name=name)


def stop_gradient(input: Any, name: str | None = None) -> Tensor:  # noqa: A002
    return build("StopGradient", distnet.stop_gradient, input, _name=name)


def slice(input_: Any, begin: Any, size: Any, name: str | None = None) -> Tensor:  # noqa: A001
    """``input_[begin : begin + size]`` per axis (a size of -1 takes the rest), composed from indexing."""
    def fn(x, b, s):
        b, s = _ints(b), _ints(s)
        idx = tuple(builtins.slice(bi, None if si == -1 else bi + si) for bi, si in zip(b, s))
        return distnet.getitem(x, idx)

    return build("Slice", fn, input_, begin, size, _name=name)


def _scalar(v: Any):
    return v.data.item() if isinstance(v, EagerTensor) else v


# -- random draws -------------------------------------------------------------------------

def set_random_seed(seed: int) -> None:
    """The graph-level seed of the default graph (TF1's ``tf.set_random_seed``)."""
    get_default_graph().seed = seed


def get_seed(op_seed: int | None) -> tuple:
    """TF1's rule: (graph seed, op seed), or ``(None, None)`` for fresh entropy."""
    g = get_default_graph()
    if g.seed is not None:
        return g.seed, (op_seed if op_seed is not None else len(g._ops))
    if op_seed is not None:
        return DEFAULT_GRAPH_SEED, op_seed
    return None, None


def seeded_rng(seeds: tuple) -> np.random.Generator:
    """The generator of an op with ``seeds = get_seed(op_seed)``: its stream follows
    from the two seeds, or from fresh entropy when they are ``(None, None)``."""
    graph_seed, op_seed = seeds
    return np.random.default_rng(None if graph_seed is None else [graph_seed & 0xFFFFFFFF, op_seed & 0xFFFFFFFF])


def _random(op_type: str, draw, shape: Any, dtype: Any, seed: int | None, name: str | None) -> Tensor:
    seeds = get_seed(seed)
    dt = as_dtype(dtype)
    if isinstance(shape, (int, np.integer)) or (isinstance(shape, Tensor) and shape.shape.ndims == 0):
        raise ValueError(f"{op_type}: Shape must be rank 1 but is rank 0; Expect: a list such as [{shape}] "
                         f"Actual: {shape!r}")
    shape_t = shape if isinstance(shape, Tensor) else None
    st = TensorShape(None) if shape_t is not None else TensorShape(list(_ints(shape)))
    if shape_t is not None and shape_t.op.type == "Const":
        st = TensorShape([int(n) for n in shape_t._probes[0]])
    elif shape_t is not None and shape_t.op.type == "Shape" and shape_t._probes is not None:
        # tf.shape(x): its probes are x's probe shapes, so sizes that differ are x's unknown ones.
        a, b = (np.asarray(p).reshape(-1) for p in shape_t._probes)
        if a.shape == b.shape:
            st = TensorShape([int(n) if n == m else None for n, m in zip(a, b)])

    def compute(run, values):
        rng = run.session.resource(("rng", op), lambda: seeded_rng(seeds))
        dims = _ints(values[0]) if shape_t is not None else tuple(st.as_list())
        return distnet.constant(np.asarray(draw(dims, dt, rng), dtype=dt))

    t = leaf(op_type, compute, dt, st, probes_for(st, dt), name=name or op_type,
             inputs=[shape_t] if shape_t is not None else [])
    op = t.op
    return t


def _scaled(op_type: str, draw, shape: Any, mean: Any, stddev: Any, dtype: Any, seed, name) -> Tensor:
    """A standard draw times ``stddev`` plus ``mean`` when either is a graph tensor (TF1
    composes them so: the gradient reaches them, e.g. a VAE's ``stddev=sigma``)."""
    from distnet.compat.v1 import math_ops

    dt = as_dtype(dtype)
    scope = {"TruncatedNormal": "truncated_normal"}.get(op_type, "random_normal")
    with get_default_graph().name_scope(name or scope):
        z = _random(op_type, draw, shape, dt, seed, None)
        std = stddev if isinstance(stddev, Tensor) else np.asarray(stddev, dtype=dt)
        avg = mean if isinstance(mean, Tensor) else np.asarray(mean, dtype=dt)
        return math_ops.add(math_ops.multiply(z, std), avg)


def truncated_normal(shape: Any, mean: Any = 0.0, stddev: Any = 1.0, dtype: Any = np.float32,
                     seed: int | None = None, name: str | None = None) -> Tensor:
    """Normal draws, those beyond 2 stddev drawn again (TF1's ``tf.truncated_normal``); new values every run.
    ``mean`` and ``stddev`` may be tensors."""
    if isinstance(mean, Tensor) or isinstance(stddev, Tensor):
        return _scaled("TruncatedNormal", _init.TruncatedNormal(0.0, 1.0), shape, mean, stddev, dtype, seed, name)
    return _random("TruncatedNormal", _init.TruncatedNormal(mean, stddev), shape, dtype, seed, name)


def random_normal(shape: Any, mean: Any = 0.0, stddev: Any = 1.0, dtype: Any = np.float32,
                  seed: int | None = None, name: str | None = None) -> Tensor:
    """Normal draws (TF1's ``tf.random_normal``); ``mean`` and ``stddev`` may be tensors."""
    if isinstance(mean, Tensor) or isinstance(stddev, Tensor):
        return _scaled("RandomStandardNormal", _init.RandomNormal(0.0, 1.0), shape, mean, stddev, dtype, seed,
                       name)
    return _random("RandomStandardNormal", _init.RandomNormal(mean, stddev), shape, dtype, seed, name)


def random_uniform(shape: Any, minval: Any = 0, maxval: Any = None, dtype: Any = np.float32,
                   seed: int | None = None, name: str | None = None) -> Tensor:
    """Uniform in ``[minval, maxval)`` (maxval default 1 for floats; required for ints, as TF1)."""
    dt = as_dtype(dtype)
    if dt.kind in "iu":
        if maxval is None:
            raise ValueError(f"Must specify maxval for integer dtype {dt.name}")
        draw = lambda dims, d, rng: rng.integers(minval, maxval, size=dims).astype(d)  # noqa: E731
    elif isinstance(minval, Tensor) or isinstance(maxval, Tensor):
        # TF1: minval + u * (maxval - minval), so the gradient reaches the bounds.
        from distnet.compat.v1 import math_ops

        with get_default_graph().name_scope(name or "random_uniform"):
            u = _random("RandomUniform", lambda dims, d, rng: rng.uniform(0.0, 1.0, size=dims), shape, dt, seed,
                        None)
            lo = minval if isinstance(minval, Tensor) else np.asarray(minval, dtype=dt)
            hi = np.asarray(1.0, dtype=dt) if maxval is None else (
                maxval if isinstance(maxval, Tensor) else np.asarray(maxval, dtype=dt))
            return math_ops.add(math_ops.multiply(u, math_ops.subtract(hi, lo)), lo)
    else:
        hi = 1.0 if maxval is None else float(maxval)
        draw = lambda dims, d, rng: rng.uniform(float(minval), hi, size=dims)  # noqa: E731
    return _random("RandomUniform", draw, shape, dtype, seed, name)


def random_shuffle(value: Any, seed: int | None = None, name: str | None = None) -> Tensor:
    """``value`` with its first axis permuted (a gather with a fresh permutation each run)."""
    seeds = get_seed(seed)
    value = convert_to_tensor(value)

    def compute(run, values):
        rng = run.session.resource(("rng", t.op), lambda: seeded_rng(seeds))
        x = values[0]
        return distnet.gather(x, rng.permutation(x.shape[0]))

    t = leaf("RandomShuffle", compute, value.dtype, value.shape, value._probes, name=name, inputs=[value])
    return t


# -- tile, split, gather_nd ---------------------------------------------------------------

def tile(input: Any, multiples: Any, name: str | None = None) -> Tensor:  # noqa: A002
    """``input`` repeated ``multiples[i]`` times along axis ``i``."""
    return build("Tile", lambda x, m: distnet.tile(x, _ints(m)), input, multiples, _name=name)


def split(value: Any, num_or_size_splits: Any, axis: Any = 0, num: int | None = None, name: str = "split") -> list:
    """``value`` cut along ``axis`` into ``num_or_size_splits`` equal parts, or parts of
    the sizes it lists (one may be -1); a list of tensors."""
    from distnet.compat.v1.multi_output import build_outputs

    spec = num_or_size_splits
    if isinstance(spec, Tensor):
        if spec.shape.ndims == 0 or spec.shape.dims is None or spec.shape[0].value is None:
            raise ValueError(f"split: Expect: num_or_size_splits an int or a list (or a 1-D tensor of known "
                             f"length) Actual: {spec!r}")
        n = spec.shape[0].value if num is None else num
    elif np.ndim(spec) == 0:
        n = int(spec)
    else:
        n = len(list(spec))
    if n <= 0:
        raise ValueError(f"split: Expect: at least one part Actual: num_or_size_splits={num_or_size_splits!r}")
    return build_outputs("Split", lambda x, s, a: distnet.split(x, _ints(s) if not np.ndim(_scalar(s)) == 0
                                                                 else int(_scalar(s)), int(_scalar(a))),
                         n, value, spec, axis, _name=name)


def gather_nd(params: Any, indices: Any, name: str | None = None, batch_dims: int = 0) -> Tensor:
    """Slices of ``params`` at the index tuples in the last axis of ``indices``."""
    if batch_dims:
        raise InvalidArgumentError(f"gather_nd: batch_dims={batch_dims} is not supported; Expect: 0")
    return build("GatherNd", distnet.gather_nd, params, indices, _name=name)
