"""TF1's queue-based input pipeline: input producers, readers, ``decode_csv``,
``train.batch`` / ``shuffle_batch``, ``Coordinator`` and ``start_queue_runners``.

TF1 filled its queues from background threads (the queue runners) while the
training loop dequeued.  Here the session pulls instead: running a batch op
runs the graph that makes one example (a reader's ``read``, ``decode_csv``,
...) as often as the batch needs, in nested runs of the same session, and
keeps the examples a ``shuffle_batch`` holds back between runs.  The
examples, their order for ``train.batch``, the epochs and the end of input --
``tf.errors.OutOfRangeError`` when a producer's ``num_epochs`` are used up
and too few examples remain -- are TF1's; ``start_queue_runners`` starts no
thread (it returns an empty list) and ``Coordinator`` keeps the loop's stop
flag and the exception that ended it.

Differences: the producers' epoch counters are not local variables, so
``tf.local_variables_initializer()`` is not needed (running it does no harm);
a program that forgets ``start_queue_runners`` runs instead of hanging; the
shuffles are distnet's own draws.  On several ranks every rank reads the
files it is given: hand each rank its own files (``files[rank::size]``).
"""
from __future__ import annotations

import contextlib
import csv
import threading
from typing import Any, Sequence

import numpy as np

from distnet.compat.v1.array_ops import seeded_rng
from distnet.compat.v1.data import _evaluate, _Spec, _text, flatten, multi_output, pack, read_lines
from distnet.compat.v1.errors import OutOfRangeError, UnsupportedError, refuser
from distnet.compat.v1.graph import Tensor, TensorShape, convert_to_tensor, get_default_graph, leaf, probes_for
from distnet.errors import DTypeError, InvalidArgumentError


def _sub_run(session, tensors: Sequence[Tensor]) -> list:
    """The values of ``tensors`` computed together in one nested run of ``session``."""
    values = _evaluate(session, tensors)
    return [values[t] for t in tensors]


# -- producers --------------------------------------------------------------------------------

class InputQueue:
    """What ``string_input_producer`` / ``range_input_producer`` / ``input_producer``
    return: the items of ``values``, epoch after epoch (each epoch in a new order
    when ``shuffle``), then the end of input after ``num_epochs``."""

    def __init__(self, values: Any, num_epochs: int | None, shuffle: bool, seed: int | None, name: str, kind: str):
        from distnet.compat.v1.array_ops import get_seed

        if num_epochs is not None and int(num_epochs) < 1:
            raise InvalidArgumentError(f"{kind}: num_epochs: Expect: None (for ever) or an int >= 1 "
                                       f"Actual: {num_epochs!r}")
        self._tensor = values if isinstance(values, Tensor) else None
        self._items = None if self._tensor is not None else list(np.asarray(values).reshape(-1).tolist())
        if self._items is not None and not self._items:
            raise ValueError(f"{kind}: Expect: at least one item Actual: an empty list "
                             "(string_input_producer requires a non-null input tensor)")
        self._epochs = None if num_epochs is None else int(num_epochs)
        self._shuffle = bool(shuffle)
        self._seed = get_seed(seed)
        self.name = get_default_graph().unique_name(name)
        self._dtype = np.dtype(np.bytes_) if kind == "string_input_producer" else np.dtype(np.int32)

    def _state(self, session) -> "_ProducerState":
        def make():
            items = self._items if self._items is not None else \
                np.asarray(_sub_run(session, [self._tensor])[0]).reshape(-1).tolist()
            return _ProducerState(items, self._epochs, self._shuffle, seeded_rng(self._seed))

        return session.resource(("input_producer", self), make)

    def take(self, session) -> Any:
        """The next item, or OutOfRangeError after the last epoch."""
        return self._state(session).take(self.name)

    def dequeue(self, name: str | None = None) -> Tensor:
        """An op whose every run takes the next item."""
        dtype = self._dtype
        return leaf("QueueDequeueV2", lambda run, values: _eager_scalar(self.take(run.session), dtype), dtype,
                    TensorShape([]), probes_for(TensorShape([]), dtype), name=name or f"{self.name}_Dequeue")

    def close(self, cancel_pending_enqueues: bool = False, name: str | None = None):
        from distnet.compat.v1.graph import no_output

        def compute(run, values):
            self._state(run.session).epochs_left = 0

        return no_output("QueueCloseV2", compute, name=name or f"{self.name}_Close")


