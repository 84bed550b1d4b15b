"""Batch normalization in TF1 programs: ``tf.nn.moments``,
``tf.nn.batch_normalization``, ``tf.nn.fused_batch_norm``,
``tf.layers.batch_normalization`` and ``tf.contrib.layers.batch_norm``.

The layers create TF1's variables (``batch_normalization/gamma``, ``beta``,
``moving_mean``, ``moving_variance``; contrib's ``BatchNorm/beta``, ...), the
moving ones not trainable, and TF1's update ops (``AssignMovingAvg``:
``moving -= (moving - batch) * (1 - momentum)``): in ``UPDATE_OPS``, so
that ``with tf.control_dependencies(tf.get_collection(UPDATE_OPS)): train_op
= opt.minimize(loss)`` updates them and a program that forgets it leaves
them unchanged, as TF1; contrib's ``updates_collections=None`` runs them
before the output instead.  ``training`` / ``is_training`` may be a bool or
a bool tensor (then the update leaves the statistics alone when it is
false, as TF1's momentum of 1).

The moving variance is fed what TF1 feeds it: the unbiased batch variance
where TF1 runs its fused kernel (``tf.layers`` on 4-D inputs; contrib on 2-D
and 4-D inputs, unless ``fused=False``), the biased one elsewhere.

Data parallel.  When the graph runs on several ranks (a
``tf.DistributedOptimizer`` was made), training-mode statistics are those of
the global batch -- every rank's part, in one small all-reduce per layer,
and the matching gradient sums in the backward -- so N ranks train the model
one process trains (see :mod:`distnet.nn.batch_norm`).
``DistributedOptimizer(opt, sync_batch_norm=False)`` keeps each rank's own
statistics instead (TensorFlow's and Horovod's behaviour).  Every rank must
then run each training-mode forward (each is a collective).
"""
from __future__ import annotations

from typing import Any

import numpy as np

import distnet
from distnet.compat.v1.graph import (
    GraphKeys, Operation, Tensor, build, convert_to_tensor, get_default_graph, leaf, probes_for,
)
from distnet.compat.v1.multi_output import build_outputs
from distnet.compat.v1.train import node_tensor
from distnet.compat.v1.variables import get_variable, ones_initializer, variable_scope, zeros_initializer
from distnet.nn import batch_norm as _bn
from distnet.tensor import Tensor as EagerTensor

# -- tf.nn ------------------------------------------------------------------------------


def moments(x, axes, shift=None, name=None, keep_dims=None, keepdims=None):
    """TF1's ``tf.nn.moments``: ``(mean, variance)`` over ``axes`` (biased variance)."""
    keep = bool(keepdims if keepdims is not None else keep_dims)
    axes = [int(a) for a in (axes if isinstance(axes, (list, tuple)) else [axes])]
    scope = name or "moments"
    # One op computes both (the mean once), each output takes its part.
    mean, variance = build_outputs("Mean", lambda v: _bn.moments(v, axes, keepdims=keep), 2, x, _name=scope,
                                   _names=[f"{scope}/mean", f"{scope}/variance"])
    return mean, variance


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """TF1's ``tf.nn.batch_normalization``: ``scale * (x - mean) / sqrt(variance + eps) + offset``."""
    return build("BatchNorm", _bn.batch_normalization, x, mean, variance, offset, scale, float(variance_epsilon),
                 _name=name or "batchnorm")


