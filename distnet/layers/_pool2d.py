"""What ``MaxPool2D`` and ``AvgPool2D`` share: window options, the output shape, the call."""
from __future__ import annotations

from typing import Optional

from distnet.errors import ShapeError
from distnet.layers.base import Layer, check_padding, positive_pair, window_out
from distnet.tensor import Tensor


class _Pool2D(Layer):
    """A pooling layer over 2-D windows of NHWC inputs; ``pool_op`` names its ``distnet.nn`` function."""

    pool_op = ""

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", name: Optional[str] = None):
        super().__init__(name=name)
        kind = type(self).__name__
        self.pool_size = positive_pair(pool_size, "pool_size", kind)
        self.strides = self.pool_size if strides is None else positive_pair(strides, "strides", kind)
        self.padding = check_padding(padding, kind)

    def compute_output_shape(self, input_shape):
        kind = type(self).__name__
        if len(input_shape) != 3:
            raise ShapeError(f"{kind} {self.name!r}: expects NHWC inputs [batch, height, width, channels]; "
                             f"Actual: per-sample shape {tuple(input_shape)}")
        h, w, c = input_shape
        oh = window_out(h, self.pool_size[0], self.strides[0], self.padding)
        ow = window_out(w, self.pool_size[1], self.strides[1], self.padding)
        if oh <= 0 or ow <= 0:
            raise ShapeError(f"{kind} {self.name!r}: pool {self.pool_size} is larger than the input {(h, w)}")
        return (oh, ow, c)

    def call(self, x: Tensor, training: bool = False, rng=None, sample_keys=None) -> Tensor:
        import distnet.nn as dnn  # distnet.nn imports the layers package's neighbours: look it up when called

        return getattr(dnn, self.pool_op)(x, ksize=self.pool_size, strides=self.strides, padding=self.padding)
