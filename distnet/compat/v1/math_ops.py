"""TF1's math, comparison and ``tf.nn`` ops in graph mode, under their TF1
names and signatures (``reduction_indices=``, ``keep_dims=``, ``dim=``,
``keep_prob=``); each runs the distnet op of the same meaning.
"""
from __future__ import annotations

import collections

import numpy as np

import distnet
import distnet.nn as dnn
from distnet.compat.v1.graph import build, convert_to_tensor, leaf
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor, binary_operands


def _unary(name: str, op_type: str, fn):
    """TF1's ``tf.<name>(x, name=None)``: the graph op ``op_type`` running distnet's ``fn``."""
    def op(x, name=None):
        return build(op_type, fn, x, _name=name)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"TF1's ``tf.{name}`` (graph op ``{op_type}``)."
    return op


def _binary(name: str, op_type: str, fn):
    """TF1's ``tf.<name>(x, y, name=None)``: the graph op ``op_type`` running distnet's ``fn``."""
    def op(x, y, name=None):
        return build(op_type, fn, x, y, _name=name)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"TF1's ``tf.{name}`` (graph op ``{op_type}``)."
    return op


# -- arithmetic ---------------------------------------------------------------------------

add = _binary("add", "Add", distnet.add)
subtract = _binary("subtract", "Sub", distnet.subtract)
multiply = _binary("multiply", "Mul", distnet.multiply)
divide = _binary("divide", "RealDiv", distnet.divide)
negative = _unary("negative", "Neg", distnet.negative)
abs = _unary("abs", "Abs", distnet.abs)  # noqa: A001
square = _unary("square", "Square", distnet.square)
sqrt = _unary("sqrt", "Sqrt", distnet.sqrt)
rsqrt = _unary("rsqrt", "Rsqrt", lambda a: distnet.divide(1.0, distnet.sqrt(a)))
exp = _unary("exp", "Exp", distnet.exp)
log = _unary("log", "Log", distnet.log)
pow = _binary("pow", "Pow", distnet.pow)  # noqa: A001
maximum = _binary("maximum", "Maximum", distnet.maximum)
minimum = _binary("minimum", "Minimum", distnet.minimum)
sign = _unary("sign", "Sign", distnet.sign)


def _floordiv(a, b):
    a, b = binary_operands(a, b, "floordiv")
    with np.errstate(divide="ignore", invalid="ignore"):
        return EagerTensor._from_op(np.floor_divide(a.data, b.data), None, ())   # TF1: no gradient


def floordiv(x, y, name=None):
    """``floor(x / y)`` (TF1's ``tf.floordiv``, the ``//`` operator; no gradient, as TF1)."""
    return build("FloorDiv", _floordiv, x, y, _name=name)


def floormod(x, y, name=None):
    """``x - floor(x / y) * y`` (TF1's ``tf.floormod`` / ``tf.mod``, the ``%`` operator)."""
    return build("FloorMod", lambda a, b: distnet.subtract(a, distnet.multiply(_floordiv(a, b), b)), x, y,
                 _name=name)


def add_n(inputs, name=None):
    return build("AddN", distnet.add_n, list(inputs), _name=name)


def matmul(a, b, transpose_a=False, transpose_b=False, adjoint_a=False, adjoint_b=False,
           a_is_sparse=False, b_is_sparse=False, name=None):
    return build("MatMul", distnet.matmul, a, b, bool(transpose_a or adjoint_a), bool(transpose_b or adjoint_b),
                 _name=name)


def getitem(x, index):
    return build("StridedSlice", distnet.getitem, x, index)


# -- reductions ---------------------------------------------------------------------------

def _axis(axis, reduction_indices):
    if axis is not None and reduction_indices is not None:
        raise ValueError("Cannot specify both 'axis' and 'reduction_indices'")
    ax = axis if axis is not None else reduction_indices
    if isinstance(ax, list):
        ax = tuple(ax)
    return ax


def _keep(keepdims, keep_dims):
    if keepdims is not None and keep_dims is not None:
        raise ValueError("Cannot specify both 'keepdims' and 'keep_dims'")
    return bool(keepdims if keepdims is not None else (keep_dims or False))


def _reducer(op_type, fn):
    def reduce(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None, keep_dims=None):
        return build(op_type, fn, input_tensor, _axis(axis, reduction_indices), _keep(keepdims, keep_dims),
                     _name=name)

    reduce.__name__ = fn.__name__
    reduce.__doc__ = f"TF1's ``tf.{fn.__name__}``: ``axis`` (or ``reduction_indices``), ``keepdims`` (or ``keep_dims``)."
    return reduce


