"""Neural-network ops (TF's ``tf.nn``): activations, losses, dropout, conv, pooling,
batch normalization, an LSTM step (TF1's cells) and whole LSTM and GRU sequences (Keras' layers).

Each op lives in its own module; all are exported here, so
``distnet.nn.conv2d`` is :func:`distnet.nn.conv.conv2d`.
"""
from distnet.nn.activations import leaky_relu, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401
from distnet.nn.avg_pool import avg_pool  # noqa: F401
from distnet.nn.batch_norm import batch_norm_train, batch_normalization, moments  # noqa: F401
from distnet.nn.bias_add import bias_add  # noqa: F401
from distnet.nn.bias_add_relu import bias_add_relu  # noqa: F401
from distnet.nn.conv import conv2d  # noqa: F401
from distnet.nn.conv_transpose import conv2d_transpose  # noqa: F401
from distnet.nn.cross_entropy import (  # noqa: F401
    softmax_cross_entropy_with_logits, sparse_softmax_cross_entropy_with_logits,
)
from distnet.nn.dropout import dropout, dropout_sample_keys  # noqa: F401
from distnet.nn.gru import gru  # noqa: F401
from distnet.nn.l2_loss import l2_loss  # noqa: F401
from distnet.nn.l2_normalize import l2_normalize  # noqa: F401
from distnet.nn.lstm import lstm  # noqa: F401
from distnet.nn.lstm_step import lstm_step  # noqa: F401
from distnet.nn.pooling import max_pool  # noqa: F401
from distnet.nn.top_k import top_k  # noqa: F401

__all__ = [
    "avg_pool", "batch_norm_train", "batch_normalization", "bias_add", "bias_add_relu", "conv2d",
    "conv2d_transpose", "dropout", "dropout_sample_keys", "gru", "l2_loss", "l2_normalize", "leaky_relu",
    "log_softmax", "lstm", "lstm_step", "max_pool", "moments", "relu", "sigmoid", "softmax",
    "softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits", "tanh", "top_k",
]
