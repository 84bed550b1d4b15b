"""TF1's ``tf.data``: input pipelines described in the graph, iterated by the session.

A :class:`Dataset` is a description -- a source, then transformations --
built with the graph; nothing is read when it is built.  An iterator's
position belongs to the session, as TF1's iterator resource does:
``iterator.initializer`` (or the first ``get_next`` of a one-shot iterator)
starts it, and each run of a ``get_next`` op takes the next element -- the
same element for every tensor of that op fetched in one ``sess.run``.  After
the last element, ``get_next`` raises ``tf.errors.OutOfRangeError`` on every
run, as TF1 does.

``map`` and ``filter`` call the user's function once, when the pipeline is
built, on stand-in tensors shaped like one element (as TF1 traces it into a
function); at run time the ops it made are evaluated for each element (or
each batch, after ``batch``) by a nested run of the session with the element
fed.

Data parallel: ``dataset.shard(tf.distributed.size(), tf.distributed.rank())``
gives each rank every ``size``-th element, starting at its rank (TF1's
``shard``, Horovod's idiom).  Shuffle and repeat *before* the shard with a
seed (every rank then walks the same order), batch *after* it with the
global batch size divided by the number of ranks: each step the ranks
together hold the global batch a single process would take, and
``DistributedOptimizer`` weights each rank's gradient by its batch's size
(the first size of the iterator's batched output).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from distnet.compat.v1.errors import FailedPreconditionError, OutOfRangeError, UnsupportedError, refuser
from distnet.compat.v1.graph import (
    Tensor, TensorShape, as_dtype, as_shape, convert_to_tensor, get_default_graph, leaf, no_output, probes_for,
    upstream_ops,
)
from distnet.errors import DTypeError, InvalidArgumentError
from distnet.tensor import Tensor as EagerTensor, _to_array

#: ``tf.data.experimental.AUTOTUNE``: accepted where TF1 takes a parallelism or buffer size.
AUTOTUNE = -1


# -- nested structures (tuples, namedtuples, dicts; lists are values, as in TF1) ------------

def flatten(structure: Any) -> list:
    """The leaves of ``structure`` in TF1's order (dict keys sorted)."""
    if isinstance(structure, dict):
        return [x for k in sorted(structure) for x in flatten(structure[k])]
    if isinstance(structure, tuple):
        return [x for c in structure for x in flatten(c)]
    return [structure]


def pack(template: Any, leaves: list) -> Any:
    """``template``'s structure with ``leaves`` (from :func:`flatten`'s order) at its leaves."""
    it = iter(leaves)
    out = _pack(template, it)
    return out


def _pack(t: Any, it) -> Any:
    if isinstance(t, dict):
        got = {k: _pack(t[k], it) for k in sorted(t)}
        return type(t)((k, got[k]) for k in t)
    if isinstance(t, tuple):
        items = [_pack(c, it) for c in t]
        return type(t)(*items) if hasattr(t, "_fields") else tuple(items)
    return next(it)


def _normalize(structure: Any) -> Any:
    """A function's result as an element: lists become tuples (TF1 warns and does the same)."""
    if isinstance(structure, list):
        return tuple(_normalize(x) for x in structure)
    if isinstance(structure, dict):
        return type(structure)((k, _normalize(v)) for k, v in structure.items())
    if isinstance(structure, tuple) and not hasattr(structure, "_fields"):
        return tuple(_normalize(x) for x in structure)
    return structure


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _array(value: Any) -> np.ndarray:
    if isinstance(value, EagerTensor):
        return value.data
    return np.asarray(value)


def _eager(arr: np.ndarray) -> EagerTensor:
    return EagerTensor._from_op(np.array(arr, copy=True), None, ())


class _Spec:
    """One component of an element: its dtype and static shape."""

    __slots__ = ("dtype", "shape")

    def __init__(self, dtype: Any, shape: TensorShape):
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.shape = as_shape(shape)


def _spec_of_value(arr: np.ndarray, drop_first: bool) -> _Spec:
    return _Spec(arr.dtype, TensorShape(list(arr.shape[1:] if drop_first else arr.shape)))


def _spec_of_tensor(t: Tensor, drop_first: bool) -> _Spec:
    dims = t.shape.dims
    if dims is None:
        return _Spec(t.dtype, TensorShape(None))
    if drop_first:
        if not dims:
            raise InvalidArgumentError(f"from_tensor_slices: Expect: tensors of rank >= 1 (sliced along their "
                                       f"first dimension) Actual: {t.name} is a scalar")
        dims = dims[1:]
    return _Spec(t.dtype, TensorShape([d.value for d in dims]))


# -- run-time context -------------------------------------------------------------------------

class _Context:
    """One iteration of a pipeline in a session: the values of the graph tensors the
    pipeline captured, and each stage's state (shuffle generators, caches)."""

    def __init__(self, session, captured: dict, fed: dict | None = None):
        self.session = session
        self.captured = captured
        self.fed = dict(fed or {})     # the initializer's feeds: placeholders a function reads keep them
        self.state: dict = {}

    def run_function(self, inputs: list, outputs: list, element: tuple) -> tuple:
        """The values of ``outputs`` with the stand-ins ``inputs`` fed ``element``."""
        from distnet.compat.v1.session import _Run, evaluation_order

        run = _Run(self.session, {**self.fed, **{t.op: _eager(v) for t, v in zip(inputs, element)}})
        # The function's ops are ordered once per iteration, not walked again for each element.
        key = ("order", *[t.op for t in outputs])
        order = self.state.get(key)
        if order is None:
            order = self.state[key] = evaluation_order([t.op for t in outputs], run.fed)
        run.run_in_order(order)
        return tuple(np.asarray(_array(run.values[t.op])) for t in outputs)


def _evaluate(session, tensors: list) -> dict:
    """Values of the captured graph tensors, computed in a run of their own."""
    from distnet.compat.v1.session import _Run

    run = _Run(session, {})
    return {t: _array(run.value(t)) for t in tensors}