reduce_sum = _reducer("Sum", distnet.reduce_sum)
reduce_mean = _reducer("Mean", distnet.reduce_mean)
reduce_max = _reducer("Max", distnet.reduce_max)
reduce_min = _reducer("Min", distnet.reduce_min)
reduce_any = _reducer("Any", distnet.reduce_any)
reduce_all = _reducer("All", distnet.reduce_all)
reduce_prod = _reducer("Prod", distnet.reduce_prod)
reduce_logsumexp = _reducer("ReduceLogSumExp", distnet.reduce_logsumexp)


def argmax(input, axis=None, name=None, dimension=None, output_type=np.int64):  # noqa: A002
    return build("ArgMax", distnet.argmax, input, axis if axis is not None else dimension, output_type, _name=name)


def argmin(input, axis=None, name=None, dimension=None, output_type=np.int64):  # noqa: A002
    return build("ArgMin", distnet.argmin, input, axis if axis is not None else dimension, output_type, _name=name)


def arg_max(input, dimension, name=None, output_type=np.int64):  # noqa: A002
    """TF1's deprecated ``tf.arg_max(input, dimension)``: :func:`argmax`."""
    return argmax(input, dimension, name=name, output_type=output_type)


def arg_min(input, dimension, name=None, output_type=np.int64):  # noqa: A002
    """TF1's deprecated ``tf.arg_min(input, dimension)``: :func:`argmin`."""
    return argmin(input, dimension, name=name, output_type=output_type)


squared_difference = _binary("squared_difference", "SquaredDifference", distnet.squared_difference)


# -- comparison and selection -------------------------------------------------------------

equal = _binary("equal", "Equal", distnet.equal)
not_equal = _binary("not_equal", "NotEqual", distnet.not_equal)
greater = _binary("greater", "Greater", distnet.greater)
greater_equal = _binary("greater_equal", "GreaterEqual", distnet.greater_equal)
less = _binary("less", "Less", distnet.less)
less_equal = _binary("less_equal", "LessEqual", distnet.less_equal)
logical_and = _binary("logical_and", "LogicalAnd", distnet.logical_and)
logical_or = _binary("logical_or", "LogicalOr", distnet.logical_or)
logical_not = _unary("logical_not", "LogicalNot", distnet.logical_not)


def where(condition, x=None, y=None, name=None):
    """TF1's ``tf.where``: a rank-1 condition picks rows of ``x``/``y``."""
    return build("Select", distnet.where, condition, x, y, _name=name)


def where_v2(condition, x=None, y=None, name=None):
    """``tf.where_v2``: condition, x and y broadcast together."""
    return build("SelectV2", distnet.where_v2, condition, x, y, _name=name)


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    return build("ClipByValue", distnet.clip_by_value, t, clip_value_min, clip_value_max, _name=name)


# -- tf.nn --------------------------------------------------------------------------------

def relu(features, name=None):
    return build("Relu", dnn.relu, features, _name=name)


def relu6(features, name=None):
    return build("Relu6", lambda x: distnet.minimum(dnn.relu(x), 6.0), features, _name=name)


def leaky_relu(features, alpha=0.2, name=None):
    """``features`` where positive, else ``alpha * features`` (``alpha`` a number)."""
    return build("LeakyRelu", dnn.leaky_relu, features, float(alpha), _name=name)


def _softplus(x):
    # TF's kernel: exp(x) far below 0 and x far above (threshold log(eps) + 2 of the dtype), where
    # log(1 + exp(x)) would round; in between the stable max(x, 0) + log(1 + exp(-|x|)).
    low = float(np.log(np.finfo(x.dtype).eps) + 2.0)
    middle = distnet.maximum(x, 0.0) + distnet.log(1.0 + distnet.exp(-distnet.abs(x)))
    return distnet.where_v2(distnet.less(x, low), distnet.exp(distnet.minimum(x, low)),
                            distnet.where_v2(distnet.greater(x, -low), x, middle))


def softplus(features, name=None):
    """``log(1 + exp(x))`` with TF's kernel's cut-offs (``exp(x)`` far below 0, ``x`` far above),
    composed; between them ``log(1 + u)`` stands for TF's ``log1p(u)`` (absolute error ~ the dtype's eps * u)."""
    return build("Softplus", _softplus, features, _name=name)


