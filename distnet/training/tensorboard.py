"""TensorBoard event files for a run, written with tensorboardX.

``tensorboard --logdir runs/`` then shows every run beside the others: the
writer puts its event file in the run directory itself, next to
``metrics.jsonl``, so a run's TensorBoard name is its directory's name.

What goes in (tags):

* ``train/<key>`` for every number of a ``metrics.jsonl`` step record
  (``loss``, ``reg_loss``, ``lr``, ``accuracy``, ``samples_per_sec``);
* ``eval/<key>`` for every number of an eval record (``val_loss``,
  ``test_accuracy``, ``ema_test_loss``, ``ema_val_accuracy``, ...); sample
  counts (``test_samples``, ...) are not curves and are left out;
* ``best/<metric>``: the monitored metric's value at each step it improved
  (``best`` records, written by early stopping and ``keep_best``), so the
  best step is the curve's last point;
* ``early_stopping`` (text) at the step an ``early_stopping`` record says
  the run stopped, naming the metric and its best value and step;
* text (the job's TOML, shown as a code block), histograms (weights or
  gradients) and images under tags the caller names;
* TF1's text summaries (a string tensor under exactly its tag,
  :meth:`TensorBoardWriter.add_text_tensor`), for ``tf.summary.text``.

The writer writes whatever it is given: which rank writes (rank 0) is the
caller's decision, as with :class:`~distnet.training.metrics.MetricsLogger`.
tensorboardX is an optional dependency (``pip install 'distnet[tensorboard]'``);
the event file is opened on the first write, so constructing a writer
touches no file and starts no thread.

Example:
    >>> tb = TensorBoardWriter("runs/default")                    # doctest: +SKIP
    >>> tb.add_text("job/config", cfg.to_toml())                  # doctest: +SKIP
    >>> tb.add_record({"kind": "step", "step": 1, "loss": 2.3})   # doctest: +SKIP
    >>> tb.close()                                                # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping

import numpy as np

from distnet.errors import InvalidArgumentError

__all__ = ["TensorBoardWriter", "record_scalars", "record_points", "early_stop_text", "RECORD_KINDS",
           "INSTALL_HINT"]

INSTALL_HINT = "pip install 'distnet[tensorboard]' (or: pip install tensorboardX)"

# Keys of a metrics record that are positions or bookkeeping, not curves.
_NOT_SCALARS = frozenset({"kind", "step", "epoch", "time", "finite"})
_GROUPS = {"step": "train", "eval": "eval"}
# The kinds of metrics.jsonl record add_record turns into events.
RECORD_KINDS = frozenset({"step", "eval", "best", "early_stopping"})


def _is_count(key: str) -> bool:
    """A sample count (``test_samples``): a fixed number per run, not a curve."""
    return key == "samples" or key.endswith("_samples")


def record_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one ``metrics.jsonl`` record: ``{tag: value}``.

    Step records give ``train/<key>``, eval records ``eval/<key>``, for every
    finite number in the record except ``step``, ``epoch``, ``time``,
    ``finite`` and sample counts (``*_samples``); a ``best`` record gives
    ``best/<metric>``, an ``early_stopping`` record ``best/<metric>`` at its
    ``best_step`` (see :func:`record_points`); other kinds of record give nothing.

    Example:
        >>> record_scalars({"kind": "eval", "step": 100, "test_accuracy": 0.8})
        {'eval/test_accuracy': 0.8}
    """
    return {tag: value for tag, (value, _step_) in record_points(record).items()}


def record_points(record: Mapping[str, Any]) -> dict[str, tuple[float, int | None]]:
    """:func:`record_scalars` with the step of each point: ``{tag: (value, step)}``.

    The step is the record's, except for an ``early_stopping`` record, whose
    ``best/<metric>`` point is at its ``best_step``.  An evaluation of restored
    weights (``restored_step``) gives nothing: it repeats that step's points.
    """
    kind = record.get("kind")
    if kind in ("best", "early_stopping"):
        metric, value = record.get("metric"), record.get("value" if kind == "best" else "best")
        step = record.get("step" if kind == "best" else "best_step")
        if not isinstance(metric, str) or not metric or not _finite_number(value) or not _finite_number(step):
            return {}
        return {f"best/{metric}": (float(value), int(step))}
    group = _GROUPS.get(kind)
    if group is None or record.get("restored_step") is not None:
        return {}   # restored weights evaluated again: the points of their own step, drawn already
    step = int(record["step"]) if _finite_number(record.get("step")) else None   # add_record refuses None
    out = {}
    for key, value in record.items():
        if key in _NOT_SCALARS or isinstance(value, bool) or _is_count(key):
            continue
        if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
            out[f"{group}/{key}"] = (float(value), step)
    return out


