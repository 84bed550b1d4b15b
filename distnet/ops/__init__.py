"""Math ops on tensors, grouped by kind (one module each).

Everything here is also exported at the top level (``distnet.matmul``), as
TensorFlow does.
"""
from distnet.ops.arithmetic import add, multiply, negative, subtract  # noqa: F401
from distnet.ops.reduction import reduce_sum  # noqa: F401
from distnet.ops.shape import reshape  # noqa: F401
