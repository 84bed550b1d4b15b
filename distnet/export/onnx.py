"""Export a :class:`~distnet.model.models.Sequential` to an ONNX model.

Every layer type distnet has is exported: Conv2D (``valid``/``same``
padding, any strides), Conv2DTranspose, MaxPool2D and AvgPool2D
(``valid``/``same``), GlobalAvgPool2D, BatchNorm (its inference form, with
the moving statistics), Reshape, Flatten, Dropout (the identity at
inference), Dense, Embedding (``Cast`` of the float input to int64 ids, then
``Gather``), LSTM and GRU (ONNX's ``LSTM`` and ``GRU`` ops, their weights
reordered from Keras' gate layout), with the activations ``relu``,
``leaky_relu``, ``sigmoid``, ``tanh``, ``softmax`` and ``linear``.

The exported model keeps distnet's interface: its input ``images`` is
``[batch, H, W, C]`` float32 in [0, 1] (NHWC, what distnet's datasets give),
its outputs are ``logits`` (the model's output) and, for a model ending in
per-class scores, ``probabilities`` (their softmax).  Inside, the
convolutions and poolings run in ONNX's NCHW layout: the graph transposes
the input once and transposes back before Flatten, so the flattened
features are in distnet's (row-major NHWC) order and the Dense kernels are
used as they are.

# TF1's "SAME" padding puts the odd pixel of padding after the image
# (bottom/right): pads are computed here exactly as TF does,
# total = max((out - 1) * stride + k - in, 0), before = total // 2.  Max
# pooling never picks a padded element (TF and ONNX both ignore them).

Needs the ``onnx`` package (``pip install 'distnet[onnx]'``).

Example:
    >>> export_onnx(model, "model.onnx", input_shape=(28, 28, 1))    # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from distnet.errors import InvalidArgumentError

__all__ = ["export_onnx", "to_onnx", "OPSET", "INSTALL_HINT"]

#: The ONNX opset the graph is written for: 13 is where Softmax takes one
#: axis (earlier opsets flatten from the axis on), read by every current runtime.
OPSET = 13
INSTALL_HINT = "pip install 'distnet[onnx]' (or: pip install onnx)"
EXPORTABLE = ("Conv2D", "MaxPool2D", "Flatten", "Dropout", "Dense", "AvgPool2D", "GlobalAvgPool2D", "BatchNorm",
              "Conv2DTranspose", "Reshape", "Embedding", "LSTM", "GRU")


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the onnx package: {INSTALL_HINT} ({exc})") from exc
    return onnx


def _same_pads(size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
               padding: str) -> list[int]:
    """ONNX ``pads`` [top, left, bottom, right] for TF's padding of a 2-D window."""
    if padding == "VALID":
        return [0, 0, 0, 0]
    before, after = [], []
    for n, k, s in zip(size, kernel, strides):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


class _Graph:
    """Collects nodes and weights, naming each value once."""

    def __init__(self, onnx, dtype: np.dtype):
        self.onnx = onnx
        self.dtype = dtype
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()

    def name(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def weight(self, name: str, value: np.ndarray) -> str:
        name = self.name(name)
        arr = np.ascontiguousarray(value, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, name: str, value: Sequence[int]) -> str:
        """An int64 constant (a shape)."""
        name = self.name(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def node(self, op: str, inputs: Sequence[str], out: str, **attrs: Any) -> str:
        out = self.name(out)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def node_outputs(self, op: str, inputs: Sequence[str], outs: Sequence[str], **attrs: Any) -> list[str]:
        """A node with several outputs (``""`` leaves an optional one out)."""
        names = [self.name(o) if o else "" for o in outs]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), names, name=names[0] or names[-1], **attrs))
        return names