def _eager_scalar(value: Any, dtype: np.dtype):
    from distnet.tensor import Tensor as EagerTensor

    return EagerTensor._from_op(np.asarray(value, dtype=dtype), None, ())


class _ProducerState:
    def __init__(self, items: list, epochs: int | None, shuffle: bool, rng: np.random.Generator):
        self.items, self.epochs_left, self.shuffle, self.rng = items, epochs, shuffle, rng
        self.order: list = []

    def take(self, name: str) -> Any:
        if not self.order:
            if self.epochs_left is not None:
                if self.epochs_left <= 0:
                    raise OutOfRangeError(f"FIFOQueue '{name}' is closed and has insufficient elements "
                                          "(requested 1, current size 0)")
                self.epochs_left -= 1
            order = list(range(len(self.items)))
            if self.shuffle:
                order = self.rng.permutation(len(self.items)).tolist()
            self.order = [self.items[i] for i in order]
        return self.order.pop(0)


def string_input_producer(string_tensor: Any, num_epochs: int | None = None, shuffle: bool = True,
                          seed: int | None = None, capacity: int = 32, shared_name: str | None = None,
                          name: str | None = None, cancel_op: Any = None) -> InputQueue:
    """A queue of file names for a reader, ``num_epochs`` times over (for ever when None)."""
    return InputQueue(string_tensor, num_epochs, shuffle, seed, name or "input_producer", "string_input_producer")


def match_filenames_once(pattern: Any, name: str | None = None) -> Tensor:
    """The sorted file names matching ``pattern`` (a glob or a list of globs), as a string
    tensor; matched when the graph is built (TF1 matched when local variables were initialized)."""
    import glob

    from distnet.compat.v1.array_ops import constant

    patterns = [_text(p) for p in np.atleast_1d(np.asarray(pattern)).tolist()]
    names = sorted({f for p in patterns for f in glob.glob(p)})
    return constant(np.char.encode(np.array(names, dtype=str), "utf-8") if names else np.array([], np.bytes_),
                    name=name or "matching_filenames")


def range_input_producer(limit: int, num_epochs: int | None = None, shuffle: bool = True, seed: int | None = None,
                         capacity: int = 32, shared_name: str | None = None, name: str | None = None) -> InputQueue:
    """A queue of the integers ``0 .. limit-1`` (``queue.dequeue()`` takes one)."""
    return InputQueue(np.arange(int(limit), dtype=np.int32), num_epochs, shuffle, seed,
                      name or "input_producer", "range_input_producer")


def slice_input_producer(tensor_list: Sequence[Any], num_epochs: int | None = None, shuffle: bool = True,
                         seed: int | None = None, capacity: int = 32, shared_name: str | None = None,
                         name: str | None = None) -> list:
    """One row of every tensor of ``tensor_list`` per run (the same row of each),
    ``num_epochs`` times over, each epoch in a new order when ``shuffle``."""
    tensors = [convert_to_tensor(t) for t in tensor_list]
    if not tensors:
        raise ValueError("slice_input_producer: Expect: a non-empty tensor_list Actual: []")
    for t in tensors:
        if t.shape.ndims == 0:
            raise InvalidArgumentError(f"slice_input_producer: Expect: tensors of rank >= 1 Actual: {t.name} "
                                       "is a scalar")
    # The row numbers are known only when the tensors are computed: the queue starts with a
    # placeholder item, replaced by range(rows) before the first row is taken.
    rows = InputQueue(np.zeros(1, np.int32), num_epochs, shuffle, seed, name or "input_producer",
                      "slice_input_producer")
    key = ("slice_input_producer", rows)

    def compute(run, values):
        session = run.session
        arrays = session.resource(key, lambda: _sub_run(session, tensors))
        n = {len(a) for a in arrays}
        if len(n) != 1:
            raise InvalidArgumentError(f"slice_input_producer: Expect: tensors with the same first size Actual: "
                                       f"sizes {sorted(n)}")
        state = rows._state(session)
        if len(state.items) != len(arrays[0]):
            state.items = list(range(len(arrays[0])))
        i = state.take(rows.name)
        return tuple(a[i] for a in arrays)

    specs = [_Spec(t.dtype, TensorShape(None) if t.shape.dims is None else TensorShape(t.shape.as_list()[1:]))
             for t in tensors]
    return list(multi_output("SliceInputProducer", compute, [], specs, tuple(specs), name=rows.name, data=True,
                             ends=True))


