"""Keras-style layers (one module each): Dense, Conv2D, MaxPool2D, Flatten, Dropout."""
from distnet.layers.base import Layer, get_activation  # noqa: F401
from distnet.layers.conv2d import Conv2D  # noqa: F401
from distnet.layers.dense import Dense  # noqa: F401
from distnet.layers.dropout import Dropout  # noqa: F401
from distnet.layers.flatten import Flatten  # noqa: F401
from distnet.layers.max_pool2d import MaxPool2D, MaxPooling2D  # noqa: F401

__all__ = ["Layer", "Dense", "Conv2D", "MaxPool2D", "MaxPooling2D", "Flatten", "Dropout", "get_activation"]