# -- datasets ---------------------------------------------------------------------------------

class _ElementStructure:
    """TF1's ``output_types``/``output_shapes``/``output_classes`` of what ``self._template``
    describes (a dataset's elements, an iterator's ``get_next``)."""

    @property
    def output_types(self):
        return pack(self._template, [s.dtype for s in flatten(self._template)])

    @property
    def output_shapes(self):
        return pack(self._template, [s.shape for s in flatten(self._template)])

    @property
    def output_classes(self):
        return pack(self._template, [Tensor for _ in flatten(self._template)])


class Dataset(_ElementStructure):
    """TF1's ``tf.data.Dataset`` (see the module doc).

    Example:
      >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(1000, seed=1).batch(32).repeat()
      >>> images, labels = ds.make_one_shot_iterator().get_next()
    """

    def __init__(self, template: Any, batched: bool = False):
        self._template = template        # structure of _Spec
        self._batched = batched          # elements are batches (their first size counts samples)

    # What a subclass provides.
    def _elements(self, ctx: _Context):
        raise NotImplementedError

    def _inputs(self) -> list:
        """The graph tensors this pipeline reads (fed or computed when an iterator starts)."""
        return []

    def _rows(self, ctx: _Context):
        """``(arrays, order)`` when every element is row ``i`` of each of ``arrays`` and
        ``order.take(k)`` gives the next ``k`` row numbers of a pass (fewer at its end) -- so a batch gathers rows
        at once instead of stacking elements one by one; None when the elements are not rows."""
        return None

    # -- the element's structure ---------------------------------------
    def _specs(self) -> list:
        return flatten(self._template)

    # -- sources ----------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors: Any) -> "Dataset":
        """One element per row of ``tensors`` (an array, or a tuple/dict of arrays with
        as many rows); graph tensors (e.g. placeholders) are read when the iterator starts."""
        return _Slices(tensors, slices=True)

    @staticmethod
    def from_tensors(tensors: Any) -> "Dataset":
        """A single element: ``tensors``."""
        return _Slices(tensors, slices=False)

    @staticmethod
    def range(*args: int) -> "Dataset":  # noqa: A003
        """``range(stop)``, ``range(start, stop[, step])``: int64 scalars."""
        return _Range(*args)

    @staticmethod
    def zip(datasets: Any) -> "Dataset":
        """Elements of several datasets side by side (a tuple or dict of datasets), until the shortest ends."""
        return _Zip(datasets)

    @staticmethod
    def from_generator(generator: Callable, output_types: Any, output_shapes: Any = None,
                       args: Any = None) -> "Dataset":
        """Elements from ``generator()`` (a callable returning an iterable), converted to ``output_types``."""
        return _Generator(generator, output_types, output_shapes, args)

    @staticmethod
    def list_files(file_pattern: Any, shuffle: bool | None = None, seed: int | None = None) -> "Dataset":
        """The files matching ``file_pattern`` (a glob or a list of globs), sorted, then
        shuffled unless ``shuffle=False`` (TF1's default shuffles)."""
        import glob

        patterns = [_text(p) for p in np.atleast_1d(np.asarray(file_pattern)).tolist()]
        files = sorted({f for p in patterns for f in glob.glob(p)})
        if not files:
            raise InvalidArgumentError(f"list_files: No files matched pattern: {', '.join(patterns)}")
        ds = Dataset.from_tensor_slices(np.char.encode(np.array(files), "utf-8"))
        return ds if shuffle is False else ds.shuffle(len(files), seed=seed)

    # -- transformations ---------------------------------------------
    def map(self, map_func: Callable, num_parallel_calls: Any = None) -> "Dataset":  # noqa: A003
        """``map_func`` applied to each element (its components as arguments when the element is a tuple)."""
        return _Map(self, map_func)

    def flat_map(self, map_func: Callable) -> "Dataset":
        """The elements of the datasets ``map_func`` makes from each element, one after another."""
        return _Interleave(self, map_func, 1, 1)

    def interleave(self, map_func: Callable, cycle_length: int = 1, block_length: int = 1,
                   num_parallel_calls: Any = None) -> "Dataset":
        """TF1's interleave: ``block_length`` elements at a time from each of ``cycle_length``
        datasets made by ``map_func``, in turn, a new one opened where one ends."""
        return _Interleave(self, map_func, _check_count("interleave", "cycle_length", cycle_length, allow_auto=True),
                           _check_count("interleave", "block_length", block_length))

    def unbatch(self) -> "Dataset":
        """The rows of each element (the inverse of ``batch``)."""
        return _Unbatch(self)

    def filter(self, predicate: Callable) -> "Dataset":  # noqa: A003
        """The elements for which ``predicate`` (a scalar bool tensor) holds."""
        return _Filter(self, predicate)

    def shuffle(self, buffer_size: int, seed: int | None = None, reshuffle_each_iteration: bool = True) -> "Dataset":
        """TF1's buffered shuffle: each element out is drawn uniformly from a buffer of
        ``buffer_size`` elements, and its place is refilled from the input."""
        return _Shuffle(self, buffer_size, seed, reshuffle_each_iteration)

    def batch(self, batch_size: int, drop_remainder: bool = False) -> "Dataset":
        """Consecutive elements stacked ``batch_size`` at a time (the last batch smaller
        unless ``drop_remainder``)."""
        return _Batch(self, batch_size, drop_remainder)

    def padded_batch(self, batch_size: int, padded_shapes: Any = None, padding_values: Any = None,
                     drop_remainder: bool = False) -> "Dataset":
        """Batches whose components are padded to ``padded_shapes`` (``None``/-1: the batch's longest)."""
        return _Batch(self, batch_size, drop_remainder, padded=(padded_shapes, padding_values))

    def repeat(self, count: int | None = None) -> "Dataset":
        """The elements ``count`` times over (for ever when ``count`` is None or -1)."""
        return _Repeat(self, count)

    def take(self, count: int) -> "Dataset":
        """The first ``count`` elements (-1: all)."""
        return _Slice(self, "take", count)

    def skip(self, count: int) -> "Dataset":
        """All but the first ``count`` elements (-1: none)."""
        return _Slice(self, "skip", count)

    def shard(self, num_shards: int, index: int) -> "Dataset":
        """Every ``num_shards``-th element, starting at ``index`` (a rank's part, see the module doc)."""
        return _Slice(self, "shard", num_shards, index)

    def prefetch(self, buffer_size: int) -> "Dataset":
        """The same elements (the session computes each when it is asked for)."""
        _check_count("prefetch", "buffer_size", buffer_size, allow_auto=True)
        return self

    def cache(self, filename: str = "") -> "Dataset":
        """The same elements, computed in the first pass and replayed from memory after it
        (a ``filename`` is accepted; the cache stays in memory)."""
        return _Cache(self)

    def concatenate(self, dataset: "Dataset") -> "Dataset":
        """This dataset's elements, then ``dataset``'s (the same structure and dtypes)."""
        return _Concatenate(self, dataset)

    def apply(self, transformation_func: Callable) -> "Dataset":
        return transformation_func(self)

    def __iter__(self):
        raise RuntimeError("iterating a tf.data.Dataset in Python is eager (TF2) behaviour; in a TF1 program use "
                           "dataset.make_one_shot_iterator().get_next() and sess.run")

    # -- iterators ----------------------------------------------------
    def make_one_shot_iterator(self) -> "Iterator":
        """An iterator that starts by itself at its first ``get_next`` in a session."""
        for t in self._inputs():
            if _reads_placeholder(t):
                raise ValueError("Failed to create a one-shot iterator for a dataset that reads a placeholder "
                                 f"({t.name}); use dataset.make_initializable_iterator() and run "
                                 "iterator.initializer with the placeholder fed")
        return Iterator(self._template, self, one_shot=True, batched=self._batched)

    def make_initializable_iterator(self, shared_name: str | None = None) -> "Iterator":
        """An iterator started (again) by running ``iterator.initializer`` (with a feed_dict for placeholders)."""
        it = Iterator(self._template, None, one_shot=False, batched=self._batched)
        it._initializer = it.make_initializer(self)
        return it


