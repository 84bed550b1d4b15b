"""``tf.layers``, ``tf.contrib.layers`` (regularizers) and ``tf.losses`` in graph mode.

Layers make their variables with ``get_variable`` under a variable scope
(``dense/kernel``, ``dense_1/kernel``, ``conv2d/kernel``, ...) and compute
with the graph ops; a ``kernel_regularizer``'s term goes to
``REGULARIZATION_LOSSES``.  The losses run :mod:`distnet.model.losses` and add
themselves to ``LOSSES``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import distnet
from distnet.model import losses as _losses
from distnet.model import regularizers as _reg
from distnet.compat.v1 import array_ops, math_ops
from distnet.compat.v1.graph import GraphKeys, Tensor, build, convert_to_tensor, get_default_graph
from distnet.compat.v1.variables import get_variable, glorot_uniform_initializer, variable_scope, zeros_initializer


# -- tf.contrib.layers: regularizers -------------------------------------------------------

def _regularizer(op_type: str, native, scale_ok: bool):
    if not scale_ok:
        return lambda weights: None   # TF1: a scale of 0 disables the regularizer

    def apply(weights, name=None):
        return build(op_type, native, weights, _name=name or op_type)

    return apply


def l1_regularizer(scale, scope=None):
    """``scale * sum(|w|)``; with ``w = [[5,-2],[-3,1]]`` and 0.5: 5.5 (seed 003)."""
    return _regularizer("L1Regularizer", _reg.l1(scale), float(scale) != 0.0)


def l2_regularizer(scale, scope=None):
    """``scale * sum(w**2) / 2`` (TF1's, ``scale * l2_loss(w)``); with ``w = [[5,-2],[-3,1]]`` and 0.5: 9.75."""
    return _regularizer("L2Regularizer", _reg.l2(scale), float(scale) != 0.0)


def l1_l2_regularizer(scale_l1=1.0, scale_l2=1.0, scope=None):
    return _regularizer("L1L2Regularizer", _reg.l1_l2(scale_l1, scale_l2), float(scale_l1) != 0 or float(scale_l2) != 0)


def sum_regularizer(regularizer_list, scope=None):
    def apply(weights):
        terms = [t for t in (r(weights) for r in regularizer_list) if t is not None]
        return math_ops.add_n(terms) if terms else None

    return apply


def apply_regularization(regularizer, weights_list=None):
    """The sum of ``regularizer(w)`` over ``weights_list`` (default the WEIGHTS collection), added to
    ``REGULARIZATION_LOSSES`` and returned."""
    g = get_default_graph()
    if not weights_list:
        weights_list = g.get_collection("weights")
    if not weights_list:
        raise ValueError("No weights to regularize.")
    terms = [t for t in (regularizer(w) for w in weights_list) if t is not None]
    if not terms:
        return array_ops.constant(0.0)
    total = math_ops.add_n(terms) if len(terms) > 1 else terms[0]
    g.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, total)
    return total


def xavier_initializer(uniform: bool = True, seed: int | None = None, dtype: Any = np.float32):
    from distnet.compat.v1.variables import variance_scaling_initializer

    return variance_scaling_initializer(1.0, "fan_avg", "uniform" if uniform else "truncated_normal", seed, dtype)


# -- tf.layers ----------------------------------------------------------------------------

def _activate(x: Tensor, activation) -> Tensor:
    return x if activation is None else activation(x)


def _last_dim(inputs: Tensor, layer: str) -> int:
    dims = inputs.shape.dims
    if dims is None or dims[-1].value is None:
        raise ValueError(f"The last dimension of the inputs to `{layer}` should be defined. Found `None`.")
    return dims[-1].value


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
          activity_regularizer=None, kernel_constraint=None, bias_constraint=None, trainable=True,
          name=None, reuse=None):
    """``activation(inputs @ kernel + bias)`` with variables ``<name>/kernel`` and ``<name>/bias``."""
    inputs = convert_to_tensor(inputs)
    n_in = _last_dim(inputs, "Dense")
    with variable_scope(name, default_name="dense", reuse=reuse):
        kernel = get_variable("kernel", [n_in, units], dtype=inputs.dtype,
                              initializer=kernel_initializer or glorot_uniform_initializer(),
                              regularizer=kernel_regularizer, trainable=trainable)
        out = math_ops.matmul(inputs, kernel) if inputs.shape.ndims == 2 else \
            array_ops.reshape(math_ops.matmul(array_ops.reshape(inputs, [-1, n_in]), kernel),
                              [-1] + [d.value if d.value is not None else -1 for d in inputs.shape.dims[1:-1]] + [units])
        if use_bias:
            bias = get_variable("bias", [units], dtype=inputs.dtype, initializer=bias_initializer or zeros_initializer(),
                                regularizer=bias_regularizer, trainable=trainable)
            out = math_ops.bias_add(out, bias)
        return _activate(out, activation)


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


