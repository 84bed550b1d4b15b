"""TF1's transposed convolution and average pooling in graph mode:
``tf.nn.conv2d_transpose``, ``tf.layers.conv2d_transpose``, ``tf.nn.avg_pool``,
``tf.layers.average_pooling2d`` and ``tf.contrib.layers.avg_pool2d``."""
from __future__ import annotations

import numpy as np

import distnet.nn as dnn
from distnet.compat.v1.graph import build, convert_to_tensor
from distnet.compat.v1.variables import get_variable, glorot_uniform_initializer, variable_scope, zeros_initializer
from distnet.layers.conv2d_transpose import transpose_out


def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


def conv2d_transpose(value=None, filter=None, output_shape=None, strides=None, padding="SAME",  # noqa: A002
                     data_format="NHWC", name=None, input=None, filters=None, dilations=None):  # noqa: A002
    """TF1's ``tf.nn.conv2d_transpose``: filters ``[kh, kw, out, in]``; ``output_shape`` a list or a tensor."""
    x = value if value is not None else input
    w = filter if filter is not None else filters
    return build("conv2d_transpose", dnn.conv2d_transpose, x, w, output_shape, strides, padding,
                 data_format or "NHWC", dilations, _name=name)


def layers_conv2d_transpose(inputs, filters, kernel_size, strides=(1, 1), padding="valid",
                            data_format="channels_last", activation=None, use_bias=True, kernel_initializer=None,
                            bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
                            activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                            trainable=True, name=None, reuse=None):
    """TF1's ``tf.layers.conv2d_transpose``: ``<name>/kernel`` ``[kh, kw, filters, in]`` and ``<name>/bias``;
    output ``in * s`` ('same') or ``in * s + max(k - s, 0)`` ('valid')."""
    if data_format != "channels_last":
        raise ValueError(f"conv2d_transpose: only data_format='channels_last' (NHWC) is supported; got {data_format!r}")
    x = convert_to_tensor(inputs)
    dims = x.shape.dims
    if dims is None or len(dims) != 4 or dims[-1].value is None:
        raise ValueError(f"Inputs should have rank 4 with a known channel size. Received input shape: {x.shape}")
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(strides)
    pad = padding.upper()
    with variable_scope(name, default_name="conv2d_transpose", reuse=reuse):
        kernel = get_variable("kernel", [kh, kw, filters, dims[-1].value], dtype=x.dtype,
                              initializer=kernel_initializer or glorot_uniform_initializer(),
                              regularizer=kernel_regularizer, trainable=trainable)

        def fn(v, k):
            n, h, w, _ = v.shape
            out = (n, transpose_out(h, kh, sh, pad), transpose_out(w, kw, sw, pad), filters)
            return dnn.conv2d_transpose(v, k, out, (sh, sw), pad)

        out = build("conv2d_transpose", fn, x, kernel)
        if use_bias:
            bias = get_variable("bias", [filters], dtype=x.dtype, initializer=bias_initializer or zeros_initializer(),
                                regularizer=bias_regularizer, trainable=trainable)
            out = build("BiasAdd", dnn.bias_add, out, bias)
        return activation(out) if activation is not None else out


def avg_pool(value=None, ksize=None, strides=None, padding=None, data_format="NHWC", name=None, input=None):  # noqa: A002
    """TF1's ``tf.nn.avg_pool`` ('SAME': a border window averages its real pixels)."""
    return build("AvgPool", dnn.avg_pool, value if input is None else input, ksize, strides, padding,
                 data_format or "NHWC", _name=name)


def average_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last", name=None):
    """TF1's ``tf.layers.average_pooling2d``."""
    if data_format != "channels_last":
        raise ValueError(f"average_pooling2d: only data_format='channels_last' (NHWC) is supported; "
                         f"got {data_format!r}")
    return avg_pool(inputs, list(_pair(pool_size)), list(_pair(strides)), padding.upper(), name=name)


def contrib_avg_pool2d(inputs, kernel_size, stride=2, padding="VALID", data_format="NHWC", outputs_collections=None,
                       scope=None):
    """TF1's ``tf.contrib.layers.avg_pool2d`` (stride 2 and 'VALID' by default)."""
    return avg_pool(inputs, list(_pair(kernel_size)), list(_pair(stride)), padding.upper(), data_format,
                    name=scope or "AvgPool2D")