def _reads_placeholder(t: Tensor) -> bool:
    """Whether ``t`` reads a ``tf.placeholder`` (one that must be fed): only that
    stops a one-shot iterator; a placeholder with a default or a shard constant
    (:func:`~distnet.compat.v1.graph.reads_fed_data`'s wider sense) does not."""
    return any(op.type == "Placeholder" for op in upstream_ops([t]))


def _check_count(what: str, arg: str, value: Any, allow_auto: bool = False, minimum: int = 1) -> int:
    if isinstance(value, Tensor):
        raise InvalidArgumentError(f"{what}: {arg}: Expect: a Python int Actual: the graph tensor {value.name}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{what}: {arg}: Expect: an int Actual: {value!r}") from None
    if allow_auto and n == AUTOTUNE:
        return n
    if n < minimum:
        raise InvalidArgumentError(f"{what}: {arg}: Expect: an int >= {minimum} Actual: {n}")
    return n


class _Slices(Dataset):
    def __init__(self, tensors: Any, slices: bool):
        what = "from_tensor_slices" if slices else "from_tensors"
        structure = _normalize_input(tensors)
        leaves = flatten(structure)
        if not leaves or (len(leaves) == 1 and leaves[0] is None):
            raise InvalidArgumentError(f"{what}: Expect: an array or a tuple/dict of arrays Actual: {tensors!r:.60}")
        self._leaves = []
        specs = []
        for x in leaves:
            if isinstance(x, Tensor):
                specs.append(_spec_of_tensor(x, slices))
            else:
                arr = _to_array(x)
                if arr.dtype.kind == "U":      # TF1's strings are bytes
                    arr = np.char.encode(arr, "utf-8")
                if slices and arr.ndim == 0:
                    raise InvalidArgumentError(f"{what}: Expect: arrays of rank >= 1 (sliced along their first "
                                               f"dimension) Actual: a scalar {arr!r}")
                specs.append(_spec_of_value(arr, slices))
                x = arr
            self._leaves.append(x)
        if slices:
            rows = {len(x) for x in self._leaves if not isinstance(x, Tensor)}
            if len(rows) > 1:
                raise InvalidArgumentError(f"from_tensor_slices: every component must have the same first size; "
                                           f"Expect: one size Actual: sizes {sorted(rows)}")
        self._slices = slices
        super().__init__(pack(structure, specs))

    def _inputs(self) -> list:
        return [x for x in self._leaves if isinstance(x, Tensor)]

    def _rows(self, ctx):
        if not self._slices:
            return None
        values = [ctx.captured[x] if isinstance(x, Tensor) else x for x in self._leaves]
        if any(not isinstance(v, np.ndarray) or v.ndim == 0 or v.dtype.kind in "OSU" for v in values):
            return None     # objects and strings: stacked elements may differ (a string batch's width is its own)
        n = len(values[0])
        if any(len(v) != n for v in values):
            return None      # _elements says what is wrong
        return values, _InOrder(n)

    def _elements(self, ctx):
        values = [ctx.captured[x] if isinstance(x, Tensor) else x for x in self._leaves]
        if not self._slices:
            yield tuple(values)
            return
        n = len(values[0])
        for i, v in enumerate(values):
            if len(v) != n:
                raise InvalidArgumentError(f"from_tensor_slices: every component must have the same first size; "
                                           f"Expect: {n} Actual: {len(v)} in component {i}")
        for i in range(n):
            yield tuple(v[i] for v in values)


def _normalize_input(structure: Any) -> Any:
    """The element structure of a source: tuples and dicts nest; anything else is one value."""
    if isinstance(structure, dict):
        return type(structure)((k, _normalize_input(v)) for k, v in structure.items())
    if isinstance(structure, tuple):
        items = [_normalize_input(x) for x in structure]
        return type(structure)(*items) if hasattr(structure, "_fields") else tuple(items)
    return structure