def _elu(x):
    # exp of min(x, 0): the branch where() does not pick stays finite, so its gradient is 0, not NaN.
    return distnet.where_v2(distnet.greater(x, 0.0), x, distnet.exp(distnet.minimum(x, 0.0)) - 1.0)


def elu(features, name=None):
    """``x`` where positive, else ``exp(x) - 1`` (TF1's ``tf.nn.elu``), composed."""
    return build("Elu", _elu, features, _name=name)


#: TF's SELU constants (Klambauer et al. 2017).
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def selu(features, name=None):
    """``scale * (x if x > 0 else alpha * (exp(x) - 1))`` (TF1's ``tf.nn.selu``), composed."""
    return build("Selu", lambda x: distnet.where_v2(distnet.greater(x, 0.0), x * SELU_SCALE,
                                                    (distnet.exp(distnet.minimum(x, 0.0)) - 1.0)
                                                    * (SELU_ALPHA * SELU_SCALE)), features, _name=name)


def l2_normalize(x, axis=None, epsilon=1e-12, name=None, dim=None):
    """``x / sqrt(max(sum(x**2, axis), epsilon))`` (``dim`` is TF1's older name of ``axis``)."""
    if axis is not None and dim is not None:
        raise ValueError("Cannot specify both 'axis' and 'dim'")
    ax = axis if axis is not None else dim
    return build("L2Normalize", dnn.l2_normalize, x, tuple(ax) if isinstance(ax, list) else ax, epsilon,
                 _name=name)


def top_k(input, k=1, sorted=True, name=None):  # noqa: A002
    """``(values, indices)`` of the ``k`` largest entries of the last axis (a namedtuple, as TF1)."""
    from distnet.compat.v1.multi_output import build_outputs

    values, indices = build_outputs("TopKV2", lambda x, kk: dnn.top_k(x, int(np.asarray(
        kk.data if isinstance(kk, EagerTensor) else kk)), sorted), 2, input, k, _name=name)
    return TopKV2(values, indices)


#: ``top_k``'s result: ``values`` and ``indices`` (TF1's namedtuple).
TopKV2 = collections.namedtuple("TopKV2", ["values", "indices"])


sigmoid = _unary("sigmoid", "Sigmoid", dnn.sigmoid)
tanh = _unary("tanh", "Tanh", dnn.tanh)


def softmax(logits, axis=None, name=None, dim=None):
    ax = -1 if axis is None and dim is None else (axis if axis is not None else dim)
    return build("Softmax", dnn.softmax, logits, ax, _name=name)


def log_softmax(logits, axis=None, name=None, dim=None):
    ax = -1 if axis is None and dim is None else (axis if axis is not None else dim)
    return build("LogSoftmax", dnn.log_softmax, logits, ax, _name=name)


def _sentinel_check(op_name: str, sentinel) -> None:
    if sentinel is not None:
        raise ValueError(f"Only call `{op_name}` with named arguments (labels=..., logits=..., ...)")


def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, dim=-1, name=None, axis=None):
    """TF1's version: no gradient flows into ``labels`` (``_v2`` lets it through)."""
    _sentinel_check("softmax_cross_entropy_with_logits", _sentinel)
    ax = dim if axis is None else axis
    return build("SoftmaxCrossEntropyWithLogits",
                 lambda lab, lg: dnn.softmax_cross_entropy_with_logits(labels=distnet.stop_gradient(lab), logits=lg,
                                                                       axis=ax), labels, logits, _name=name)


def softmax_cross_entropy_with_logits_v2(_sentinel=None, labels=None, logits=None, axis=None, name=None, dim=None):
    _sentinel_check("softmax_cross_entropy_with_logits_v2", _sentinel)
    ax = -1 if axis is None and dim is None else (axis if axis is not None else dim)
    return build("SoftmaxCrossEntropyWithLogits",
                 lambda lab, lg: dnn.softmax_cross_entropy_with_logits(labels=lab, logits=lg, axis=ax),
                 labels, logits, _name=name)


def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    _sentinel_check("sparse_softmax_cross_entropy_with_logits", _sentinel)
    return build("SparseSoftmaxCrossEntropyWithLogits",
                 lambda lab, lg: dnn.sparse_softmax_cross_entropy_with_logits(labels=lab, logits=lg),
                 labels, logits, _name=name)