def fused_batch_norm(x, scale, offset, mean=None, variance=None, epsilon=0.001, data_format="NHWC",
                     is_training=True, name=None, exponential_avg_factor=1.0):
    """TF1's ``tf.nn.fused_batch_norm`` (NHWC): ``(y, batch_mean, batch_variance)``.

    In training the returned variance is the unbiased one (TF's kernel feeds
    it to moving averages); ``y`` is normalized with the biased one.  Only
    ``y`` is differentiable.  Synchronized over ranks as the layers are.
    """
    if data_format != "NHWC":
        raise ValueError(f"fused_batch_norm: only data_format='NHWC' is supported; got {data_format!r}")
    if exponential_avg_factor != 1.0:
        raise ValueError("fused_batch_norm: exponential_avg_factor is not supported by distnet.compat.v1 "
                         "(use the moving-average update ops of tf.layers.batch_normalization)")
    x = convert_to_tensor(x)
    if x.shape.ndims not in (None, 4):
        raise ValueError(f"fused_batch_norm: Expect: a 4-D NHWC input Actual: shape {x.shape}")
    eps = max(float(epsilon), 1.001e-5)   # TF1's kernel floor
    if is_training:
        node = _node(x, scale, offset, None, None, True, eps, -1, name or "FusedBatchNorm")
        y = _output(node, x, name)

        def stat(k):
            def fn(run, values):
                st = values[0][1]
                value = st.mean if k == 0 else st.unbiased_variance()
                return distnet.constant(value.astype(x.dtype))
            return leaf("FusedBatchNormStat", fn, x.dtype, x.shape[-1:], probes_for(x.shape[-1:], x.dtype),
                        inputs=[node_tensor(node)],
                        name=f"{node.name}/{'mean' if k == 0 else 'variance'}")

        return y, stat(0), stat(1)
    if mean is None or variance is None:
        raise ValueError("fused_batch_norm: with is_training=False, Expect: mean and variance")
    return batch_normalization(x, mean, variance, offset, scale, eps, name=name), mean, variance


# -- the shared op ---------------------------------------------------------------------

def _reducer(graph):
    """The all-reduce that synchronizes the statistics, and how the ranks' gradients combine."""
    comm = graph.multi_rank_comm()
    sync, loss_reduction = graph.batch_norm_sync()
    if comm is None or not sync:
        return None, "mean"
    return (lambda v: comm.allreduce_(v)), loss_reduction


def _node(x: Tensor, gamma, beta, moving_mean, moving_variance, training: Any, epsilon: float, axis: int,
          name: str) -> Operation:
    """An op whose value is ``(output, statistics or None)`` for this run."""
    gamma = None if gamma is None else convert_to_tensor(gamma)
    beta = None if beta is None else convert_to_tensor(beta)
    flag = training if isinstance(training, Tensor) else None
    parts = [("x", x), ("gamma", gamma), ("beta", beta), ("mm", moving_mean), ("mv", moving_variance),
             ("training", flag)]
    present = [(k, t) for k, t in parts if t is not None]
    keys = [k for k, _ in present]

    def compute(run, values):
        v = dict(zip(keys, values))
        xv = v["x"]
        train = bool(np.asarray(v["training"].data)) if flag is not None else bool(training)
        if train:
            reducer, combine = _reducer(run.session.graph) if run is not None else (None, "mean")
            out, st = _bn.batch_norm_train(xv, v.get("gamma"), v.get("beta"), epsilon=epsilon, axis=axis,
                                           reducer=reducer, combine=combine)
            return out, st
        shape = [1] * xv.ndim
        shape[axis] = -1
        # The moving statistics enter as values: an update later in the same run must not make
        # this output's graph stale (TF1 does not differentiate them either: not trainable).
        stats = [distnet.constant(np.asarray(v[k].data).reshape(shape).copy()) for k in ("mm", "mv")]
        params = [None if v.get(k) is None else distnet.reshape(v[k], shape) for k in ("beta", "gamma")]
        return _bn.batch_normalization(xv, stats[0], stats[1], params[0], params[1], epsilon), None

    return Operation("FusedBatchNormV3", [t for _, t in present], compute, name=name)


def _output(node: Operation, x: Tensor, name: str | None) -> Tensor:
    return leaf("Identity", lambda run, values: values[0][0], x.dtype, x.shape, x._probes,
                inputs=[node_tensor(node)], name=name or "batchnorm_output")