class _Range(Dataset):
    def __init__(self, *args: int):
        if not 1 <= len(args) <= 3:
            raise InvalidArgumentError(f"Dataset.range: Expect: (stop), (start, stop) or (start, stop, step) "
                                       f"Actual: {len(args)} arguments")
        self._args = [a if isinstance(a, Tensor) else int(a) for a in args]
        super().__init__(_Spec(np.int64, TensorShape([])))

    def _inputs(self) -> list:
        return [a for a in self._args if isinstance(a, Tensor)]

    def _elements(self, ctx):
        bounds = [int(ctx.captured[a]) if isinstance(a, Tensor) else a for a in self._args]
        for v in range(*bounds):
            yield (np.int64(v),)


class _Zip(Dataset):
    def __init__(self, datasets: Any):
        structure = _normalize_input(datasets)
        self._children = flatten(structure)
        for d in self._children:
            if not isinstance(d, Dataset):
                raise InvalidArgumentError(f"Dataset.zip: Expect: a tuple or dict of Datasets Actual: "
                                           f"{type(d).__name__}")
        super().__init__(pack(structure, [d._template for d in self._children]),
                         batched=all(d._batched for d in self._children))

    def _inputs(self) -> list:
        return [t for d in self._children for t in d._inputs()]

    def _elements(self, ctx):
        for parts in zip(*[d._elements(ctx) for d in self._children]):
            yield tuple(x for p in parts for x in p)


class _Generator(Dataset):
    def __init__(self, generator, output_types, output_shapes, args):
        if not callable(generator):
            raise InvalidArgumentError(f"Dataset.from_generator: Expect: a callable returning an iterator "
                                       f"Actual: {type(generator).__name__}")
        types = _normalize_input(output_types)
        shapes = flatten(_normalize_input(output_shapes)) if output_shapes is not None else None
        flat_types = flatten(types)
        if shapes is None:
            shapes = [TensorShape(None)] * len(flat_types)
        self._generator, self._args = generator, tuple(args or ())
        super().__init__(pack(types, [_Spec(as_dtype(t), as_shape(s)) for t, s in zip(flat_types, shapes)]))

    def _elements(self, ctx):
        specs = self._specs()
        for item in self._generator(*self._args):
            leaves = flatten(_normalize_input(item))
            if len(leaves) != len(specs):
                raise InvalidArgumentError(f"from_generator: Expect: elements of {len(specs)} component(s) "
                                           f"Actual: {len(leaves)}")
            out = []
            for v, s in zip(leaves, specs):
                arr = _to_array(v, s.dtype)
                if not s.shape.is_compatible_with(arr.shape):
                    raise InvalidArgumentError(f"from_generator: `generator` yielded an element of shape "
                                               f"{list(arr.shape)} where an element of shape {s.shape} was expected")
                out.append(arr)
            yield tuple(out)


class TextLineDataset(Dataset):
    """TF1's ``tf.data.TextLineDataset(filenames)``: each line of the files, in order,
    as a string scalar without its line ending."""

    def __init__(self, filenames: Any, compression_type: str | None = None, buffer_size: int | None = None,
                 num_parallel_reads: int | None = None):
        if compression_type not in (None, ""):
            raise UnsupportedError(f"TextLineDataset: compression_type={compression_type!r} is not supported by "
                                   "distnet.compat.v1; decompress the files first")
        self._files = filenames if isinstance(filenames, Tensor) else \
            [f.decode() if isinstance(f, bytes) else str(f) for f in np.atleast_1d(np.asarray(filenames)).tolist()]
        super().__init__(_Spec(np.bytes_, TensorShape([])))

    def _inputs(self) -> list:
        return [self._files] if isinstance(self._files, Tensor) else []

    def _elements(self, ctx):
        files = self._files
        if isinstance(files, Tensor):
            files = [f.decode() if isinstance(f, bytes) else str(f)
                     for f in np.atleast_1d(ctx.captured[files]).tolist()]
        for name in files:
            yield from ((np.bytes_(line),) for line in read_lines(name))


def read_lines(path: str):
    """The lines of a text file as bytes, without their ``\\n`` / ``\\r\\n`` endings."""
    try:
        f = open(path, "rb")
    except OSError as err:
        from distnet.compat.v1.saver import NotFoundError

        raise NotFoundError(f"{path}; No such file or directory ({err.strerror})") from None
    with f:
        for line in f:
            yield line.rstrip(b"\n").rstrip(b"\r")


class _Map(Dataset):
    def __init__(self, input_dataset: Dataset, fn: Callable, kind: str = "map"):
        if not callable(fn):
            raise InvalidArgumentError(f"Dataset.{kind}: Expect: a function Actual: {type(fn).__name__}")
        self._input = input_dataset
        specs = input_dataset._specs()
        graph = get_default_graph()
        with graph.control_dependencies(None), graph.name_scope(f"{kind}_fn"):
            self._args = [leaf("Arg", _unfed_argument, s.dtype, s.shape, _argument_probes(s), name="arg")
                          for s in specs]
            element = pack(input_dataset._template, self._args)
            result = fn(*element) if type(element) is tuple else fn(element)
            result = _normalize(result)
            if isinstance(result, Dataset):
                raise InvalidArgumentError(f"Dataset.{kind}: the function returned a Dataset; use flat_map or "
                                       "interleave for that")
            leaves = flatten(result)
            self._outputs = [x if isinstance(x, Tensor) else convert_to_tensor(x) for x in leaves]
        template = pack(result, [_Spec(t.dtype, t.shape) for t in self._outputs])
        super().__init__(template, batched=input_dataset._batched)

    def _inputs(self) -> list:
        return self._input._inputs()

    def _elements(self, ctx):
        for e in self._input._elements(ctx):
            yield ctx.run_function(self._args, self._outputs, e)