def _finite_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def early_stop_text(record: Mapping[str, Any]) -> str:
    """The sentence an ``early_stopping`` record shows in TensorBoard's text tab."""
    best = record.get("best")
    best_text = f"{best:.6g}" if _finite_number(best) else "none"
    return (f"stopped early at step {record.get('step')}: {record.get('metric')} had not improved "
            f"(best {best_text} at step {record.get('best_step')})")


class TensorBoardWriter:
    """Writes scalars, text and histograms to an event file in ``run_dir``.

    Args:
        run_dir: the run directory (created on the first write if needed).
        purge_step: on a resumed run, the step it resumed from: TensorBoard
            hides the events at and after it that an interrupted earlier
            run had already written (tensorboardX's ``purge_step``).
        flush_secs: how often buffered events reach the file at the latest.

    Raises:
        ImportError: tensorboardX is not installed (on the first write; the
            message says what to install).
    """

    def __init__(self, run_dir: str | os.PathLike, *, purge_step: int | None = None,
                 flush_secs: int = 30):
        if purge_step is not None and (isinstance(purge_step, bool) or not isinstance(purge_step, int)
                                       or purge_step < 0):
            raise InvalidArgumentError(f"purge_step: Expect: None or an int >= 0 Actual: {purge_step!r}")
        if isinstance(flush_secs, bool) or not isinstance(flush_secs, (int, float)) or flush_secs <= 0:
            raise InvalidArgumentError(f"flush_secs: Expect: a number > 0 Actual: {flush_secs!r}")
        self.run_dir = os.fspath(run_dir)
        self.purge_step = purge_step
        self.flush_secs = flush_secs
        self._writer = None
        self._closed = False
        self._best_points: set[tuple[str, int]] = set()   # (tag, step) of best/<metric> points written

    def _w(self):
        if self._closed:
            raise InvalidArgumentError(f"TensorBoardWriter({self.run_dir!r}) is closed")
        if self._writer is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as exc:
                raise ImportError(f"TensorBoard event files need tensorboardX: {INSTALL_HINT} "
                                  f"({exc})") from exc
            os.makedirs(self.run_dir, exist_ok=True)
            # tensorboardX names the file by the second and the host: a second
            # writer in the same second (a quick resume) would truncate the
            # first one's file without a suffix of its own, and TensorBoard
            # reads a directory's files in name order: nanoseconds keep both.
            self._writer = SummaryWriter(self.run_dir, purge_step=self.purge_step,
                                         flush_secs=self.flush_secs,
                                         filename_suffix=f".{time.time_ns():020d}")
        return self._writer

    def add_scalar(self, tag: str, value: float, step: int, walltime: float | None = None) -> None:
        """One point of the curve ``tag``."""
        self._w().add_scalar(_tag(tag), float(value), global_step=_step(step), walltime=walltime)

    def add_scalars(self, values: Mapping[str, float], step: int, walltime: float | None = None) -> None:
        """Several curves at the same step (each its own tag, not tensorboardX's grouped form)."""
        for tag, value in values.items():
            self.add_scalar(tag, value, step, walltime)

    def add_record(self, record: Mapping[str, Any]) -> dict[str, float]:
        """Write a ``metrics.jsonl`` record's numbers (see :func:`record_scalars`).

        The record's ``step`` is the x axis (an ``early_stopping`` record's
        best point: its ``best_step``) and its ``time`` the wall time.  A
        ``best/<metric>`` point already written at that step (early stopping
        and ``keep_best`` watching the same metric both log it) is not
        written twice.  An ``early_stopping`` record also writes its
        sentence (:func:`early_stop_text`) as text ``early_stopping``.

        Returns:
            The scalars written, ``{tag: value}``.
        """
        points = record_points(record)
        if points and any(step is None for _value, step in points.values()):
            raise InvalidArgumentError(f"add_record: Expect: a record with a 'step' Actual: keys "
                                       f"{sorted(record)}")
        walltime = record.get("time")
        walltime = float(walltime) if _finite_number(walltime) else None
        written = {}
        for tag, (value, step) in points.items():
            if tag.startswith("best/"):
                if (tag, step) in self._best_points:
                    continue
                self._best_points.add((tag, step))
            self.add_scalar(tag, value, step, walltime)
            written[tag] = value
        if record.get("kind") == "early_stopping" and _finite_number(record.get("step")):
            self.add_text("early_stopping", early_stop_text(record), int(record["step"]))
        return written

    def add_text(self, tag: str, text: str, step: int = 0) -> None:
        """Text under ``tag`` (TensorBoard renders it as Markdown)."""
        if not isinstance(text, str):
            raise InvalidArgumentError(f"add_text: text: Expect: a str Actual: {type(text).__name__}")
        self._w().add_text(_tag(tag), text, global_step=_step(step))

    def add_code(self, tag: str, text: str, step: int = 0) -> None:
        """Text shown verbatim (a Markdown code block), e.g. the job's TOML."""
        self.add_text(tag, "```\n" + text.rstrip("\n") + "\n```", step)

    def add_histogram(self, tag: str, values: Any, step: int) -> None:
        """The distribution of ``values`` (any array; non-finite values are left out)."""
        arr = np.asarray(values, dtype=np.float64).ravel()
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return  # TensorBoard cannot draw an empty histogram
        self._w().add_histogram(_tag(tag), arr, global_step=_step(step))

    def add_image(self, tag: str, image: Any, step: int) -> None:
        """One image, ``uint8`` ``[height, width, channels]`` with 1 (grey), 3 (RGB) or 4 (RGBA) channels,
        written as PNG (tensorboardX stores a grey image as RGB)."""
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
            raise InvalidArgumentError(f"add_image: Expect: a uint8 array [height, width, 1|3|4] Actual: "
                                       f"{arr.dtype} {list(arr.shape)}")
        self._w().add_image(_tag(tag), arr, global_step=_step(step), dataformats="HWC")

    def add_audio(self, tag: str, clip: Any, step: int, sample_rate: int) -> None:
        """One mono clip (floats, clipped to [-1, 1]) at ``sample_rate`` Hz, written as 16-bit WAV
        (encoded here with the standard library: tensorboardX's own audio needs soundfile)."""
        import io
        import wave

        from tensorboardX.proto.summary_pb2 import Summary

        arr = np.asarray(clip, np.float32).reshape(-1)
        if isinstance(sample_rate, bool) or int(sample_rate) <= 0:
            raise InvalidArgumentError(f"add_audio: sample_rate: Expect: an int > 0 Actual: {sample_rate!r}")
        pcm = np.round(np.clip(np.nan_to_num(arr), -1.0, 1.0) * 32767.0).astype("<i2")
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(int(sample_rate))
            wav.writeframes(pcm.tobytes())
        value = Summary.Audio(sample_rate=float(sample_rate), num_channels=1, length_frames=arr.size,
                              encoded_audio_string=buf.getvalue(), content_type="audio/wav")
        writer = self._w()
        writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=_tag(tag), audio=value)]),
                                              _step(step))

    def add_text_tensor(self, tag: str, strings: Any, step: int) -> None:
        """Strings (any shape) under exactly ``tag``, as TF1's ``tf.summary.text`` writes them
        (:meth:`add_text` appends ``/text_summary`` to the tag, as tensorboardX does)."""
        from tensorboardX.proto.plugin_text_pb2 import TextPluginData
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboardX.proto.tensor_pb2 import TensorProto
        from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

        arr = np.asarray(strings)
        if arr.dtype.kind not in "US" and not (arr.dtype == object and all(isinstance(x, (str, bytes))
                                                                            for x in arr.reshape(-1))):
            raise InvalidArgumentError(f"add_text_tensor: Expect: strings Actual: {arr.dtype}")
        writer = self._w()
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name="text", content=TextPluginData(version=0).SerializeToString()))
        proto = TensorProto(dtype="DT_STRING",
                            string_val=[x if isinstance(x, bytes) else str(x).encode("utf-8")
                                        for x in arr.reshape(-1)],
                            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in arr.shape]))
        summary = Summary(value=[Summary.Value(tag=_tag(tag), metadata=meta, tensor=proto)])
        writer._get_file_writer().add_summary(summary, _step(step))

    def add_tensor(self, tag: str, values: Any, step: int, description: str = "") -> None:
        """A numeric array under exactly ``tag`` (TF1's ``tf.summary.tensor_summary``)."""
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboardX.proto.tensor_pb2 import TensorProto
        from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

        arr = np.asarray(values)
        kinds = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int8": "DT_INT8",
                 "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64", "uint8": "DT_UINT8",
                 "bool": "DT_BOOL"}
        if arr.dtype.name not in kinds:
            raise InvalidArgumentError(f"add_tensor: Expect: a numeric or bool array Actual: {arr.dtype}")
        proto = TensorProto(dtype=kinds[arr.dtype.name], tensor_content=np.ascontiguousarray(arr).tobytes(),
                            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in arr.shape]))
        meta = SummaryMetadata(summary_description=description) if description else None
        value = Summary.Value(tag=_tag(tag), tensor=proto, metadata=meta)
        self._w()._get_file_writer().add_summary(Summary(value=[value]), _step(step))

    def add_histograms(self, arrays: Mapping[str, Any], step: int, prefix: str = "weights") -> None:
        """One histogram per array, tagged ``<prefix>/<name>`` (e.g. ``weights/dense/kernel``)."""
        for name in sorted(arrays):
            self.add_histogram(f"{prefix}/{name}" if prefix else name, arrays[name], step)

    def flush(self) -> None:
        """Write buffered events to the file now."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True

    def __enter__(self) -> "TensorBoardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tag(tag: Any) -> str:
    if not isinstance(tag, str) or not tag.strip():
        raise InvalidArgumentError(f"tag: Expect: a non-empty str Actual: {tag!r}")
    return tag


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise InvalidArgumentError(f"step: Expect: an int >= 0 Actual: {step!r}")
    return int(step)
