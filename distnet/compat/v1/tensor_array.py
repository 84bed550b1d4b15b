"""TF1's ``tf.TensorArray`` in graph mode: a list of tensors written one index
at a time, usually inside ``tf.while_loop`` (an RNN unrolled by hand).

A TensorArray is immutable, as in TF1: ``write`` returns a new TensorArray
whose ``flow`` tensor holds the new list.  In a session a flow's value is a
tuple of distnet tensors (None where nothing was written), so ``stack()`` is
``distnet.stack`` of the written values and gradients reach every written
value.  Static shapes come from ``element_shape`` or, with ``infer_shape``
(the default), from the first value written.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import distnet
from distnet.compat.v1.graph import (
    Tensor, TensorShape, as_dtype, as_shape, convert_to_tensor, leaf, no_output, probes_for,
)
from distnet.errors import InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor


def _index(v: Any) -> int:
    return int(np.asarray(v.data if isinstance(v, EagerTensor) else v).reshape(()))


class TensorArray:
    """TF1's ``tf.TensorArray(dtype, size=0, dynamic_size=False, element_shape=None, ...)``.

    Example:
      >>> ta = tf.TensorArray(tf.float32, size=3)
      >>> _, ta = tf.while_loop(lambda i, ta: i < 3, lambda i, ta: (i + 1, ta.write(i, x * i)), [0, ta])
      >>> out = ta.stack()
    """

    def __init__(self, dtype: Any, size: Any = None, dynamic_size: bool = False, clear_after_read: Any = None,
                 tensor_array_name: str | None = None, handle: Any = None, flow: Tensor | None = None,
                 infer_shape: bool = True, element_shape: Any = None, colocate_with_first_write_call: bool = True,
                 name: str | None = None):
        self._dtype = as_dtype(dtype)
        self._dynamic_size = bool(dynamic_size)
        self._infer_shape = bool(infer_shape)
        self._element_shape = as_shape(element_shape) if element_shape is not None else TensorShape(None)
        if flow is not None:
            self.flow = flow
            return
        if size is None and not dynamic_size:
            raise ValueError("TensorArray: Expect: size= (or dynamic_size=True) Actual: neither")
        size_t = convert_to_tensor(0 if size is None else size)

        def compute(run, values):
            return (None,) * _index(values[0])

        self.flow = leaf("TensorArrayV3", compute, None, TensorShape(None), None, name=name or "TensorArray",
                         inputs=[size_t])

    # -- what TF1 exposes --------------------------------------------------------------------
    @property
    def dtype(self):
        return self._dtype

    @property
    def element_shape(self) -> TensorShape:
        return self._element_shape

    def _new(self, flow: Tensor, element_shape: TensorShape | None = None) -> "TensorArray":
        out = TensorArray.__new__(TensorArray)
        out._dtype, out._dynamic_size, out._infer_shape = self._dtype, self._dynamic_size, self._infer_shape
        out._element_shape = self._element_shape if element_shape is None else element_shape
        out.flow = flow
        return out

    def _merge_shape(self, shape: TensorShape) -> TensorShape:
        if not self._infer_shape:
            return self._element_shape
        old = self._element_shape
        if old.dims is None:
            return shape
        if not old.is_compatible_with(shape):
            raise ValueError(f"TensorArray: Inconsistent shapes: saw {shape} but expected {old} "
                             "(and infer_shape=True)")
        return old

    def write(self, index: Any, value: Any, name: str | None = None) -> "TensorArray":
        """A TensorArray with ``value`` at ``index``."""
        value = convert_to_tensor(value, dtype=self._dtype)
        index = convert_to_tensor(index)
        dynamic = self._dynamic_size

        def compute(run, values):
            items, i, v = values
            i = _index(i)
            items = list(items)
            if i < 0 or (i >= len(items) and not dynamic):
                raise InvalidArgumentError(f"TensorArray.write: index {i} is out of range; Expect: an index in "
                                           f"[0, {len(items)}) (or dynamic_size=True)")
            items.extend([None] * (i + 1 - len(items)))
            if items[i] is not None:
                raise InvalidArgumentError(f"TensorArray.write: Could not write to TensorArray index {i} because it "
                                           "has already been written to")
            items[i] = v
            return tuple(items)

        flow = leaf("TensorArrayWriteV3", compute, None, TensorShape(None), None, name=name or "TensorArrayWrite",
                    inputs=[self.flow, index, value])
        return self._new(flow, self._merge_shape(value.shape))

    def unstack(self, value: Any, name: str | None = None) -> "TensorArray":
        """A TensorArray holding the slices of ``value`` along its first axis."""
        value = convert_to_tensor(value, dtype=self._dtype)

        def compute(run, values):
            _, v = values
            return tuple(distnet.getitem(v, i) for i in range(v.shape[0]))

        flow = leaf("TensorArrayScatterV3", compute, None, TensorShape(None), None, name=name or "TensorArrayUnstack",
                    inputs=[self.flow, value])
        return self._new(flow, self._merge_shape(value.shape[1:]))

    def _element(self, run_items: tuple, i: int, what: str):
        if not 0 <= i < len(run_items):
            raise InvalidArgumentError(f"TensorArray.{what}: index {i} is out of range; Expect: an index in "
                                       f"[0, {len(run_items)})")
        v = run_items[i]
        if v is None:
            raise InvalidArgumentError(f"TensorArray.{what}: Could not read from TensorArray index {i} because it "
                                       "has not yet been written to")
        return v

    def read(self, index: Any, name: str | None = None) -> Tensor:
        """The value at ``index``."""
        index = convert_to_tensor(index)
        shape = self._element_shape
        probes = probes_for(shape, self._dtype) if shape.dims is not None else None
        return leaf("TensorArrayReadV3", lambda run, values: self._element(values[0], _index(values[1]), "read"),
                    self._dtype, shape, probes, name=name or "TensorArrayRead", inputs=[self.flow, index])

    def stack(self, name: str | None = None) -> Tensor:
        """Every value, stacked on a new first axis."""
        def compute(run, values):
            items = values[0]
            return distnet.stack([self._element(items, i, "stack") for i in range(len(items))], 0)

        shape = TensorShape(None) if self._element_shape.dims is None else \
            TensorShape([None] + [d.value for d in self._element_shape.dims])
        probes = probes_for(shape, self._dtype) if shape.dims is not None else None
        return leaf("TensorArrayGatherV3", compute, self._dtype, shape, probes, name=name or "TensorArrayStack",
                    inputs=[self.flow])

    def gather(self, indices: Any, name: str | None = None) -> Tensor:
        """The values at ``indices``, stacked."""
        indices = convert_to_tensor(indices)

        def compute(run, values):
            items, idx = values
            return distnet.stack([self._element(items, int(i), "gather")
                                  for i in np.asarray(idx.data).reshape(-1)], 0)

        shape = TensorShape(None) if self._element_shape.dims is None else \
            TensorShape([None] + [d.value for d in self._element_shape.dims])
        probes = probes_for(shape, self._dtype) if shape.dims is not None else None
        return leaf("TensorArrayGatherV3", compute, self._dtype, shape, probes, name=name or "TensorArrayGather",
                    inputs=[self.flow, indices])

    def concat(self, name: str | None = None) -> Tensor:
        """Every value, joined along its first axis."""
        def compute(run, values):
            items = values[0]
            return distnet.concat([self._element(items, i, "concat") for i in range(len(items))], 0)

        shape = TensorShape(None) if self._element_shape.dims is None else \
            TensorShape([None] + [d.value for d in self._element_shape.dims[1:]])
        probes = probes_for(shape, self._dtype) if shape.dims is not None else None
        return leaf("TensorArrayConcatV3", compute, self._dtype, shape, probes, name=name or "TensorArrayConcat",
                    inputs=[self.flow])

    def size(self, name: str | None = None) -> Tensor:
        """The number of slots (an int32 scalar)."""
        return leaf("TensorArraySizeV3", lambda run, values: distnet.constant(np.int32(len(values[0]))), np.int32,
                    TensorShape([]), probes_for(TensorShape([]), np.int32), name=name or "TensorArraySize",
                    inputs=[self.flow])

    def identity(self) -> "TensorArray":
        return self._new(self.flow)

    def close(self, name: str | None = None):
        """An op that does nothing (the list is freed with its run)."""
        return no_output("TensorArrayCloseV3", lambda run, values: None, [self.flow], name=name or "TensorArrayClose")