def _argument_probes(spec: _Spec) -> tuple:
    """Stand-ins for a function's argument: zeros, then ones, so that a size that
    depends on the element's values (``ids[:n]``, ``tf.range(i)``) probes as unknown."""
    zeros, second = probes_for(spec.shape, spec.dtype)
    if spec.dtype is not None and spec.dtype.kind in "biuf":
        second = np.ones_like(second)
    return zeros, second


def _unfed_argument(run, values):
    raise InvalidArgumentError("a tf.data function's argument was evaluated outside of its dataset: fetch the "
                               "iterator's get_next() tensors, not tensors made inside map/filter")


class _Interleave(Dataset):
    def __init__(self, input_dataset: Dataset, fn: Callable, cycle_length: int, block_length: int):
        if not callable(fn):
            raise InvalidArgumentError(f"Dataset.interleave/flat_map: Expect: a function Actual: {type(fn).__name__}")
        self._input = input_dataset
        self._cycle = 1 if cycle_length == AUTOTUNE else cycle_length
        self._block = block_length
        graph = get_default_graph()
        with graph.control_dependencies(None), graph.name_scope("flat_map_fn"):
            self._args = [leaf("Arg", _unfed_argument, s.dtype, s.shape, _argument_probes(s), name="arg")
                          for s in input_dataset._specs()]
            element = pack(input_dataset._template, self._args)
            inner = fn(*element) if type(element) is tuple else fn(element)
        if not isinstance(inner, Dataset):
            raise InvalidArgumentError(f"Dataset.interleave/flat_map: Expect: a function returning a "
                                       f"tf.data.Dataset Actual: {type(inner).__name__}")
        self._inner = inner
        self._inner_inputs = list(dict.fromkeys(inner._inputs()))
        super().__init__(inner._template, inner._batched)

    def _inputs(self) -> list:
        return self._input._inputs()

    def _open(self, ctx: _Context, element: tuple):
        values = ctx.run_function(self._args, self._inner_inputs, element)
        return self._inner._elements(_Context(ctx.session, dict(zip(self._inner_inputs, values)), ctx.fed))

    def _elements(self, ctx):
        source = self._input._elements(ctx)
        slots: list = [None] * self._cycle
        more = True
        i = 0
        while True:
            if slots[i] is None and more:
                e = next(source, None)
                if e is None:
                    more = False
                else:
                    slots[i] = self._open(ctx, e)
            if slots[i] is not None:
                for taken in range(self._block):
                    item = next(slots[i], None)
                    if item is None:
                        slots[i] = None
                        break
                    yield item
            if not more and all(it is None for it in slots):
                return
            i = (i + 1) % self._cycle


class _Unbatch(Dataset):
    def __init__(self, input_dataset: Dataset):
        self._input = input_dataset
        specs = []
        for s in input_dataset._specs():
            if s.shape.ndims == 0:
                raise InvalidArgumentError("unbatch: Expect: elements of rank >= 1 Actual: a scalar component")
            specs.append(_Spec(s.dtype, TensorShape(None) if s.shape.dims is None else
                               TensorShape(s.shape.as_list()[1:])))
        super().__init__(pack(input_dataset._template, specs))

    def _inputs(self) -> list:
        return self._input._inputs()

    def _elements(self, ctx):
        for e in self._input._elements(ctx):
            for row in zip(*e):
                yield tuple(row)


class _Filter(_Map):
    def __init__(self, input_dataset: Dataset, predicate: Callable):
        super().__init__(input_dataset, predicate, kind="filter")
        out = self._outputs
        if len(out) != 1 or out[0].dtype != np.bool_ or out[0].shape.ndims not in (0, None):
            got = ", ".join(f"{t.dtype} {t.shape}" for t in self._outputs)
            raise DTypeError(f"Dataset.filter: Expect: a predicate returning a scalar tf.bool tensor Actual: {got}")
        self._template = input_dataset._template

    def _elements(self, ctx):
        for e in self._input._elements(ctx):
            keep, = ctx.run_function(self._args, self._outputs, e)
            if bool(keep):
                yield e


class _Shuffle(Dataset):
    def __init__(self, input_dataset: Dataset, buffer_size: int, seed: int | None, reshuffle: bool):
        from distnet.compat.v1.array_ops import get_seed

        self._input = input_dataset
        self._size = _check_count("shuffle", "buffer_size", buffer_size)
        self._seed = get_seed(seed)
        self._reshuffle = bool(_bool_arg(reshuffle))
        super().__init__(input_dataset._template, input_dataset._batched)

    def _inputs(self) -> list:
        return self._input._inputs()

    def _generator(self, ctx) -> np.random.Generator:
        state = ctx.state.get(self)
        if state is None:
            from distnet.compat.v1.array_ops import seeded_rng

            if self._seed[0] is None:
                seed = [int(np.random.default_rng().integers(2 ** 32))]
                comm = ctx.session.graph.multi_rank_comm()
                if comm is not None:
                    # Every rank must walk the same order (each then takes its shard): rank 0's draw.
                    seed = [int(comm.bcast_object(seed[0], root=0))]
                rng = np.random.default_rng(seed)
            else:
                rng = seeded_rng(self._seed)
            state = ctx.state[self] = (rng, rng.bit_generator.state)
        rng, start = state
        if not self._reshuffle:
            rng.bit_generator.state = start   # every pass in the same order
        return rng

    def _rows(self, ctx):
        rows = self._input._rows(ctx)
        if rows is None or not isinstance(rows[1], _InOrder):
            return None       # shuffling rows already shuffled: the element path
        arrays, order = rows
        return arrays, _ShuffledRows(order.n, self._size, self._generator(ctx))

    def _elements(self, ctx):
        rng = self._generator(ctx)
        source = self._input._elements(ctx)
        buf = list(itertools.islice(source, self._size))
        for e in source:
            j = int(rng.integers(len(buf)))
            yield buf[j]
            buf[j] = e
        while buf:
            j = int(rng.integers(len(buf)))
            yield buf[j]
            buf[j] = buf[-1]
            buf.pop()


