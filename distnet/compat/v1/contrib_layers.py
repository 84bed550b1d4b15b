"""``tf.contrib.layers`` (and ``tf.contrib.slim``'s layers): ``conv2d``,
``fully_connected``, ``flatten``, ``max_pool2d``, ``dropout``, ``one_hot_encoding``, ``repeat``,
each decorated with :func:`~distnet.compat.v1.arg_scope.add_arg_scope`.

TF1's contrib conventions, which differ from ``tf.layers``:

* variables ``<scope>/weights`` and ``<scope>/biases`` under a default
  scope ``Conv``, ``Conv_1``, ... (``fully_connected``, ``fully_connected_1``
  for the dense layer), in ``GLOBAL_VARIABLES`` and ``MODEL_VARIABLES``;
* ``activation_fn=tf.nn.relu`` by default; ``weights_initializer`` Xavier
  (Glorot uniform), ``biases_initializer`` zeros (None: no biases);
* ``normalizer_fn(outputs, **normalizer_params)`` replaces the biases (e.g.
  a batch norm);
* ``conv2d`` pads ``SAME``, ``max_pool2d`` pools 2x2 ``VALID`` with stride 2,
  ``dropout`` keeps ``keep_prob`` and is on unless ``is_training=False``;
* ``outputs_collections`` receive each layer's output.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.compat.v1 import array_ops, math_ops
from distnet.compat.v1 import layers as _layers
from distnet.compat.v1.arg_scope import add_arg_scope
from distnet.compat.v1.graph import GraphKeys, convert_to_tensor, get_default_graph
from distnet.compat.v1.variables import get_variable, variable_scope, zeros_initializer

__all__ = ["conv2d", "convolution2d", "dropout", "flatten", "fully_connected", "max_pool2d", "repeat"]


def _collections(variables_collections: Any, name: str) -> list:
    """TF1: ``variables_collections`` is a list for every variable, or a dict by variable name."""
    extra = variables_collections.get(name) if isinstance(variables_collections, dict) else variables_collections
    return [GraphKeys.GLOBAL_VARIABLES, GraphKeys.MODEL_VARIABLES] + list(extra or [])


def _model_variable(name, shape, dtype, initializer, regularizer, trainable, variables_collections):
    return get_variable(name, shape, dtype=dtype, initializer=initializer, regularizer=regularizer,
                        trainable=trainable, collections=_collections(variables_collections, name))


def _collect(outputs_collections: Any, outputs):
    for c in outputs_collections or []:
        get_default_graph().add_to_collection(c, outputs)
    return outputs


def _finish(outputs, num_outputs, dtype, activation_fn, normalizer_fn, normalizer_params,
            biases_initializer, biases_regularizer, trainable, variables_collections, outputs_collections):
    if normalizer_fn is not None:
        outputs = normalizer_fn(outputs, **(normalizer_params or {}))
    elif biases_initializer is not None:
        biases = _model_variable("biases", [num_outputs], dtype, biases_initializer, biases_regularizer, trainable,
                                 variables_collections)
        outputs = math_ops.bias_add(outputs, biases)
    if activation_fn is not None:
        outputs = activation_fn(outputs)
    return _collect(outputs_collections, outputs)


def _xavier():
    return _layers.xavier_initializer()


def _pair(v, what: str) -> tuple:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"{what}: Expect: an int or a pair of ints Actual: {v}")
    return v


@add_arg_scope
def conv2d(inputs, num_outputs, kernel_size, stride=1, padding="SAME", data_format=None, rate=1,
           activation_fn=math_ops.relu, normalizer_fn=None, normalizer_params=None, weights_initializer=None,
           weights_regularizer=None, biases_initializer=zeros_initializer(), biases_regularizer=None, reuse=None,  # noqa: B008 (TF1's signature; stateless)
           variables_collections=None, outputs_collections=None, trainable=True, scope=None):
    """A 2-D convolution (NHWC) with ``Conv/weights`` ``[kh, kw, in, num_outputs]`` and ``Conv/biases``."""
    if data_format not in (None, "NHWC"):
        raise ValueError(f"conv2d: Expect: data_format None or 'NHWC' Actual: {data_format!r} "
                         "(distnet.compat.v1 convolves NHWC only)")
    inputs = convert_to_tensor(inputs)
    n_in = _layers._last_dim(inputs, "Conv")
    kh, kw = _pair(kernel_size, "conv2d kernel_size")
    sh, sw = _pair(stride, "conv2d stride")
    with variable_scope(scope, default_name="Conv", reuse=reuse):
        weights = _model_variable("weights", [kh, kw, n_in, num_outputs], inputs.dtype,
                                  weights_initializer or _xavier(), weights_regularizer, trainable,
                                  variables_collections)
        outputs = math_ops.conv2d(inputs, weights, strides=[1, sh, sw, 1], padding=padding.upper(),
                                  dilations=[1, *_pair(rate, "conv2d rate"), 1])
        return _finish(outputs, num_outputs, inputs.dtype, activation_fn, normalizer_fn, normalizer_params,
                       biases_initializer, biases_regularizer, trainable, variables_collections, outputs_collections)


convolution2d = conv2d


@add_arg_scope
def fully_connected(inputs, num_outputs, activation_fn=math_ops.relu, normalizer_fn=None, normalizer_params=None,
                    weights_initializer=None, weights_regularizer=None,
                    biases_initializer=zeros_initializer(),  # noqa: B008 (TF1's signature; stateless)
                    biases_regularizer=None, reuse=None, variables_collections=None, outputs_collections=None,
                    trainable=True, scope=None):
    """``activation_fn(inputs @ weights + biases)`` over the last axis, with ``fully_connected/weights``
    ``[in, num_outputs]`` and ``fully_connected/biases``."""
    if not isinstance(num_outputs, (int, np.integer)):
        raise ValueError(f"num_outputs: Expect: an int Actual: {num_outputs!r}")
    inputs = convert_to_tensor(inputs)
    n_in = _layers._last_dim(inputs, "fully_connected")
    with variable_scope(scope, default_name="fully_connected", reuse=reuse):
        weights = _model_variable("weights", [n_in, int(num_outputs)], inputs.dtype, weights_initializer or _xavier(),
                                  weights_regularizer, trainable, variables_collections)
        if inputs.shape.ndims == 2:
            outputs = math_ops.matmul(inputs, weights)
        else:
            lead = [d.value if d.value is not None else -1 for d in inputs.shape.dims[:-1]]
            if lead.count(-1) > 1:
                lead = [-1] + lead[1:]   # only the batch size may stay unknown here
            flat = math_ops.matmul(array_ops.reshape(inputs, [-1, n_in]), weights)
            outputs = array_ops.reshape(flat, lead + [int(num_outputs)])
        return _finish(outputs, int(num_outputs), inputs.dtype, activation_fn, normalizer_fn,
                       normalizer_params, biases_initializer, biases_regularizer, trainable, variables_collections,
                       outputs_collections)


@add_arg_scope
def flatten(inputs, outputs_collections=None, scope=None):
    """``[batch, -1]``: every axis but the first in one."""
    g = get_default_graph()
    with g.name_scope(scope or "Flatten"):
        return _collect(outputs_collections, _layers.flatten(inputs))


@add_arg_scope
def max_pool2d(inputs, kernel_size, stride=2, padding="VALID", data_format="NHWC", outputs_collections=None,
               scope=None):
    """Max pooling over ``kernel_size`` windows (NHWC)."""
    if data_format not in (None, "NHWC"):
        raise ValueError(f"max_pool2d: Expect: data_format 'NHWC' Actual: {data_format!r}")
    g = get_default_graph()
    with g.name_scope(scope or "MaxPool2D"):
        out = _layers.max_pooling2d(inputs, _pair(kernel_size, "max_pool2d kernel_size"),
                                    _pair(stride, "max_pool2d stride"), padding=padding)
        return _collect(outputs_collections, out)


@add_arg_scope
def dropout(inputs, keep_prob=0.5, noise_shape=None, is_training=True, outputs_collections=None, scope=None,
            seed=None):
    """Keeps each element with probability ``keep_prob`` (scaled by ``1/keep_prob``) when ``is_training``
    (a bool or a bool tensor), the identity otherwise."""
    g = get_default_graph()
    with g.name_scope(scope or "Dropout"):
        if isinstance(keep_prob, (int, float)) and not 0 < keep_prob <= 1:
            raise ValueError(f"dropout: Expect: 0 < keep_prob <= 1 Actual: {keep_prob}")
        if isinstance(keep_prob, (int, float)):
            out = _layers.dropout(inputs, rate=1.0 - keep_prob, noise_shape=noise_shape, seed=seed,
                                  training=is_training)
        elif isinstance(is_training, bool):
            out = math_ops.dropout(inputs, keep_prob=keep_prob, noise_shape=noise_shape, seed=seed) if is_training \
                else array_ops.identity(inputs)
        else:
            raise ValueError("dropout: a tensor keep_prob with a tensor is_training is not supported; "
                             "Expect: a number keep_prob, or a bool is_training")
        return _collect(outputs_collections, out)


@add_arg_scope
def one_hot_encoding(labels, num_classes, on_value=1.0, off_value=0.0, outputs_collections=None, scope=None):
    """``labels`` (class ids) as float32 one-hot rows of ``num_classes``."""
    g = get_default_graph()
    with g.name_scope(scope or "OneHotEncoding"):
        out = array_ops.one_hot(labels, num_classes, on_value=on_value, off_value=off_value, dtype=np.float32)
        return _collect(outputs_collections, out)


def repeat(inputs, repetitions, layer, *args, **kwargs):
    """``layer`` applied ``repetitions`` times, under ``scope/scope_1``, ``scope/scope_2``, ... (slim's)."""
    scope = kwargs.pop("scope", None)
    base = scope or getattr(layer, "__name__", "repeat")
    with variable_scope(scope, default_name="Repeat"):
        outputs = inputs
        for i in range(int(repetitions)):
            outputs = layer(outputs, *args, **{**kwargs, "scope": f"{base}_{i + 1}"})
    return outputs
