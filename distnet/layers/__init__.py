"""Keras-style layers (one module each): Dense, Conv2D, Conv2DTranspose, MaxPool2D, AvgPool2D,
GlobalAvgPool2D, BatchNorm, Flatten, Reshape, Dropout, Embedding, LSTM, GRU."""
from distnet.layers.base import Layer, get_activation  # noqa: F401
from distnet.layers.conv2d import Conv2D  # noqa: F401
from distnet.layers.dense import Dense  # noqa: F401
from distnet.layers.dropout import Dropout  # noqa: F401
from distnet.layers.flatten import Flatten  # noqa: F401
from distnet.layers.max_pool2d import MaxPool2D, MaxPooling2D  # noqa: F401
# Added after the first five, so the registry (and docs/jobs.md) keeps their order first.
from distnet.layers.avg_pool2d import AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D  # noqa: F401
from distnet.layers.batch_norm import BatchNorm, BatchNormalization, synchronize_batch_norm  # noqa: F401
from distnet.layers.conv2d_transpose import Conv2DTranspose  # noqa: F401
from distnet.layers.reshape import Reshape  # noqa: F401
from distnet.layers.embedding import Embedding  # noqa: F401
from distnet.layers.lstm import LSTM  # noqa: F401
from distnet.layers.gru import GRU  # noqa: F401

__all__ = ["Layer", "Dense", "Conv2D", "Conv2DTranspose", "MaxPool2D", "MaxPooling2D", "AvgPool2D",
           "AveragePooling2D", "GlobalAvgPool2D", "GlobalAveragePooling2D", "BatchNorm", "BatchNormalization",
           "Flatten", "Reshape", "Dropout", "Embedding", "LSTM", "GRU", "get_activation"]