class _InOrder:
    """Row numbers ``0 .. n-1`` of a pass, ``k`` at a time."""

    def __init__(self, n: int):
        self.n, self.next = n, 0

    def take(self, k: int) -> np.ndarray:
        idx = np.arange(self.next, min(self.next + k, self.n))
        self.next += len(idx)
        return idx


class _ShuffledRows:
    """The order ``_Shuffle._elements`` gives the rows ``0 .. n-1`` of a pass: the same buffer
    and the same draws, ``k`` at a time.  A draw's bound is the buffer's length then, known in
    advance (``size`` while rows remain to fill it, then one less per row), so the draws of ``k``
    rows are one call of the generator, which gives the numbers of ``k`` calls one by one."""

    def __init__(self, n: int, size: int, rng: np.random.Generator):
        self.n, self.rng = n, rng
        self.buf = list(range(min(size, n)))
        self.first = self.fill = len(self.buf)     # the buffer's length while rows enter it; the next row
        self.left = n                 # rows not yet given

    def take(self, k: int) -> np.ndarray:
        k = min(k, self.left)
        if k == 0:
            return np.zeros(0, np.int64)
        given = self.n - self.left
        # The draw for the t-th row given is bounded by the buffer's length then: full while rows
        # enter it, then one less per row given.
        bounds = np.minimum(self.n - np.arange(given, given + k), self.first)
        draws = self.rng.integers(bounds).tolist()
        buf, out = self.buf, []
        for j in draws:
            out.append(buf[j])
            if self.fill < self.n:
                buf[j] = self.fill
                self.fill += 1
            else:
                buf[j] = buf[-1]
                buf.pop()
        self.left -= k
        return np.asarray(out, dtype=np.int64)


def _bool_arg(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"shuffle: reshuffle_each_iteration: Expect: a bool Actual: {value!r}")
    return bool(value)


class _Batch(Dataset):
    def __init__(self, input_dataset: Dataset, batch_size: int, drop_remainder: bool, padded: tuple | None = None):
        self._input = input_dataset
        self._n = _check_count("batch", "batch_size", batch_size)
        self._drop = bool(drop_remainder)
        first = self._n if self._drop else None
        specs = input_dataset._specs()
        self._pad_shapes = self._pad_values = None
        if padded is not None:
            shapes, values = padded
            shapes = [s.shape for s in specs] if shapes is None else \
                [as_shape(s) for s in flatten(_normalize_input(shapes))]
            if len(shapes) != len(specs):
                raise InvalidArgumentError(f"padded_batch: padded_shapes: Expect: {len(specs)} shape(s), one per "
                                           f"component Actual: {len(shapes)}")
            shapes = [TensorShape([None if d.value in (None, -1) else d.value for d in s.dims]) for s in shapes]
            for s, p in zip(specs, shapes):
                if s.shape.ndims is not None and s.shape.ndims != p.ndims:
                    raise InvalidArgumentError(f"padded_batch: padded_shapes: Expect: rank {s.shape.ndims} "
                                               f"(the component's) Actual: {p}")
            values = [None] * len(specs) if values is None else flatten(_normalize_input(values))
            self._pad_shapes, self._pad_values = shapes, values
            out = [_Spec(s.dtype, TensorShape([first] + p.as_list())) for s, p in zip(specs, shapes)]
        else:
            out = [_Spec(s.dtype, TensorShape(None) if s.shape.dims is None else
                         TensorShape([first] + [d.value for d in s.shape.dims])) for s in specs]
        super().__init__(pack(input_dataset._template, out), batched=True)

    def _inputs(self) -> list:
        return self._input._inputs()

    def _elements(self, ctx):
        rows = None if self._pad_shapes is not None else self._input._rows(ctx)
        if rows is not None:
            yield from self._gathered(*rows)
            return
        buf = []
        for e in self._input._elements(ctx):
            buf.append(e)
            if len(buf) == self._n:
                yield self._stack(buf)
                buf = []
        if buf and not self._drop:
            yield self._stack(buf)

    def _gathered(self, arrays: list, order: Any):
        """The batches of rows: each the rows ``order`` gives, taken from every array at once."""
        while True:
            idx = order.take(self._n)
            if len(idx) == 0 or (self._drop and len(idx) < self._n):
                return
            yield tuple(a[idx] for a in arrays)

    def _stack(self, buf: list) -> tuple:
        out = []
        for i in range(len(buf[0])):
            parts = [np.asarray(e[i]) for e in buf]
            if self._pad_shapes is not None:
                parts = _pad(parts, self._pad_shapes[i], self._pad_values[i], i)
            first = parts[0].shape
            for k, p in enumerate(parts):
                if p.shape != first:
                    raise InvalidArgumentError(
                        f"Cannot batch tensors with different shapes in component {i}. First element had shape "
                        f"{list(first)} and element {k} had shape {list(p.shape)}; use padded_batch")
            out.append(np.stack(parts))
        return tuple(out)


def _pad(parts: list, shape: TensorShape, value: Any, component: int) -> list:
    longest = np.max([p.shape for p in parts], axis=0) if parts[0].ndim else ()
    target = [int(m) if d.value is None else d.value for d, m in zip(shape.dims, longest)]
    fill = np.asarray(value if value is not None else (b"" if parts[0].dtype.kind == "S" else 0),
                      dtype=parts[0].dtype)
    out = []
    for p in parts:
        if any(n > t for n, t in zip(p.shape, target)):
            raise InvalidArgumentError(f"padded_batch: component {component}: Expect: elements no larger than the "
                                       f"padded shape {target} Actual: an element of shape {list(p.shape)}")
        q = np.full(target, fill, dtype=p.dtype)
        q[tuple(slice(0, n) for n in p.shape)] = p
        out.append(q)
    return out