# -- readers ----------------------------------------------------------------------------------

class _Reader:
    """A reader: each run of ``read(queue)`` gives the next record of the queue's
    files as ``(key, value)`` string tensors, taking the next file name when a
    file ends."""

    def __init__(self, name: str | None = None):
        self._name = get_default_graph().unique_name(name or type(self).__name__)

    def _records(self, filename: str):
        raise NotImplementedError

    def read(self, queue: InputQueue, name: str | None = None):
        if not isinstance(queue, InputQueue):
            raise InvalidArgumentError(f"{type(self).__name__}.read: Expect: a queue from tf.train."
                                       f"string_input_producer Actual: {type(queue).__name__}")
        key = ("reader", self)

        def compute(run, values):
            state = run.session.resource(key, lambda: {"records": None})
            while True:
                if state["records"] is None:
                    filename = _text(queue.take(run.session))
                    state["records"] = self._records(filename)
                record = next(state["records"], None)
                if record is not None:
                    return tuple(np.bytes_(x) for x in record)
                state["records"] = None

        specs = [_Spec(np.bytes_, TensorShape([])), _Spec(np.bytes_, TensorShape([]))]
        return multi_output("ReaderReadV2", compute, [], specs, tuple(specs), name=name, data=True, ends=True)

    def read_up_to(self, queue, num_records, name=None):
        raise UnsupportedError(f"{type(self).__name__}.read_up_to is not supported by distnet.compat.v1; nearest "
                               "supported: read(queue) with tf.train.batch")

    def reset(self, name=None):
        from distnet.compat.v1.graph import no_output

        def compute(run, values):
            run.session.set_resource(("reader", self), {"records": None})

        return no_output("ReaderResetV2", compute, name=name)


class TextLineReader(_Reader):
    """TF1's ``tf.TextLineReader(skip_header_lines=None)``: one line per record;
    the key is ``b"<file>:<line number>"`` (counted from 1, header lines included)."""

    def __init__(self, skip_header_lines: int | None = None, name: str | None = None):
        super().__init__(name)
        self._skip = int(skip_header_lines or 0)

    def _records(self, filename: str):
        for number, line in enumerate(read_lines(filename), start=1):
            if number > self._skip:
                yield f"{filename}:{number}".encode(), line


class WholeFileReader(_Reader):
    """TF1's ``tf.WholeFileReader``: one record per file, ``(file name, contents)``."""

    def _records(self, filename: str):
        try:
            with open(filename, "rb") as f:
                contents = f.read()
        except OSError as err:
            from distnet.compat.v1.saver import NotFoundError

            raise NotFoundError(f"{filename}; No such file or directory ({err.strerror})") from None
        yield filename.encode(), contents


# -- decode_csv ----------------------------------------------------------------------------------

def _default_spec(default: Any, i: int) -> tuple:
    """(dtype, default value or None when the field is required) of one record default."""
    if isinstance(default, Tensor):
        if default.op.type != "Const":
            raise UnsupportedError("decode_csv: record_defaults must be constants (lists such as [0.0], [0], [''], "
                                   "or tf.constant([], dtype) for a required field)")
        arr = np.asarray(default._probes[0])
    else:
        arr = np.asarray(default)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64 and arr.size and np.abs(arr).max() < 2 ** 31:
            arr = arr.astype(np.int32)
    if arr.size > 1:
        raise InvalidArgumentError(f"decode_csv: record_defaults[{i}]: Expect: one value (e.g. [0.0]) or none "
                                   f"(a required field) Actual: {arr.size} values")
    if arr.dtype.kind in "US":
        arr = arr.astype(np.bytes_)
    dtype = np.dtype(np.bytes_) if arr.dtype.kind == "S" else arr.dtype   # any length, not the default's
    if arr.size == 0 and arr.dtype == np.float64 and not isinstance(default, Tensor):
        raise InvalidArgumentError(f"decode_csv: record_defaults[{i}] is empty: give its type with "
                                   "tf.constant([], dtype=tf.float32)")
    if arr.dtype.kind not in "fiuS":
        raise DTypeError(f"decode_csv: record_defaults[{i}]: Expect: float32, float64, int32, int64 or string "
                         f"Actual: {arr.dtype.name}")
    return dtype, (arr.reshape(-1)[0] if arr.size else None)