def conv2d(inputs, filters, kernel_size, strides=(1, 1), padding="valid", data_format="channels_last",
           dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer=None,
           bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
           activity_regularizer=None, kernel_constraint=None, bias_constraint=None, trainable=True,
           name=None, reuse=None):
    """A 2-D convolution layer (NHWC), variables ``<name>/kernel`` ``[kh, kw, in, filters]`` and ``<name>/bias``."""
    if data_format != "channels_last":
        raise ValueError(f"conv2d: only data_format='channels_last' (NHWC) is supported; got {data_format!r}")
    inputs = convert_to_tensor(inputs)
    n_in = _last_dim(inputs, "Conv2D")
    kh, kw = _pair(kernel_size)
    with variable_scope(name, default_name="conv2d", reuse=reuse):
        kernel = get_variable("kernel", [kh, kw, n_in, filters], dtype=inputs.dtype,
                              initializer=kernel_initializer or glorot_uniform_initializer(),
                              regularizer=kernel_regularizer, trainable=trainable)
        out = math_ops.conv2d(inputs, kernel, strides=list(_pair(strides)), padding=padding.upper(),
                              dilations=list(_pair(dilation_rate)))
        if use_bias:
            bias = get_variable("bias", [filters], dtype=inputs.dtype, initializer=bias_initializer or zeros_initializer(),
                                regularizer=bias_regularizer, trainable=trainable)
            out = math_ops.bias_add(out, bias)
        return _activate(out, activation)


def max_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last", name=None):
    if data_format != "channels_last":
        raise ValueError(f"max_pooling2d: only data_format='channels_last' (NHWC) is supported; got {data_format!r}")
    return math_ops.max_pool(inputs, list(_pair(pool_size)), list(_pair(strides)), padding.upper(), name=name)


def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False, name=None):
    """Dropout when ``training`` (a bool or a bool tensor), the identity otherwise."""
    if isinstance(training, Tensor):
        keep = 1.0 - rate * array_ops.cast(training, inputs.dtype if isinstance(inputs, Tensor) else np.float32)
        return math_ops.dropout(inputs, keep_prob=keep, noise_shape=noise_shape, seed=seed, name=name)
    if not training:
        return array_ops.identity(inputs, name=name)
    return math_ops.dropout(inputs, keep_prob=1.0 - rate, noise_shape=noise_shape, seed=seed, name=name)


def flatten(inputs, name=None, data_format="channels_last"):
    """``[batch, -1]`` (the per-sample sizes must be known)."""
    inputs = convert_to_tensor(inputs)
    rest = inputs.shape[1:]
    if not rest.is_fully_defined():
        return build("Flatten", lambda x: distnet.reshape(x, (x.shape[0], -1)), inputs, _name=name)
    return array_ops.reshape(inputs, [-1, int(np.prod(rest.as_list(), dtype=np.int64))], name=name)


# -- tf.losses ----------------------------------------------------------------------------

class Reduction:
    NONE = "none"
    SUM = "weighted_sum"
    MEAN = "weighted_mean"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"


def _native_reduction(reduction: str) -> str:
    if reduction == Reduction.NONE:
        return "none"
    if reduction == Reduction.SUM:
        return "sum"
    return "mean"


def _finish(loss: Tensor, weights, loss_collection) -> Tensor:
    if not (isinstance(weights, (int, float)) and float(weights) == 1.0):
        if isinstance(weights, Tensor) and weights.shape.ndims not in (0, None):
            raise ValueError("tf.losses: distnet.compat.v1 supports scalar weights only")
        loss = math_ops.multiply(loss, weights)
    if loss_collection:
        get_default_graph().add_to_collection(loss_collection, loss)
    return loss


def mean_squared_error(labels, predictions, weights=1.0, scope=None, loss_collection=GraphKeys.LOSSES,
                       reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    loss = build("MeanSquaredError", _losses.mean_squared_error, labels, predictions, _native_reduction(reduction))
    return _finish(loss, weights, loss_collection)


def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=GraphKeys.LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    def fn(lab, lg):
        if label_smoothing:
            n = lg.shape[-1]
            lab = lab * (1.0 - label_smoothing) + label_smoothing / n
        return _losses.softmax_cross_entropy(lab, lg, _native_reduction(reduction))

    return _finish(build("SoftmaxCrossEntropyLoss", fn, onehot_labels, logits), weights, loss_collection)


def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None, loss_collection=GraphKeys.LOSSES,
                                 reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    loss = build("SparseSoftmaxCrossEntropyLoss", _losses.sparse_softmax_cross_entropy, labels, logits,
                 _native_reduction(reduction))
    return _finish(loss, weights, loss_collection)


def add_loss(loss, loss_collection=GraphKeys.LOSSES):
    if loss_collection:
        get_default_graph().add_to_collection(loss_collection, loss)


def get_losses(scope=None, loss_collection=GraphKeys.LOSSES) -> list:
    return get_default_graph().get_collection(loss_collection, scope)


def get_regularization_losses(scope=None) -> list:
    return get_default_graph().get_collection(GraphKeys.REGULARIZATION_LOSSES, scope)


def get_regularization_loss(scope=None, name="total_regularization_loss") -> Tensor:
    """The sum of ``REGULARIZATION_LOSSES`` (0.0 when there are none)."""
    terms = get_regularization_losses(scope)
    if not terms:
        return array_ops.constant(0.0, name="zero_regularization_loss")
    return math_ops.add_n(terms, name=name)


def get_total_loss(add_regularization_losses=True, name="total_loss", scope=None) -> Tensor:
    """``LOSSES`` plus (by default) ``REGULARIZATION_LOSSES``, summed."""
    terms = get_losses(scope) + (get_regularization_losses(scope) if add_regularization_losses else [])
    if not terms:
        raise ValueError("No losses found in the LOSSES collection")
    return math_ops.add_n(terms, name=name)