class _Repeat(Dataset):
    def __init__(self, input_dataset: Dataset, count: int | None):
        self._input = input_dataset
        self._count = -1 if count is None else _check_count("repeat", "count", count, minimum=-1)
        super().__init__(input_dataset._template, input_dataset._batched)

    def _inputs(self) -> list:
        return self._input._inputs()

    def _elements(self, ctx):
        done = 0
        while self._count < 0 or done < self._count:
            empty = True
            for e in self._input._elements(ctx):
                empty = False
                yield e
            if empty:
                return   # an empty input repeated for ever is empty (TF1)
            done += 1


class _Slice(Dataset):
    """take, skip and shard: which positions of the input pass."""

    def __init__(self, input_dataset: Dataset, kind: str, count: int, index: int = 0):
        self._input, self._kind = input_dataset, kind
        if kind == "shard":
            self._count = _check_count("shard", "num_shards", count)
            index = _check_count("shard", "index", index, minimum=0)
            if index >= self._count:
                raise InvalidArgumentError(f"shard: Expect: index between 0 and {self._count - 1} "
                                           f"Actual: index = {index}")
            self._index = index
        else:
            self._count = _check_count(kind, "count", count, minimum=-1)
        super().__init__(input_dataset._template, input_dataset._batched)

    def _inputs(self) -> list:
        return self._input._inputs()

    def _elements(self, ctx):
        source = self._input._elements(ctx)
        if self._kind == "shard":
            return itertools.islice(source, self._index, None, self._count)
        if self._kind == "take":
            return source if self._count < 0 else itertools.islice(source, self._count)
        if self._count < 0:
            return iter(())
        return itertools.islice(source, self._count, None)


class _Cache(Dataset):
    def __init__(self, input_dataset: Dataset):
        self._input = input_dataset
        super().__init__(input_dataset._template, input_dataset._batched)

    def _inputs(self) -> list:
        return self._input._inputs()

    def _elements(self, ctx):
        cached = ctx.state.get(self)
        if cached is not None:
            yield from cached
            return
        seen = []
        for e in self._input._elements(ctx):
            seen.append(e)
            yield e
        ctx.state[self] = seen     # only a complete pass is replayed


class _Concatenate(Dataset):
    def __init__(self, first: Dataset, second: Dataset):
        if not isinstance(second, Dataset):
            raise InvalidArgumentError(f"concatenate: Expect: a Dataset Actual: {type(second).__name__}")
        a, b = first._specs(), second._specs()
        if [s.dtype for s in a] != [s.dtype for s in b]:
            raise DTypeError(f"concatenate: Expect: datasets of the same types Actual: {first.output_types} and "
                             f"{second.output_types}")
        self._parts = (first, second)
        merged = [_Spec(x.dtype, x.shape if x.shape.as_list() == y.shape.as_list() or x.shape.dims is None else
                        TensorShape([d.value if d == e else None for d, e in zip(x.shape.dims, y.shape.dims)])
                        if y.shape.ndims == x.shape.ndims else TensorShape(None)) for x, y in zip(a, b)]
        super().__init__(pack(first._template, merged), first._batched and second._batched)

    def _inputs(self) -> list:
        return self._parts[0]._inputs() + self._parts[1]._inputs()

    def _elements(self, ctx):
        for d in self._parts:
            yield from d._elements(ctx)


# -- iterators ----------------------------------------------------------------------------------

class Iterator(_ElementStructure):
    """TF1's ``tf.data.Iterator``: made by ``make_one_shot_iterator``,
    ``make_initializable_iterator`` or ``Iterator.from_structure``.

    Its position is the session's (see the module doc); ``get_next()`` returns
    the element's structure of tensors.
    """

    def __init__(self, template: Any, dataset: Dataset | None, one_shot: bool, batched: bool = False):
        self._template = template
        self._one_shot_dataset = dataset if one_shot else None
        self._batched = batched
        self._initializer = None
        self._graph = get_default_graph()
        self._outputs: list = []     # the get_next ops made so far

    @staticmethod
    def from_structure(output_types: Any, output_shapes: Any = None, shared_name: str | None = None,
                       output_classes: Any = None) -> "Iterator":
        """An iterator for any dataset of this structure, started by ``make_initializer(dataset)``."""
        types = _normalize_input(output_types)
        flat_types = flatten(types)
        shapes = [TensorShape(None)] * len(flat_types) if output_shapes is None else \
            [as_shape(s) for s in flatten(_normalize_input(output_shapes))]
        if len(shapes) != len(flat_types):
            raise InvalidArgumentError(f"Iterator.from_structure: Expect: one shape per type ({len(flat_types)}) "
                                       f"Actual: {len(shapes)}")
        return Iterator(pack(types, [_Spec(as_dtype(t), s) for t, s in zip(flat_types, shapes)]), None,
                        one_shot=False)

    @staticmethod
    def from_string_handle(*args, **kwargs):
        raise UnsupportedError("tf.data.Iterator.from_string_handle is not supported by distnet.compat.v1; "
                               "nearest supported: Iterator.from_structure(...) with make_initializer(dataset) "
                               "for each dataset")

    def string_handle(self, name=None):
        raise UnsupportedError("Iterator.string_handle is not supported by distnet.compat.v1; nearest supported: "
                               "Iterator.from_structure(...) with make_initializer(dataset)")

    @property
    def initializer(self):
        if self._initializer is None:
            raise ValueError("Iterator does not have an initializer." if self._one_shot_dataset is not None else
                             "This iterator was made by Iterator.from_structure: run "
                             "iterator.make_initializer(dataset) instead")
        return self._initializer

    def make_initializer(self, dataset: Dataset, name: str | None = None):
        """An op that starts this iterator on ``dataset`` (again, when run again)."""
        if not isinstance(dataset, Dataset):
            raise InvalidArgumentError(f"make_initializer: Expect: a tf.data.Dataset Actual: {type(dataset).__name__}")
        mine, theirs = flatten(self._template), dataset._specs()
        if [s.dtype for s in mine] != [s.dtype for s in theirs]:
            raise TypeError(f"Expected output types {self.output_types} but got dataset with output types "
                            f"{dataset.output_types}.")
        for a, b in zip(mine, theirs):
            if not a.shape.is_compatible_with(b.shape):
                raise TypeError(f"Expected output shapes compatible with {self.output_shapes} but got dataset with "
                                f"output shapes {dataset.output_shapes}.")
        inputs = list(dict.fromkeys(dataset._inputs()))
        key = ("iterator", self)
        if dataset._batched:
            # Iterator.from_structure learns here that its elements are batches (samples to count).
            self._batched = True
            for op in self._outputs:
                op._data_batch = True

        def compute(run, values):
            ctx = _Context(run.session, {t: _array(v) for t, v in zip(inputs, values)}, run.fed)
            run.session.set_resource(key, _Position(dataset._elements(ctx), dataset._batched))

        return no_output("MakeIterator", compute, inputs, name=name or "MakeIterator")

    def get_next(self, name: str | None = None):
        """The next element's tensors (one element per run of this call's ops)."""
        key, dataset = ("iterator", self), self._one_shot_dataset

        def compute(run, values):
            position = run.session.resource(key)
            if position is None:
                if dataset is None:
                    raise FailedPreconditionError(
                        "GetNext() failed because the iterator has not been initialized. Ensure that you have run "
                        "the initializer operation for this iterator before getting the next element.")
                ctx = _Context(run.session, _evaluate(run.session, list(dict.fromkeys(dataset._inputs()))))
                position = _Position(dataset._elements(ctx), dataset._batched)
                run.session.set_resource(key, position)
            return position.next()

        out = multi_output("IteratorGetNext", compute, [], flatten(self._template), self._template,
                           name=name, data=True, batched=self._batched, ends=True)
        self._outputs.extend(t.op for t in flatten(out))
        return out

    def get_next_as_optional(self):
        raise UnsupportedError("Iterator.get_next_as_optional is not supported by distnet.compat.v1; "
                               "nearest supported: get_next() with `except tf.errors.OutOfRangeError`")


