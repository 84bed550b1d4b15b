"""``tf.summary`` in graph mode, written with distnet's TensorBoard writer
(:class:`distnet.training.tensorboard.TensorBoardWriter`, tensorboardX).

``tf.summary.scalar(name, t)``, ``histogram``, ``image``, ``text``,
``audio`` and ``tensor_summary`` are ops whose value, when a session runs
them, is a :class:`Summary` (the tags and values; TF1's is a serialized
protocol buffer); ``merge`` / ``merge_all`` join them;
``tf.summary.FileWriter(logdir).add_summary(summary, global_step)`` writes
them to an event file in ``logdir``.  A summary's tag is its op's unique
name, as in TF1.  Under data parallelism only rank 0 writes, and a scalar
of fed data is the global value (see :func:`scalar`).  Graph visualisation
(``FileWriter(logdir, sess.graph)``, ``add_graph``) is accepted and not
written.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.compat.v1.global_values import reducing_comm, sample_count, sum_over_ranks
from distnet.compat.v1.graph import (
    GraphKeys, TensorShape, convert_to_tensor, get_default_graph, leaf, reads_fed_data,
)


class Summary:
    """What a summary op gives in ``sess.run``: ``[(kind, tag, value)]``."""

    def __init__(self, values: list):
        self.values = values

    def __repr__(self) -> str:
        return f"<tf.summary {[(k, t) for k, t, _ in self.values]}>"


def _add(g, out, collections) -> None:
    for c in (collections if collections is not None else [GraphKeys.SUMMARIES]):
        g.add_to_collection(c, out)


def _summary_leaf(g, op_type: str, name: str, inputs: list, collections: Any, family: str | None, values_of):
    """A summary op; its tag is the op's unique name (TF1: a second ``loss`` in a scope is ``loss_1``),
    after ``family/`` if given.  ``values_of(tag, run, input values)`` gives ``[(kind, tag, value)]``."""
    named = {}

    def compute(run, values):
        return Summary(values_of(named["tag"], run, values))

    out = leaf(op_type, compute, None, TensorShape([]), None, name=name, inputs=inputs)
    named["tag"] = f"{family}/{out.op.name}" if family else out.op.name
    _add(g, out, collections)
    return out


def _global_scalar(run, graph, value: float) -> float:
    """The mean over ranks of ``value`` weighted by each rank's sample count, when this
    run's data is a rank's part of a global batch; ``value`` otherwise."""
    comm = reducing_comm(run, graph)
    if comm is None:
        return value
    count = sample_count(run, graph)
    total, n = sum_over_ranks(comm, [np.array([value * count, count])])[0]
    return float(total / n) if n > 0 else value


def _summary_op(kind: str, name: str, tensor: Any, collections: Any, family: str | None):
    g = get_default_graph()
    t = convert_to_tensor(tensor)
    if kind == "scalar" and t.shape.ndims not in (None, 0) and t.shape.num_elements() not in (None, 1):
        raise ValueError(f"tf.summary.scalar {name!r}: Expect: a scalar tensor Actual: shape {t.shape}")
    data_dependent = kind == "scalar" and reads_fed_data(t)

    def values_of(tag, run, values):
        arr = np.asarray(values[0].data)
        if kind != "scalar":
            return [(kind, tag, np.array(arr, copy=True))]
        value = float(arr.reshape(()))
        if data_dependent and run is not None:
            value = _global_scalar(run, g, value)
        return [(kind, tag, value)]

    op_type = "ScalarSummary" if kind == "scalar" else "HistogramSummary"
    return _summary_leaf(g, op_type, name, [t], collections, family, values_of)


def scalar(name: str, tensor: Any, collections: Any = None, family: str | None = None):
    """A summary op holding the value of the scalar ``tensor`` under ``name``.

    Under data parallelism a scalar that depends on fed data (a loss, an
    accuracy of the batch) is the global one: the mean over ranks weighted
    by each rank's sample count, when the run's feed is a shard (every rank
    must then run the summary op in the same step; only rank 0 writes).
    A scalar of the weights only (a learning rate, a regularization term)
    is the same on every rank and is taken as it is."""
    return _summary_op("scalar", name, tensor, collections, family)


def histogram(name: str, values: Any, collections: Any = None, family: str | None = None):
    """A summary op holding the distribution of ``values`` under ``name`` (this rank's values)."""
    return _summary_op("histogram", name, values, collections, family)


def _image_uint8(img: np.ndarray) -> np.ndarray:
    """TF1's image summary conversion of one ``[h, w, c]`` image to uint8.

    Floats are normalized per image: all >= 0: scaled so the largest is 255;
    any < 0: scaled so the largest magnitude is 127 and shifted by 128; then
    truncated.  Non-finite pixels get TF1's bad colour (red)."""
    if img.dtype == np.uint8:
        return img
    x = np.asarray(img, np.float32)
    finite = np.isfinite(x).all(axis=-1)
    good = x[finite]
    lo, hi = (float(good.min()), float(good.max())) if good.size else (0.0, 0.0)
    if lo < 0:
        top = max(abs(lo), abs(hi))
        scale, offset = (0.0 if top < 1e-6 else 127.0 / top), 128.0
    else:
        scale, offset = (0.0 if hi < 1e-6 else 255.0 / hi), 0.0
    with np.errstate(invalid="ignore"):
        out = (x * np.float32(scale) + np.float32(offset))
    out = np.where(finite[..., None], out, 0).astype(np.uint8)
    bad = np.array([255, 0, 0, 255], np.uint8)[: x.shape[-1]]
    out[~finite] = bad
    return out


def image(name: str, tensor: Any, max_outputs: int = 3, collections: Any = None, family: str | None = None):
    """A summary op holding the first ``max_outputs`` images of ``tensor``
    (``[batch, height, width, channels]``, channels 1, 3 or 4; uint8, or
    floats normalized as TF1 does), tagged ``name/image/0``, ... (``name/image``
    when ``max_outputs`` is 1)."""
    g = get_default_graph()
    t = convert_to_tensor(tensor)
    if t.shape.ndims not in (None, 4) or (t.shape.ndims == 4 and t.shape.dims[3].value not in (None, 1, 3, 4)):
        raise ValueError(f"tf.summary.image {name!r}: Expect: a tensor [batch, height, width, 1|3|4] "
                         f"Actual: shape {t.shape}")
    if t.dtype is not None and t.dtype != np.uint8 and t.dtype.kind != "f":
        raise TypeError(f"tf.summary.image {name!r}: Expect: uint8 or float images Actual: {t.dtype.name}")
    if int(max_outputs) < 1:
        raise ValueError(f"tf.summary.image {name!r}: Expect: max_outputs >= 1 Actual: {max_outputs}")

    def values_of(tag, run, values):
        imgs = np.asarray(values[0].data)[: int(max_outputs)]
        if max_outputs == 1:
            return [("image", f"{tag}/image", _image_uint8(imgs[0]))] if len(imgs) else []
        return [("image", f"{tag}/image/{i}", _image_uint8(img)) for i, img in enumerate(imgs)]

    return _summary_leaf(g, "ImageSummary", name, [t], collections, family, values_of)


def text(name: str, tensor: Any, collections: Any = None):
    """A summary op holding the strings of ``tensor`` (any shape; TensorBoard renders Markdown)."""
    g = get_default_graph()
    t = convert_to_tensor(tensor)
    if t.dtype is not None and t.dtype.kind not in "USO":
        raise TypeError(f"tf.summary.text {name!r}: Expect: a string tensor Actual: {t.dtype.name}")

    def values_of(tag, run, values):
        return [("text", tag, np.array(values[0].data, copy=True))]

    return _summary_leaf(g, "TextSummary", name, [t], collections, None, values_of)


def tensor_summary(name: str, tensor: Any, summary_description: str | None = None, collections: Any = None,
                   summary_metadata: Any = None, family: str | None = None, display_name: str | None = None):
    """A summary op holding the whole numeric ``tensor`` under ``name`` (read back as a tensor)."""
    g = get_default_graph()
    t = convert_to_tensor(tensor)
    if t.dtype is not None and t.dtype.kind not in "biuf":
        raise TypeError(f"tf.summary.tensor_summary {name!r}: Expect: a numeric or bool tensor Actual: "
                        f"{t.dtype.name} (use tf.summary.text for strings)")

    def values_of(tag, run, values):
        return [("tensor", tag, (np.array(values[0].data, copy=True), summary_description or ""))]

    return _summary_leaf(g, "TensorSummary", name, [t], collections, family, values_of)


def audio(name: str, tensor: Any, sample_rate: Any, max_outputs: int = 3, collections: Any = None,
          family: str | None = None):
    """A summary op holding the first ``max_outputs`` clips of ``tensor`` (``[batch, frames]`` or
    ``[batch, frames, 1]``, floats in [-1, 1]; mono only), tagged ``name/audio/0``, ..."""
    g = get_default_graph()
    t = convert_to_tensor(tensor)
    if t.shape.ndims not in (None, 2, 3) or (t.shape.ndims == 3 and t.shape.dims[2].value not in (None, 1)):
        raise ValueError(f"tf.summary.audio {name!r}: Expect: [batch, frames] or [batch, frames, 1] (mono) "
                         f"Actual: shape {t.shape}")
    rate = convert_to_tensor(sample_rate)

    def values_of(tag, run, values):
        clips = np.asarray(values[0].data, np.float32)[: int(max_outputs)]
        sr = int(np.asarray(values[1].data))
        clips = clips.reshape(clips.shape[0], -1) if clips.ndim == 3 else clips
        if max_outputs == 1:
            return [("audio", f"{tag}/audio", (clips[0], sr))] if len(clips) else []
        return [("audio", f"{tag}/audio/{i}", (c, sr)) for i, c in enumerate(clips)]

    return _summary_leaf(g, "AudioSummary", name, [t, rate], collections, family, values_of)


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
        from distnet.training.tensorboard import TensorBoardWriter

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
            elif kind == "image":
                self._writer.add_image(tag, value, step)
            elif kind == "text":
                self._writer.add_text_tensor(tag, value, step)
            elif kind == "tensor":
                self._writer.add_tensor(tag, value[0], step, value[1])
            elif kind == "audio":
                self._writer.add_audio(tag, value[0], step, value[1])
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
