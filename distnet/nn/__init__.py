"""Neural-network ops (TF's ``tf.nn``): activations, losses, dropout, conv, pooling,
batch normalization.

Each op lives in its own module; all are exported here, so
``distnet.nn.conv2d`` is :func:`distnet.nn.conv.conv2d`.
"""
from distnet.nn.activations import log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401
from distnet.nn.avg_pool import avg_pool  # noqa: F401
from distnet.nn.batch_norm import batch_norm_train, batch_normalization, moments  # noqa: F401
from distnet.nn.bias_add import bias_add  # noqa: F401
from distnet.nn.conv import conv2d  # noqa: F401
from distnet.nn.conv_transpose import conv2d_transpose  # noqa: F401
from distnet.nn.cross_entropy import (  # noqa: F401
    softmax_cross_entropy_with_logits, sparse_softmax_cross_entropy_with_logits,
)
from distnet.nn.dropout import dropout, dropout_sample_keys  # noqa: F401
from distnet.nn.l2_loss import l2_loss  # noqa: F401
from distnet.nn.pooling import max_pool  # noqa: F401

__all__ = [
    "avg_pool", "batch_norm_train", "batch_normalization", "bias_add", "conv2d", "conv2d_transpose",
    "dropout", "dropout_sample_keys", "l2_loss", "log_softmax", "max_pool", "moments",
    "relu", "sigmoid", "softmax", "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits", "tanh",
]
