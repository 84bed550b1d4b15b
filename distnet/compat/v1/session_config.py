"""``tf.ConfigProto`` and ``tf.GPUOptions``: a session's configuration,
accepted and recorded.

TF1 programs build one to pass to ``tf.Session(config=...)`` or
``MonitoredTrainingSession(config=...)`` -- Horovod's examples set
``config.gpu_options.visible_device_list = str(hvd.local_rank())``.  distnet
has no TF runtime and no GPU, so a session ignores it (docs/tf1.md); the
objects keep TF1's field names and refuse any other, as the protocol buffers
do, so a misspelt field is still an error.
"""
from __future__ import annotations

from typing import Any


class _Message:
    """A TF1 protocol-buffer message: known fields with defaults, keyword construction."""

    _FIELDS: dict = {}

    def __init__(self, **fields: Any):
        for name, default in self._FIELDS.items():
            object.__setattr__(self, name, default() if callable(default) else default)
        for name, value in fields.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._FIELDS:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; Expect: one of "
                                 f"{', '.join(sorted(self._FIELDS))}")
        object.__setattr__(self, name, value)

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and all(getattr(self, k) == getattr(other, k) for k in self._FIELDS)

    __hash__ = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._FIELDS
                          if getattr(self, k) != (self._FIELDS[k]() if callable(self._FIELDS[k]) else self._FIELDS[k]))
        return f"{type(self).__name__}({shown})"


class GPUOptions(_Message):
    """TF1's ``tf.GPUOptions`` (there is no GPU: recorded only)."""

    _FIELDS = {"allow_growth": False, "per_process_gpu_memory_fraction": 0.0, "visible_device_list": "",
               "allocator_type": "", "force_gpu_compatible": False}


class GraphOptions(_Message):
    """TF1's ``tf.GraphOptions`` (recorded only)."""

    _FIELDS = {"enable_bfloat16_sendrecv": False, "infer_shapes": False, "place_pruned_graph": False,
               "optimizer_options": None, "rewrite_options": None}


class ConfigProto(_Message):
    """TF1's ``tf.ConfigProto`` (recorded only: sessions ignore it)."""

    _FIELDS = {"allow_soft_placement": False, "log_device_placement": False, "intra_op_parallelism_threads": 0,
               "inter_op_parallelism_threads": 0, "use_per_session_threads": False, "device_count": dict,
               "gpu_options": GPUOptions, "graph_options": GraphOptions, "operation_timeout_in_ms": 0,
               "isolate_session_state": False}