def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """``max(x, 0) - x * z + log(1 + exp(-|x|))`` (TF1's stable form), composed from distnet ops."""
    _sentinel_check("sigmoid_cross_entropy_with_logits", _sentinel)

    def fn(z, x):
        return distnet.maximum(x, 0.0) - x * z + distnet.log(1.0 + distnet.exp(-distnet.abs(x)))

    return build("SigmoidCrossEntropyWithLogits", fn, labels, logits, _name=name)


def l2_loss(t, name=None):
    return build("L2Loss", dnn.l2_loss, t, _name=name)


def bias_add(value, bias, data_format=None, name=None):
    return build("BiasAdd", dnn.bias_add, value, bias, data_format, _name=name)


def conv2d(input, filter=None, strides=None, padding=None, use_cudnn_on_gpu=True, data_format="NHWC",  # noqa: A002
           dilations=None, name=None, filters=None):
    w = filter if filter is not None else filters
    return build("Conv2D", dnn.conv2d, input, w, strides, padding, data_format or "NHWC", dilations, _name=name)


def max_pool(value, ksize, strides, padding, data_format="NHWC", name=None, input=None):  # noqa: A002
    return build("MaxPool", dnn.max_pool, value if input is None else input, ksize, strides, padding,
                 data_format or "NHWC", _name=name)


def in_top_k(predictions, targets, k, name=None):
    """Whether each target class is among the ``k`` largest predictions (a bool per row; not differentiable).

    TF1's tie rule: a target is in the top k when fewer than ``k`` classes score strictly higher.
    """
    def fn(p, t):
        scores, tgt = p.data, np.asarray(t.data).astype(np.int64)
        own = np.take_along_axis(scores, tgt[:, None], axis=1)
        higher = np.sum(scores > own, axis=1)
        ok = (higher < int(k)) & np.all(np.isfinite(scores), axis=1)
        return EagerTensor._from_op(ok, None, ())

    return build("InTopKV2", fn, predictions, targets, _name=name)


def dropout(x, keep_prob=None, noise_shape=None, seed=None, name=None, rate=None):
    """TF1's ``tf.nn.dropout``: the second argument is ``keep_prob`` (a number or a tensor).

    The mask comes from distnet's counter-based generator keyed by each
    sample's index in the *global* batch (see :func:`distnet.compat.v1.distributed.shard`),
    so a data-parallel run drops the same elements as one process.
    """
    from distnet.compat.v1.array_ops import get_seed

    if (keep_prob is None) == (rate is None):
        raise ValueError("dropout: give exactly one of keep_prob (TF1) and rate")
    x = convert_to_tensor(x)
    graph_seed, op_seed = get_seed(seed)
    prob = convert_to_tensor(keep_prob if keep_prob is not None else rate)

    def compute(run, values):
        xv, pv = values
        p = float(pv.data)
        kp = p if keep_prob is not None else 1.0 - p
        if run is None or kp >= 1.0:
            return distnet.nn.dropout(xv, keep_prob=1.0, rng=np.random.default_rng(0))
        state = run.session.resource(("dropout", t.op),
                                     lambda: _DropoutState(graph_seed, op_seed, run.session.graph._comm))
        offset = run.session.graph._shard_offset(run) if xv.ndim else 0
        keys = dnn.dropout_sample_keys(state.seed, state.calls, 0, np.arange(xv.shape[0]) + offset)
        state.calls += 1
        return dnn.dropout(xv, keep_prob=kp, sample_keys=keys, noise_shape=noise_shape)

    if x.dtype is not None and x.dtype.kind != "f":
        raise InvalidArgumentError(f"dropout: x: Expect: a floating tensor Actual: {x.dtype.name}")
    t = leaf("Dropout", compute, x.dtype, x.shape, x._probes, name=name or "dropout", inputs=[x, prob])
    return t


class _DropoutState:
    """A dropout op's seed and how many times it ran in this session (the key's step)."""

    def __init__(self, graph_seed, op_seed, comm):
        if graph_seed is None:
            self.seed = int(np.random.default_rng().integers(2 ** 63))
            if comm is not None and comm.size > 1:
                # Every rank must drop the same elements of a sample: rank 0's draw.
                self.seed = int(comm.bcast_object(self.seed, root=0))
        else:
            self.seed = (int(graph_seed) << 32 | int(op_seed)) & (2 ** 64 - 1)
        self.calls = 0