def _update(node: Operation, var, which: str, momentum: float, unbiased: bool, name: str) -> Tensor:
    """TF1's ``AssignMovingAvg``: ``var -= (var - batch) * (1 - momentum)`` (nothing when not training)."""
    def compute(run, values):
        st = values[0][1]
        storage = var._storage(run.session)
        if st is None:   # training was false in this run: TF1's momentum of 1
            return distnet.constant(storage.data.copy())
        batch = st.mean if which == "mean" else (st.unbiased_variance() if unbiased else st.variance)
        new = storage.data.copy()
        _bn.moving_average_update(new, batch, momentum)
        stored = var._store(run, EagerTensor._from_op(new, None, ()))
        return distnet.constant(stored.data.copy())

    return leaf("AssignSub", compute, var.dtype, var.shape, var._probes, inputs=[node_tensor(node)], name=name)


def _channels(x: Tensor, axis: int, what: str) -> tuple[int, int]:
    dims = x.shape.dims
    if dims is None:
        raise ValueError(f"{what}: Input has undefined rank.")
    axis = int(axis)
    if not -len(dims) <= axis < len(dims):
        raise ValueError(f"{what}: Invalid axis: {axis} for an input of rank {len(dims)}")
    axis %= len(dims)
    if dims[axis].value is None:
        raise ValueError(f"{what}: Input has undefined `axis` dimension. Input shape: {x.shape}")
    return axis, dims[axis].value


def _layer(inputs, *, axis, momentum, epsilon, center, scale, initializers, regularizers, training, trainable,
           name, default_name, reuse, unbiased, updates_collections, collections, what):
    x = convert_to_tensor(inputs)
    if x.dtype is not None and not np.issubdtype(x.dtype, np.floating):
        # Its variables would take the input's dtype, and the statistics cannot be integers.
        raise TypeError(f"{what}: inputs: Expect: a floating-point tensor (tf.cast it, e.g. to tf.float32) "
                        f"Actual: {x.dtype.name} {x.name}")
    axis, c = _channels(x, axis, what)
    g = get_default_graph()
    with variable_scope(name, default_name=default_name, reuse=reuse):
        made = {}
        # The creation order is TF1's (global_variables() lists them so): contrib makes beta first.
        order = ("beta", "gamma") if what.startswith("contrib") else ("gamma", "beta")
        for key in order:
            if scale if key == "gamma" else center:
                made[key] = get_variable(key, [c], dtype=x.dtype, initializer=initializers[key],
                                         regularizer=regularizers.get(key), trainable=trainable,
                                         collections=collections.get(key))
        for key in ("moving_mean", "moving_variance"):
            made[key] = get_variable(key, [c], dtype=x.dtype, initializer=initializers[key], trainable=False,
                                     collections=collections.get(key))
        node = _node(x, made.get("gamma"), made.get("beta"), made["moving_mean"], made["moving_variance"],
                     training, epsilon, axis, "FusedBatchNormV3")
        updates = []
        if isinstance(training, Tensor) or training:
            updates = [_update(node, made["moving_mean"], "mean", momentum, unbiased, "AssignMovingAvg"),
                       _update(node, made["moving_variance"], "variance", momentum, unbiased,
                               "AssignMovingAvg_1")]
        if updates and updates_collections is None:
            # contrib's in-place form: the output waits for the updates.
            with g.control_dependencies([u.op for u in updates]):
                return _output(node, x, None)
        for u in updates:
            g.add_to_collections(updates_collections, u.op)
        return _output(node, x, None)


def _init(value, default):
    return value if value is not None else default


