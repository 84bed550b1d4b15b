"""``tf.summary`` in graph mode, written with distnet's TensorBoard writer
(:class:`distnet.tensorboard.TensorBoardWriter`, tensorboardX).

``tf.summary.scalar(name, t)`` and ``histogram(name, t)`` are ops whose value,
when a session runs them, is a :class:`Summary` (the tags and values; TF1's
is a serialized protocol buffer); ``merge`` / ``merge_all`` join them;
``tf.summary.FileWriter(logdir).add_summary(summary, global_step)`` writes
them to an event file in ``logdir``.  Under data parallelism only rank 0
writes.  Graph visualisation (``FileWriter(logdir, sess.graph)``,
``add_graph``) is accepted and not written.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.compat.v1.graph import GraphKeys, TensorShape, convert_to_tensor, get_default_graph, leaf


class Summary:
    """What a summary op gives in ``sess.run``: ``[(kind, tag, value)]``."""

    def __init__(self, values: list):
        self.values = values

    def __repr__(self) -> str:
        return f"<tf.summary {[(k, t) for k, t, _ in self.values]}>"


def _summary_op(kind: str, name: str, tensor: Any, collections: Any, family: str | None):
    g = get_default_graph()
    t = convert_to_tensor(tensor)
    scope = g.get_name_scope()
    tag = "/".join(p for p in (family, scope, name) if p)
    if kind == "scalar" and t.shape.ndims not in (None, 0) and t.shape.num_elements() not in (None, 1):
        raise ValueError(f"tf.summary.scalar {name!r}: Expect: a scalar tensor Actual: shape {t.shape}")

    def compute(run, values):
        arr = np.asarray(values[0].data)
        return Summary([(kind, tag, float(arr.reshape(())) if kind == "scalar" else np.array(arr, copy=True))])

    op_type = "ScalarSummary" if kind == "scalar" else "HistogramSummary"
    out = leaf(op_type, compute, None, TensorShape([]), None, name=name, inputs=[t])
    for c in (collections if collections is not None else [GraphKeys.SUMMARIES]):
        g.add_to_collection(c, out)
    return out


def scalar(name: str, tensor: Any, collections: Any = None, family: str | None = None):
    """A summary op holding the value of the scalar ``tensor`` under ``name``."""
    return _summary_op("scalar", name, tensor, collections, family)


def histogram(name: str, values: Any, collections: Any = None, family: str | None = None):
    """A summary op holding the distribution of ``values`` under ``name``."""
    return _summary_op("histogram", name, values, collections, family)


def merge(inputs, collections: Any = None, name: str | None = None):
    """One summary op holding every summary of ``inputs``."""
    inputs = list(inputs)

    def compute(run, values):
        return Summary([v for s in values for v in s.values])

    out = leaf("MergeSummary", compute, None, TensorShape([]), None, name=name or "Merge/MergeSummary", inputs=inputs)
    for c in (collections or []):
        get_default_graph().add_to_collection(c, out)
    return out


def merge_all(key: str = GraphKeys.SUMMARIES, scope: str | None = None, name: str | None = None):
    """``merge`` of the graph's ``key`` collection, or None when it is empty (TF1)."""
    found = get_default_graph().get_collection(key, scope)
    return merge(found, name=name) if found else None


class FileWriter:
    """TF1's ``tf.summary.FileWriter(logdir, graph=None)``: event files in ``logdir``."""

    def __init__(self, logdir: str, graph: Any = None, max_queue: int = 10, flush_secs: int = 120,
                 filename_suffix: str | None = None, session: Any = None):
        from distnet.tensorboard import TensorBoardWriter

        comm = get_default_graph()._comm
        self._writes = comm is None or comm.size == 1 or comm.rank == 0
        self._writer = TensorBoardWriter(logdir, flush_secs=flush_secs)
        self.logdir = logdir

    def add_summary(self, summary: Any, global_step: Any = None) -> None:
        """Write the values of a :class:`Summary` (what ``sess.run`` of a summary op gave)."""
        if not isinstance(summary, Summary):
            raise TypeError(f"add_summary: Expect: the value of a summary op from sess.run "
                            f"Actual: {type(summary).__name__}")
        if not self._writes:
            return
        step = 0 if global_step is None else int(global_step)
        for kind, tag, value in summary.values:
            if kind == "scalar":
                self._writer.add_scalar(tag, value, step)
            else:
                self._writer.add_histogram(tag, value, step)

    def add_graph(self, graph: Any, global_step: Any = None) -> None:
        """Accepted; the graph is not drawn (see the module doc)."""

    def add_run_metadata(self, run_metadata: Any, tag: str, global_step: Any = None) -> None:
        """Accepted; nothing is written (``RunMetadata`` holds no trace, see docs/tf1.md)."""

    def add_session_log(self, session_log: Any, global_step: Any = None) -> None:
        """Accepted; nothing is written."""

    def flush(self) -> None:
        if self._writes:
            self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "FileWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