class _Position:
    """Where an iterator is, in one session: a generator of elements."""

    def __init__(self, elements, batched: bool):
        self._elements = elements
        self.batched = batched

    def next(self) -> tuple:
        try:
            return next(self._elements)
        except StopIteration:
            raise OutOfRangeError("End of sequence") from None


def multi_output(op_type: str, compute: Callable, inputs: list, specs: list, template: Any, name: str | None = None,
                 data: bool = False, batched: bool = False, ends: bool = False) -> Any:
    """An op with several outputs: ``compute(run, values)`` returns a tuple of arrays,
    computed once per run; one tensor per ``specs`` entry picks its part.

    ``data=True`` marks the outputs as the program's data (what ``DistributedOptimizer``
    splits a loss by and, with ``batched``, counts samples in).  ``ends=True``: the op
    may raise OutOfRangeError, and does so on every rank together once a
    ``DistributedOptimizer`` reads it (see :func:`_on_every_rank`)."""
    this: list = []

    def run_op(run, values):
        comm = getattr(this[0], "end_together", None)
        if comm is None or comm.size == 1:
            return compute(run, values)
        return _on_every_rank(compute, run, values, comm)

    whole = leaf(op_type, run_op if ends else compute, None, TensorShape(None), None, name=name or op_type,
                 inputs=inputs)
    this.append(whole.op)
    if ends:
        whole.op.iterator = True     # DistributedOptimizer sets end_together on the ones its loss reads
    outs = []
    for i, s in enumerate(specs):
        def pick(run, values, i=i):
            return _eager(values[0][i])

        t = leaf(op_type, pick, s.dtype, s.shape, probes_for(s.shape, s.dtype if s.dtype is not None else np.float32),
                 name=f"{whole.op.name}/component_{i}", inputs=[whole])
        if data:
            t.op._placeholder = True
            t.op._data_batch = batched
        outs.append(t)
    return pack(template, outs)


def _on_every_rank(compute: Callable, run, values, comm) -> Any:
    """``compute``'s value, or OutOfRangeError on every rank as soon as one rank's input ends.

    An input that feeds a DistributedOptimizer's loss ends on all ranks together: a
    rank whose shard ran out would otherwise leave the others waiting in the
    gradient all-reduce.  The ranks that still had data drop this run's part (as
    ``drop_remainder`` would); give every rank as many batches to train on all."""
    try:
        value, missing = compute(run, values), 0.0
    except OutOfRangeError:
        value, missing = None, 1.0
    flag = np.array([missing])
    comm.allreduce_(flag)
    if flag[0] > 0:
        raise OutOfRangeError("End of sequence" if value is None else
                              f"End of sequence on {int(flag[0])} other rank(s): the ranks' inputs end together "
                              "(this rank's next element is dropped)")
    return value


def make_one_shot_iterator(dataset: Dataset) -> Iterator:
    """``tf.data.make_one_shot_iterator(dataset)`` (TF 1.13+ spelling)."""
    return dataset.make_one_shot_iterator()


def make_initializable_iterator(dataset: Dataset, shared_name: str | None = None) -> Iterator:
    """``tf.data.make_initializable_iterator(dataset)`` (TF 1.13+ spelling)."""
    return dataset.make_initializable_iterator(shared_name)


def get_output_types(dataset_or_iterator):
    return dataset_or_iterator.output_types


def get_output_shapes(dataset_or_iterator):
    return dataset_or_iterator.output_shapes


def get_output_classes(dataset_or_iterator):
    return dataset_or_iterator.output_classes


def _not_supported(name: str, hint: str):
    return refuser(f"data.{name}", hint)


TFRecordDataset = _not_supported("TFRecordDataset", "distnet reads no TFRecord files: convert the records to numpy "
                                 "arrays and use tf.data.Dataset.from_tensor_slices")
FixedLengthRecordDataset = _not_supported("FixedLengthRecordDataset", "read the file with numpy "
                                          "(np.fromfile) and use tf.data.Dataset.from_tensor_slices")