def decode_csv(records: Any, record_defaults: Sequence[Any], field_delim: str = ",", use_quote_delim: bool = True,
               name: str | None = None, na_value: str = "", select_cols: Sequence[int] | None = None) -> list:
    """TF1's ``tf.decode_csv``: one tensor per column, each of ``records``' shape.

    ``record_defaults[i]`` gives column ``i``'s type and its value for an
    empty field (``[0.0]``, ``[0]``, ``[""]``); an empty default
    (``tf.constant([], tf.float32)``) makes the field required.
    """
    records = convert_to_tensor(records)
    if len(field_delim) != 1:
        raise InvalidArgumentError(f"decode_csv: field_delim: Expect: one character Actual: {field_delim!r}")
    specs_defaults = [_default_spec(d, i) for i, d in enumerate(record_defaults)]
    cols = list(select_cols) if select_cols is not None else None
    if cols is not None and len(cols) != len(specs_defaults):
        raise InvalidArgumentError(f"decode_csv: Expect: one record default per selected column "
                                   f"({len(cols)}) Actual: {len(specs_defaults)}")
    delim, na = field_delim, na_value

    def parse(record: bytes, index: int) -> list:
        text = _text(record)
        rows = list(csv.reader([text], delimiter=delim, quoting=csv.QUOTE_MINIMAL if use_quote_delim
                               else csv.QUOTE_NONE, quotechar='"' if use_quote_delim else None))
        fields = rows[0] if rows else [""]
        if cols is not None:
            if max(cols) >= len(fields):
                raise InvalidArgumentError(f"Expect {max(cols) + 1} fields but have {len(fields)} in record {index}")
            fields = [fields[c] for c in cols]
        elif len(fields) != len(specs_defaults):
            raise InvalidArgumentError(f"Expect {len(specs_defaults)} fields but have {len(fields)} in record {index}")
        out = []
        for k, (field, (dtype, default)) in enumerate(zip(fields, specs_defaults)):
            if field == "" or (na and field == na):
                if default is None:
                    raise InvalidArgumentError(f"Field {k} is required but missing in record {index}!")
                out.append(default)
                continue
            try:
                out.append(field.encode() if dtype.kind == "S" else
                           (int(field) if dtype.kind in "iu" else float(field)))
            except ValueError:
                raise InvalidArgumentError(f"Field {k} in record {index} is not a valid {dtype.name}: {field}") \
                    from None
        return out

    def compute(run, values):
        recs = np.asarray(values[0].data)
        flat = recs.reshape(-1)
        parsed = [parse(r, i) for i, r in enumerate(flat.tolist())]
        return tuple(np.array([p[k] for p in parsed], dtype=dtype).reshape(recs.shape)
                     for k, (dtype, _) in enumerate(specs_defaults))

    shape = records.shape
    specs = [_Spec(dtype, shape) for dtype, _ in specs_defaults]
    return list(multi_output("DecodeCSV", compute, [records], specs, tuple(specs), name=name))


# -- batching -------------------------------------------------------------------------------------