def _activation_op(layer) -> str | None:
    """The ONNX op of a layer's activation (None: linear)."""
    import distnet.nn as nn

    act = getattr(layer, "activation", None)
    if act is None:
        return None
    for name, op in (("relu", "Relu"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("softmax", "Softmax"),
                     ("leaky_relu", "LeakyRelu")):
        if act is getattr(nn, name):
            return op
    raise InvalidArgumentError(f"layer {layer.name!r}: its activation {act!r} has no ONNX form; "
                               "Expect: one of relu, leaky_relu, sigmoid, tanh, softmax, linear")


def _activation_attrs(op: str, softmax_axis: int) -> dict:
    """The attributes of an activation node: softmax's axis, leaky_relu's slope (distnet's 0.2)."""
    return {"axis": softmax_axis} if op == "Softmax" else {"alpha": 0.2} if op == "LeakyRelu" else {}


def to_onnx(model, input_shape: Sequence[int] | None = None, *, weights: Mapping[str, np.ndarray] | None = None,
            opset: int = OPSET, metadata: Mapping[str, str] | None = None, graph_name: str = "distnet"):
    """The model as an ``onnx.ModelProto`` (checked with ``onnx.checker``).

    Args:
        model: a :class:`~distnet.model.models.Sequential` of distnet layers.
        input_shape: ``(H, W, C)`` of one image; default: the built model's.
        weights: ``{variable name: array}`` to export instead of the model's
            own values (e.g. EMA shadows); every variable must be there.
        opset: the ONNX opset to declare (>= 13).
        metadata: strings stored in the model's ``metadata_props``.
        graph_name: the ONNX graph's name.

    Raises:
        InvalidArgumentError: a layer or activation without an ONNX form, or
            bad arguments.
        ImportError: the onnx package is missing.
    """
    onnx = _onnx()
    from distnet.layers import (
        GRU, LSTM, AvgPool2D, BatchNorm, Conv2D, Conv2DTranspose, Dense, Dropout, Embedding, Flatten, GlobalAvgPool2D,
        MaxPool2D, Reshape,
    )
    from distnet.model.models import Sequential

    if not isinstance(model, Sequential):
        raise InvalidArgumentError(f"to_onnx: model: Expect: a distnet Sequential Actual: {type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise InvalidArgumentError(f"to_onnx: opset: Expect: an int >= 13 (Softmax over one axis) "
                                   f"Actual: {opset!r}")
    if input_shape is None:
        if not model.built:
            raise InvalidArgumentError("to_onnx: the model is not built; Expect: input_shape=(H, W, C)")
        input_shape = model.input_shape
    input_shape = tuple(int(s) for s in input_shape)
    model.build((None,) + input_shape)
    values = {v.name: v.numpy() for v in model.variables}
    if weights is not None:
        missing = sorted(set(values) - set(weights))
        if missing:
            raise InvalidArgumentError(f"to_onnx: weights: Expect: a value for every variable Actual: "
                                       f"missing {missing}")
        for name in values:
            if tuple(np.shape(weights[name])) != values[name].shape:
                raise InvalidArgumentError(f"to_onnx: weights[{name!r}]: Expect: shape {values[name].shape} "
                                           f"Actual: {tuple(np.shape(weights[name]))}")
            values[name] = np.asarray(weights[name])
    dtype = np.dtype(model.dtype)
    elem = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.float64): onnx.TensorProto.DOUBLE}.get(dtype)
    if elem is None:
        raise InvalidArgumentError(f"to_onnx: Expect: a float32 or float64 model Actual: {dtype}")

    g = _Graph(onnx, dtype)
    x = "images"
    g._names.add(x)
    nchw = False   # the layout of x: distnet's NHWC until the first window layer
    shape = input_shape
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, BatchNorm) and len(shape) == 1:
            x = _batch_norm(g, layer, values, x)
        elif isinstance(layer, (Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, BatchNorm, Conv2DTranspose)):
            if isinstance(layer, BatchNorm) and (len(shape) != 3 or layer.axis not in (-1, 3)):
                raise InvalidArgumentError(f"to_onnx: BatchNorm {layer.name!r} on per-sample shape {shape} with "
                                           f"axis {layer.axis}: Expect: images with the channel axis last, or "
                                           "[batch, features]")
            if not nchw:
                x = g.node("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
                nchw = True
            h, w, _ = shape
            if isinstance(layer, Conv2D):
                kernel = values[layer.kernel.name].transpose(3, 2, 0, 1)   # HWIO -> OIHW
                inputs = [x, g.weight(layer.kernel.name, kernel)]
                if layer.use_bias:
                    inputs.append(g.weight(layer.bias.name, values[layer.bias.name]))
                x = g.node("Conv", inputs, layer.name, kernel_shape=list(layer.kernel_size),
                           strides=list(layer.strides),
                           pads=_same_pads((h, w), layer.kernel_size, layer.strides, layer.padding))
            elif isinstance(layer, Conv2DTranspose):
                x = _conv_transpose(g, layer, values, x, (h, w))
            elif isinstance(layer, BatchNorm):
                x = _batch_norm(g, layer, values, x)
            elif isinstance(layer, GlobalAvgPool2D):
                x = g.node("Flatten", [g.node("GlobalAveragePool", [x], layer.name)], f"{layer.name}/flatten", axis=1)
                nchw = False   # [batch, channels]: the same in both layouts
            else:
                # AveragePool's default count_include_pad=0 averages the real pixels, as TF's SAME.
                x = g.node("MaxPool" if isinstance(layer, MaxPool2D) else "AveragePool", [x], layer.name,
                           kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                           pads=_same_pads((h, w), layer.pool_size, layer.strides, layer.padding))
            op = _activation_op(layer) if isinstance(layer, (Conv2D, Conv2DTranspose)) else None
            if op is not None:
                # distnet's softmax is over the last (channel) axis: axis 1 in NCHW.
                x = g.node(op, [x], f"{layer.name}/{op.lower()}", **_activation_attrs(op, 1))
        elif isinstance(layer, Flatten):
            if nchw:   # back to NHWC so the features are in distnet's order
                x = g.node("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
                nchw = False
            x = g.node("Flatten", [x], layer.name, axis=1)
        elif isinstance(layer, Reshape):
            if nchw:   # distnet reshapes in row-major NHWC order
                x = g.node("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
                nchw = False
            x = g.node("Reshape", [x, g.ints(f"{layer.name}/shape", [0, *layer.output_shape])], layer.name)
        elif isinstance(layer, (Embedding, LSTM, GRU)):
            if nchw:   # these read distnet's row-major NHWC order
                x = g.node("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
                nchw = False
            if isinstance(layer, Embedding):
                ids = g.node("Cast", [x], f"{layer.name}/ids", to=onnx.TensorProto.INT64)
                x = g.node("Gather", [g.weight(layer.embeddings.name, values[layer.embeddings.name]), ids],
                           layer.name, axis=0)
            else:
                x = _recurrent(g, layer, values, x)
        elif isinstance(layer, Dropout):
            pass   # the identity at inference
        elif isinstance(layer, Dense):
            if len(shape) != 1:
                raise InvalidArgumentError(f"to_onnx: Dense {layer.name!r} takes per-sample shape {shape}; "
                                           "Expect: one axis (a Flatten before it)")
            inputs = [x, g.weight(layer.kernel.name, values[layer.kernel.name])]
            if layer.use_bias:
                inputs.append(g.weight(layer.bias.name, values[layer.bias.name]))
            x = g.node("Gemm", inputs, layer.name)
            op = _activation_op(layer)
            if op is not None:
                x = g.node(op, [x], f"{layer.name}/{op.lower()}", **_activation_attrs(op, -1))
        else:
            raise InvalidArgumentError(f"to_onnx: layer {layer.name!r} of type {kind} has no ONNX form; "
                                       f"Expect: layers of the types {', '.join(EXPORTABLE)}")
        shape = tuple(layer.output_shape)
    if nchw:
        x = g.node("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
    outputs = [g.node("Identity", [x], "logits")]
    out_shapes = [("batch",) + shape]
    if len(shape) == 1:
        outputs.append(g.node("Softmax", [x], "probabilities", axis=-1))
        out_shapes.append(("batch",) + shape)
    helper = onnx.helper
    graph = helper.make_graph(
        g.nodes, graph_name,
        [helper.make_tensor_value_info("images", elem, ["batch", *input_shape])],
        [helper.make_tensor_value_info(o, elem, list(s)) for o, s in zip(outputs, out_shapes)],
        initializer=g.initializers)
    from distnet._version import __version__

    proto = helper.make_model(graph, producer_name="distnet", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", opset)])
    # The IR version the opset was introduced with, not the newest this onnx
    # package knows: older runtimes refuse files of a newer IR version.
    proto.ir_version = 7
    props = {"input_layout": "NHWC, float values in [0, 1]", **dict(metadata or {})}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _batch_norm(g: _Graph, layer, values: Mapping[str, np.ndarray], x: str) -> str:
    """ONNX BatchNormalization (channels on axis 1: NCHW, or [batch, features]) with the moving statistics."""
    c = values[layer.moving_mean.name].shape[0]
    gamma = values[layer.gamma.name] if layer.gamma is not None else np.ones(c)
    beta = values[layer.beta.name] if layer.beta is not None else np.zeros(c)
    inputs = [x, g.weight(f"{layer.name}/gamma", gamma), g.weight(f"{layer.name}/beta", beta),
              g.weight(layer.moving_mean.name, values[layer.moving_mean.name]),
              g.weight(layer.moving_variance.name, values[layer.moving_variance.name])]
    return g.node("BatchNormalization", inputs, layer.name, epsilon=layer.epsilon)


def _conv_transpose(g: _Graph, layer, values: Mapping[str, np.ndarray], x: str, size: tuple[int, int]) -> str:
    """ONNX ConvTranspose with TF's geometry: the full output cropped by the pads of the conv2d it
    transposes (the odd pixel after), or extended by ``output_padding`` when the kernel is smaller
    than the stride."""
    kernel = values[layer.kernel.name].transpose(3, 2, 0, 1)   # [kh, kw, out, in] -> [in, out, kh, kw]
    inputs = [x, g.weight(layer.kernel.name, kernel)]
    if layer.use_bias:
        inputs.append(g.weight(layer.bias.name, values[layer.bias.name]))
    before, after, extra = [], [], []
    for n, k, s, out in zip(size, layer.kernel_size, layer.strides, layer.output_shape[:2]):
        total = (n - 1) * s + k - out
        before.append(max(total, 0) // 2)
        after.append(max(total, 0) - max(total, 0) // 2)
        extra.append(max(-total, 0))
    return g.node("ConvTranspose", inputs, layer.name, kernel_shape=list(layer.kernel_size),
                  strides=list(layer.strides), pads=before + after, output_padding=extra)


# ONNX's activation names for the recurrent ops' ``activations`` attribute.
_RECURRENT_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _recurrent_activation_names(layer) -> list[str]:
    """``[gate activation, candidate activation]`` as ONNX names (None, linear: ``Affine`` would need
    attributes we do not write, so only relu/sigmoid/tanh are exported)."""
    import distnet.nn as nn

    names = []
    for what, act in (("recurrent_activation", layer.recurrent_activation), ("activation", layer.activation)):
        found = [onnx_name for name, onnx_name in _RECURRENT_ACTIVATIONS.items() if act is getattr(nn, name)]
        if not found:
            raise InvalidArgumentError(f"to_onnx: {type(layer).__name__} {layer.name!r}: its {what} {act!r} has no "
                                       f"ONNX form; Expect: one of {', '.join(_RECURRENT_ACTIVATIONS)}")
        names.append(found[0])
    return names


def _recurrent(g: _Graph, layer, values: Mapping[str, np.ndarray], x: str) -> str:
    """ONNX ``LSTM`` / ``GRU`` on ``[batch, time, features]``, one forward direction, time-major inside.

    Keras' LSTM gates are ``i, f, c, o`` along the kernels' last axis, ONNX's
    ``i, o, f, c``; GRU's ``z, r, h`` are the same in both, and Keras'
    ``reset_after`` is ONNX's ``linear_before_reset = 1``.  ONNX's weights are
    ``[1, gates * units, in]`` (transposed) and its bias ``[1, 2 * gates * units]``
    (input bias, then recurrent bias).
    """
    from distnet.layers import LSTM

    u = layer.units
    kernel, recurrent = values[layer.kernel.name], values[layer.recurrent_kernel.name]
    bias = values[layer.bias.name] if layer.use_bias else None
    gate, cand = _recurrent_activation_names(layer)
    if isinstance(layer, LSTM):
        order = np.concatenate([np.arange(k * u, (k + 1) * u) for k in (0, 3, 1, 2)])   # i, o, f, c
        kernel, recurrent = kernel[:, order], recurrent[:, order]
        b = np.concatenate([bias[order], np.zeros(4 * u)]) if bias is not None else np.zeros(8 * u)
        op, attrs = "LSTM", {"activations": [gate, cand, cand]}
    else:
        if bias is None:
            b = np.zeros(6 * u)
        elif layer.reset_after:
            b = bias.reshape(-1)   # [input bias, recurrent bias]
        else:
            b = np.concatenate([bias, np.zeros(3 * u)])
        op, attrs = "GRU", {"activations": [gate, cand], "linear_before_reset": int(layer.reset_after)}
    w = g.weight(f"{layer.name}/W", kernel.T[None])
    r = g.weight(f"{layer.name}/R", recurrent.T[None])
    bb = g.weight(f"{layer.name}/B", b[None])
    time_major = g.node("Transpose", [x], f"{layer.name}/time_major", perm=[1, 0, 2])
    y, y_h = g.node_outputs(op, [time_major, w, r, bb], [f"{layer.name}/Y", f"{layer.name}/Y_h"],
                            hidden_size=u, **attrs)
    if layer.return_sequences:   # Y: [time, 1, batch, units] -> [batch, time, units]
        y = g.node("Squeeze", [y, g.ints(f"{layer.name}/direction_axis", [1])], f"{layer.name}/sequence")
        return g.node("Transpose", [y], layer.name, perm=[1, 0, 2])
    return g.node("Squeeze", [y_h, g.ints(f"{layer.name}/direction_axis", [0])], layer.name)


def export_onnx(model, path: str | os.PathLike, input_shape: Sequence[int] | None = None, **kwargs) -> str:
    """Write the model to an ONNX file, atomically (a half-written file never has the name).

    Args:
        model, input_shape, kwargs: as :func:`to_onnx`.
        path: the ``.onnx`` file to write.

    Returns:
        The absolute path written.
    """
    proto = to_onnx(model, input_shape, **kwargs)
    final = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(final)
    if os.path.isdir(final):
        raise InvalidArgumentError(f"export: {final}: Expect: a file name Actual: a directory")
    if not os.path.isdir(directory):
        raise InvalidArgumentError(f"export: {final}: Expect: an existing directory Actual: no directory "
                                   f"{directory}")
    from distnet.tempfiles import create_beside, fill_and_replace

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(proto.SerializeToString())

    fill_and_replace(create_beside(final), final, fill)
    return final