def layers_batch_normalization(inputs, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                               beta_initializer=None, gamma_initializer=None, moving_mean_initializer=None,
                               moving_variance_initializer=None, beta_regularizer=None, gamma_regularizer=None,
                               beta_constraint=None, gamma_constraint=None, training=False, trainable=True,
                               name=None, reuse=None, renorm=False, renorm_clipping=None, renorm_momentum=0.99,
                               fused=None, virtual_batch_size=None, adjustment=None):
    """TF1's ``tf.layers.batch_normalization`` (see the module doc)."""
    if renorm or virtual_batch_size is not None or adjustment is not None:
        raise ValueError("batch_normalization: renorm, virtual_batch_size and adjustment are not supported by "
                         "distnet.compat.v1")
    x = convert_to_tensor(inputs)
    return _layer(x, axis=axis, momentum=float(momentum), epsilon=float(epsilon), center=center, scale=scale,
                  initializers={"gamma": _init(gamma_initializer, ones_initializer()),
                                "beta": _init(beta_initializer, zeros_initializer()),
                                "moving_mean": _init(moving_mean_initializer, zeros_initializer()),
                                "moving_variance": _init(moving_variance_initializer, ones_initializer())},
                  regularizers={"gamma": gamma_regularizer, "beta": beta_regularizer}, training=training,
                  trainable=trainable, name=name, default_name="batch_normalization", reuse=reuse,
                  # TF1's layer runs its fused kernel on 4-D inputs normalized over axis 1 or 3.
                  unbiased=(x.shape.ndims == 4 and fused is not False and isinstance(axis, int)
                            and axis % 4 in (1, 3)),
                  updates_collections=[GraphKeys.UPDATE_OPS],
                  collections={}, what="batch_normalization")


def contrib_batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001, activation_fn=None,
                       param_initializers=None, param_regularizers=None, updates_collections=GraphKeys.UPDATE_OPS,
                       is_training=True, reuse=None, variables_collections=None, outputs_collections=None,
                       trainable=True, batch_weights=None, fused=None, data_format="NHWC",
                       zero_debias_moving_mean=False, scope=None, renorm=False, renorm_clipping=None,
                       renorm_decay=0.99, adjustment=None):
    """TF1's ``tf.contrib.layers.batch_norm`` (see the module doc): ``BatchNorm/beta``, ``moving_mean``, ...;
    ``updates_collections=None`` updates the moving statistics before the output."""
    if batch_weights is not None or renorm or zero_debias_moving_mean or adjustment is not None:
        raise ValueError("contrib.layers.batch_norm: batch_weights, renorm, zero_debias_moving_mean and adjustment "
                         "are not supported by distnet.compat.v1")
    if data_format != "NHWC":
        raise ValueError(f"contrib.layers.batch_norm: only data_format='NHWC' is supported; got {data_format!r}")
    x = convert_to_tensor(inputs)
    p = dict(param_initializers or {})
    collections = {}
    if variables_collections is not None:
        for key in ("beta", "gamma", "moving_mean", "moving_variance"):
            extra = (variables_collections.get(key) if isinstance(variables_collections, dict)
                     else variables_collections)
            if extra:
                collections[key] = [GraphKeys.GLOBAL_VARIABLES, GraphKeys.MODEL_VARIABLES] + list(
                    [extra] if isinstance(extra, str) else extra)
    for key in ("beta", "gamma", "moving_mean", "moving_variance"):
        collections.setdefault(key, [GraphKeys.GLOBAL_VARIABLES, GraphKeys.MODEL_VARIABLES])
    if isinstance(updates_collections, str):
        updates_collections = [updates_collections]
    out = _layer(x, axis=-1, momentum=float(decay), epsilon=float(epsilon), center=center, scale=scale,
                 initializers={"gamma": _init(p.get("gamma"), ones_initializer()),
                               "beta": _init(p.get("beta"), zeros_initializer()),
                               "moving_mean": _init(p.get("moving_mean"), zeros_initializer()),
                               "moving_variance": _init(p.get("moving_variance"), ones_initializer())},
                 regularizers=dict(param_regularizers or {}), training=is_training, trainable=trainable,
                 name=scope, default_name="BatchNorm", reuse=reuse,
                 unbiased=x.shape.ndims in (2, 4) and fused is not False, updates_collections=updates_collections,
                 collections=collections, what="contrib.layers.batch_norm")
    return activation_fn(out) if activation_fn is not None else out