def _batcher(kind: str, tensors: Any, batch_size: int, enqueue_many: bool, shapes: Any,
             allow_smaller_final_batch: bool, name: str | None, pick=None, keep: int = 0,
             dynamic_pad: bool = False):
    if dynamic_pad:
        raise UnsupportedError(f"tf.train.{kind}(dynamic_pad=True) is not supported by distnet.compat.v1; nearest "
                               "supported: tf.data.Dataset.padded_batch")
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    structure = tensors if isinstance(tensors, dict) else tuple(tensors)
    examples = [convert_to_tensor(t) for t in flatten(structure)]
    n = int(batch_size)
    if n < 1:
        raise InvalidArgumentError(f"tf.train.{kind}: batch_size: Expect: an int >= 1 Actual: {batch_size!r}")
    given = None if shapes is None else [TensorShape(list(s)) for s in shapes]
    specs = []
    for i, t in enumerate(examples):
        shape = given[i] if given is not None else t.shape
        if enqueue_many and shape.dims is not None:
            shape = TensorShape(shape.as_list()[1:])
        if not shape.is_fully_defined():
            raise ValueError(f"tf.train.{kind}: All shapes must be fully defined: {t.name} has shape {shape}; "
                             "pass shapes=")
        specs.append(_Spec(t.dtype, TensorShape([None if allow_smaller_final_batch else n] + shape.as_list())))
    label = name or kind
    key = (kind, object())     # this op's buffer in each session

    def compute(run, values):
        session = run.session
        state = session.resource(key, lambda: {"buffer": [], "closed": False})
        buffer = state["buffer"]
        while not state["closed"] and len(buffer) < n + keep:
            try:
                vals = _sub_run(session, examples)
            except OutOfRangeError:
                state["closed"] = True   # the producer's epochs are over: no more examples
                break
            if enqueue_many:
                buffer.extend(zip(*[list(v) for v in vals]))
            else:
                buffer.append(tuple(vals))
        if len(buffer) < n and not (state["closed"] and allow_smaller_final_batch and buffer):
            raise OutOfRangeError(f"{'RandomShuffleQueue' if pick else 'FIFOQueue'} '{label}' is closed and has "
                                  f"insufficient elements (requested {n}, current size {len(buffer)})")
        take = min(n, len(buffer))
        if pick is None:
            batch, state["buffer"] = buffer[:take], buffer[take:]
        else:
            batch = pick(session, buffer, take)
        return tuple(np.stack([np.asarray(e[i]) for e in batch]) for i in range(len(examples)))

    out = multi_output("QueueDequeueManyV2", compute, [], specs, tuple(specs), name=label, data=True, batched=True,
                       ends=True)
    out = pack(structure, list(out))
    if isinstance(out, tuple) and len(out) == 1 and not isinstance(tensors, dict):
        return out[0]          # TF1: a batch of one tensor is that tensor, not a list
    return out if isinstance(out, dict) else list(out)


def batch(tensors: Any, batch_size: int, num_threads: int = 1, capacity: int = 32, enqueue_many: bool = False,
          shapes: Any = None, dynamic_pad: bool = False, allow_smaller_final_batch: bool = False,
          shared_name: str | None = None, name: str | None = None):
    """TF1's ``tf.train.batch``: ``batch_size`` examples in the order they are made."""
    return _batcher("batch", tensors, batch_size, enqueue_many, shapes, allow_smaller_final_batch, name,
                    dynamic_pad=dynamic_pad)


def shuffle_batch(tensors: Any, batch_size: int, capacity: int, min_after_dequeue: int, num_threads: int = 1,
                  seed: int | None = None, enqueue_many: bool = False, shapes: Any = None,
                  allow_smaller_final_batch: bool = False, shared_name: str | None = None, name: str | None = None):
    """TF1's ``tf.train.shuffle_batch``: ``batch_size`` examples drawn at random from a
    buffer that keeps at least ``min_after_dequeue`` examples until the input ends."""
    from distnet.compat.v1.array_ops import get_seed

    if int(min_after_dequeue) < 0 or int(capacity) <= int(min_after_dequeue):
        raise ValueError(f"shuffle_batch: Expect: 0 <= min_after_dequeue < capacity Actual: min_after_dequeue="
                         f"{min_after_dequeue}, capacity={capacity}")
    seeds = get_seed(seed)
    rng_key = ("shuffle_batch", object())

    def pick(session, buffer, take):
        rng = session.resource(rng_key, lambda: seeded_rng(seeds))
        out = []
        for _ in range(take):
            j = int(rng.integers(len(buffer)))
            out.append(buffer[j])
            buffer[j] = buffer[-1]
            buffer.pop()
        return out

    return _batcher("shuffle_batch", tensors, batch_size, enqueue_many, shapes, allow_smaller_final_batch, name,
                    pick=pick, keep=int(min_after_dequeue))


