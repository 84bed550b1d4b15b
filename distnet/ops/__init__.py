"""Math ops on tensors, grouped by kind (one module each).

Everything in ``__all__`` is also exported at the top level
(``distnet.matmul``), as TensorFlow does.
"""
from distnet.ops.arithmetic import (
    abs, add, add_n, divide, exp, log, maximum, minimum, multiply, negative, pow, sign, sqrt, square,
    squared_difference, subtract,
)
from distnet.ops.comparison import (
    argmax, argmin, clip_by_value, equal, greater, greater_equal, less, less_equal,
    logical_and, logical_not, logical_or, not_equal, where, where_v2,
)
from distnet.ops.creation import fill, one_hot, ones, ones_like, zeros, zeros_like
from distnet.ops.linalg import matmul
from distnet.ops.reduction import (
    reduce_all, reduce_any, reduce_logsumexp, reduce_max, reduce_mean, reduce_min, reduce_prod, reduce_sum,
)
from distnet.ops.shape import (
    IndexOutOfRangeError, cast, concat, expand_dims, gather, gather_nd, getitem, reshape, split, squeeze, stack,
    stop_gradient, tile, transpose,
)

__all__ = [
    # arithmetic
    "abs", "add", "add_n", "divide", "exp", "log", "maximum", "minimum", "multiply", "negative", "pow",
    "sign", "sqrt", "square", "squared_difference", "subtract",
    # creation
    "fill", "one_hot", "ones", "ones_like", "zeros", "zeros_like",
    # linalg
    "matmul",
    # reductions
    "reduce_all", "reduce_any", "reduce_logsumexp", "reduce_max", "reduce_mean", "reduce_min", "reduce_prod",
    "reduce_sum",
    # shape
    "cast", "concat", "expand_dims", "gather", "gather_nd", "getitem", "reshape", "split", "squeeze", "stack",
    "stop_gradient", "tile", "transpose", "IndexOutOfRangeError",
    # comparison and selection
    "argmax", "argmin", "clip_by_value", "equal", "greater", "greater_equal", "less", "less_equal",
    "logical_and", "logical_not", "logical_or", "not_equal", "where", "where_v2",
]