# -- coordination ----------------------------------------------------------------------------------

class Coordinator:
    """TF1's ``tf.train.Coordinator``: a stop flag for the input loop and the
    exception that raised it (re-raised by :meth:`join`)."""

    def __init__(self, clean_stop_exception_types: Sequence[type] | None = None):
        self._clean = tuple(clean_stop_exception_types) if clean_stop_exception_types is not None \
            else (OutOfRangeError,)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._exception: BaseException | None = None
        self._threads: list = []
        self._joined = False

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, ex: BaseException | None = None) -> None:
        """Set the stop flag; keep ``ex`` (unless a clean stop, e.g. OutOfRangeError) for :meth:`join`."""
        with self._lock:
            if isinstance(ex, tuple):
                ex = ex[1]
            if ex is not None and not isinstance(ex, self._clean) and self._exception is None:
                self._exception = ex
            self._stop.set()

    def clear_stop(self) -> None:
        with self._lock:
            self._joined = False
            self._exception = None
            self._stop.clear()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def register_thread(self, thread: threading.Thread) -> None:
        self._threads.append(thread)

    @contextlib.contextmanager
    def stop_on_exception(self):
        try:
            yield
        except BaseException as err:  # noqa: BLE001 - TF1's contract: any exception stops the loop
            self.request_stop(err)

    def raise_requested_exception(self) -> None:
        if self._exception is not None:
            raise self._exception

    def join(self, threads: Sequence[threading.Thread] | None = None, stop_grace_period_secs: float = 120,
             ignore_live_threads: bool = False) -> None:
        """Wait for ``threads`` (and registered ones); re-raise the exception given to request_stop."""
        for t in list(threads or []) + self._threads:
            t.join(stop_grace_period_secs)
        self._joined = True
        self.raise_requested_exception()

    @property
    def joined(self) -> bool:
        return self._joined


def start_queue_runners(sess: Any = None, coord: Coordinator | None = None, daemon: bool = True,
                        start: bool = True, collection: str = "queue_runners") -> list:
    """Nothing to start: the session pulls examples when a batch is run (see the module doc)."""
    return []


FixedLengthRecordReader = refuser("FixedLengthRecordReader", "read the file with numpy (np.fromfile) and feed it, "
                                  "or use tf.data.Dataset.from_tensor_slices")
TFRecordReader = refuser("TFRecordReader", "distnet reads no TFRecord files: convert the records to numpy arrays "
                         "and use tf.data.Dataset.from_tensor_slices")
IdentityReader = refuser("IdentityReader", "nearest supported: tf.TextLineReader or tf.WholeFileReader")
LMDBReader = refuser("LMDBReader", "nearest supported: tf.TextLineReader or tf.WholeFileReader")
FIFOQueue = refuser("FIFOQueue", "queues of your own are not supported; nearest supported: tf.train.batch on an "
                    "input producer and a reader, or tf.data")
RandomShuffleQueue = refuser("RandomShuffleQueue", "nearest supported: tf.train.shuffle_batch or "
                             "tf.data.Dataset.shuffle")
PaddingFIFOQueue = refuser("PaddingFIFOQueue", "nearest supported: tf.data.Dataset.padded_batch")
QueueRunner = refuser("train.QueueRunner", "queues of your own are not supported; tf.train.batch and "
                      "tf.train.shuffle_batch need no queue runner here")
batch_join = refuser("train.batch_join", "nearest supported: tf.train.batch")
shuffle_batch_join = refuser("train.shuffle_batch_join", "nearest supported: tf.train.shuffle_batch")
decode_raw = refuser("decode_raw", "read the bytes with numpy (np.frombuffer) and feed them")
parse_single_example = refuser("parse_single_example", "distnet reads no tf.Example records: convert them to "
                               "numpy arrays")
