"""Read a checkpoint back into a :class:`CheckpointState`, trusting nothing.

:func:`load` treats every file as untrusted.  Before reading a byte of array
data it walks the file's structure with h5py's low-level API, link by link,
without following any link, and rejects anything the writer never produces:

* soft, external and user-defined links, and objects reachable by two hard
  links (aliases, cycles);
* named datatypes and any object that is not a group or a dataset;
* virtual datasets, datasets whose raw data lives in external files,
  datasets stored without the fletcher32 checksum or with any other filter
  (an unknown filter id would make HDF5 look for a plugin);
* dtypes other than IEEE float16/32/64 and 8- to 64-bit integers (so no
  object references, opaque, variable-length, compound, enum, array or
  string data);
* declared shapes that do not match ``expected``, arrays whose chunks were
  never written, and a total declared size larger than the file itself
  (no memory blow-up from a crafted shape: arrays are stored uncompressed,
  so their bytes must be in the file);
* unknown groups and attributes, attributes that are not scalar strings or
  integers.

Then it reads the arrays (HDF5 verifies each chunk's fletcher32 checksum),
recomputes the SHA-256 digest and compares it with the stored one.  Every
failure is a :class:`~distnet.errors.CheckpointError` naming the file.
"""
from __future__ import annotations

import json
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import h5py
import numpy as np

from distnet.checkpoint.state import (
    FORMAT_NAME, READABLE_VERSIONS, CheckpointMismatchError, CheckpointState,
    CorruptCheckpointError, NonFiniteCheckpointError, UnsafeCheckpointError, check_name, nonfinite_arrays,
)
from distnet.checkpoint.writer import INT_ATTRIBUTES, Digest
from distnet.errors import CheckpointError, DistnetError, InvalidArgumentError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Limits on the structure of an untrusted file.
MAX_OBJECTS = 100_000
MAX_DEPTH = 32
#: Largest text attribute accepted (the job file's text, JSON of RNG states).
MAX_TEXT_BYTES = 16 * 2 ** 20

_ALLOWED_TYPES = tuple(getattr(h5py.h5t, f"{kind}{bits}{order}")
                       for kind, sizes in (("IEEE_F", (16, 32, 64)),
                                           ("STD_I", (8, 16, 32, 64)),
                                           ("STD_U", (8, 16, 32, 64)))
                       for bits in sizes for order in ("LE", "BE"))
_TYPE_CLASS_NAMES = {
    h5py.h5t.INTEGER: "integer", h5py.h5t.FLOAT: "float", h5py.h5t.TIME: "time",
    h5py.h5t.STRING: "string", h5py.h5t.BITFIELD: "bitfield", h5py.h5t.OPAQUE: "opaque",
    h5py.h5t.COMPOUND: "compound", h5py.h5t.REFERENCE: "object/region reference",
    h5py.h5t.ENUM: "enum", h5py.h5t.VLEN: "variable-length", h5py.h5t.ARRAY: "array",
}
_LAYOUT_NAMES = {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous",
                 h5py.h5d.CHUNKED: "chunked", h5py.h5d.VIRTUAL: "virtual"}

# Attributes each group must carry (and no others), in format version 1.
_GROUP_ATTRIBUTES = {
    "/": {"format", "sha256"},
    "/optimizer": {"name", "iterations", "hyper"},
    "/state": {"format_version", "distnet_version", "step", "epoch", "position", "world_size",
               "config_text", "rng", "metrics"},
}


def _group_attributes(version: int) -> dict[str, set[str]]:
    """The attributes of each group in format ``version`` (2 added /state@data, 3 /state@conv_algorithms)."""
    out = {g: set(names) for g, names in _GROUP_ATTRIBUTES.items()}
    if version >= 2:
        out["/state"].add("data")
    if version >= 3:
        out["/state"].add("conv_algorithms")
    return out
_TOP_GROUPS = {"params", "ema", "optimizer", "state"}


@dataclass(frozen=True)
class _Dataset:
    path: str           # HDF5 path without the leading '/', e.g. 'params/dense/kernel'
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    id: Any = field(compare=False, repr=False)  # the open h5py DatasetID (no path lookups later)


def _type_name(tid: Any) -> str:
    cls = tid.get_class()
    name = _TYPE_CLASS_NAMES.get(cls, f"class {cls}")
    return f"{name} ({tid.get_size()} bytes)"


class _Scanner:
    """Walks an open file's links without following any, collecting datasets
    and checking every object against what the writer produces."""

    def __init__(self, fname: str, version: int):
        self.fname = fname
        self.attributes = _group_attributes(version)
        self.datasets: dict[str, _Dataset] = {}
        self.groups: set[str] = set()
        self.count = 0

    def unsafe(self, msg: str) -> UnsafeCheckpointError:
        return UnsafeCheckpointError(f"checkpoint {self.fname}: {msg}; refusing to read it")

    def walk(self, gid: Any, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.unsafe(f"groups nested deeper than {MAX_DEPTH} at {path!r}")
        names: list[bytes] = []

        def collect(name: bytes) -> int | None:
            names.append(name)
            return 1 if len(names) + self.count > MAX_OBJECTS else None

        gid.links.iterate(collect)
        self.count += len(names)
        if self.count > MAX_OBJECTS:
            raise self.unsafe(f"more than {MAX_OBJECTS} objects")
        self.check_attributes(gid, path)
        for raw in names:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.unsafe(f"link name {raw!r} in {path!r} is not UTF-8") from None
            child = f"{path.rstrip('/')}/{name}"
            info = gid.links.get_info(raw)
            if info.type == h5py.h5l.TYPE_SOFT:
                raise self.unsafe(f"{child!r} is a soft link (a checkpoint holds no links)")
            if info.type == h5py.h5l.TYPE_EXTERNAL:
                raise self.unsafe(f"{child!r} is an external link to another file")
            if info.type != h5py.h5l.TYPE_HARD:
                raise self.unsafe(f"{child!r} is a user-defined link (type {info.type})")
            oid = h5py.h5o.open(gid, raw)
            oinfo = h5py.h5o.get_info(oid)
            if oinfo.rc != 1:
                raise self.unsafe(f"{child!r} is reachable by {oinfo.rc} hard links (aliases or a cycle)")
            if isinstance(oid, h5py.h5g.GroupID):
                self.groups.add(child)
                self.walk(oid, child, depth + 1)
            elif isinstance(oid, h5py.h5d.DatasetID):
                if oinfo.num_attrs:
                    raise self.unsafe(f"dataset {child!r} has attributes; checkpoint arrays have none")
                self.check_dataset(oid, child)
            else:
                raise self.unsafe(f"{child!r} is a {type(oid).__name__} (e.g. a named datatype), "
                                  "not a group or a dataset")

    def check_attributes(self, oid: Any, path: str) -> None:
        allowed = self.attributes.get(path, set())
        names: list[bytes] = []
        h5py.h5a.iterate(oid, lambda n: names.append(n) if len(names) <= 64 else 1)
        for raw in names:
            name = raw.decode("utf-8", "replace")
            if name not in allowed:
                raise self.unsafe(f"unexpected attribute {name!r} on {path!r}")
            aid = h5py.h5a.open(oid, raw)
            if aid.shape != ():
                raise self.unsafe(f"attribute {path}@{name}: shape: Expect: a scalar Actual: {aid.shape}")
            tid = aid.get_type()
            cls = tid.get_class()
            if cls == h5py.h5t.STRING:
                if tid.is_variable_str():
                    # Variable-length strings live in the unchecksummed global
                    # heap; the writer never uses them.
                    raise self.unsafe(f"attribute {path}@{name}: Expect: a fixed-length string "
                                      "Actual: a variable-length string")
                if tid.get_size() > MAX_TEXT_BYTES:
                    raise self.unsafe(f"attribute {path}@{name} is {tid.get_size()} bytes long")
            elif cls != h5py.h5t.INTEGER:
                raise self.unsafe(f"attribute {path}@{name}: dtype: Expect: a string or an integer "
                                  f"Actual: {_type_name(tid)}")

    def check_dataset(self, did: Any, path: str) -> None:
        tid = did.get_type()
        if not any(tid.equal(t) for t in _ALLOWED_TYPES):
            raise self.unsafe(f"dataset {path!r}: dtype: Expect: IEEE float16/32/64 or an 8- to "
                              f"64-bit integer Actual: {_type_name(tid)}")
        space = did.get_space()
        kind = space.get_simple_extent_type()
        if kind not in (h5py.h5s.SIMPLE, h5py.h5s.SCALAR):
            raise self.unsafe(f"dataset {path!r} has a null dataspace")
        shape = () if kind == h5py.h5s.SCALAR else tuple(int(d) for d in space.shape)
        dtype = tid.dtype
        nbytes = dtype.itemsize
        for d in shape:
            nbytes *= d
        dcpl = did.get_create_plist()
        layout = dcpl.get_layout()
        if layout == h5py.h5d.VIRTUAL:
            raise self.unsafe(f"dataset {path!r} is a virtual dataset (its data lives in other files)")
        if dcpl.get_external_count():
            raise self.unsafe(f"dataset {path!r} keeps its raw data in an external file")
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        size = 1
        for d in shape:
            size *= d
        if layout == h5py.h5d.CHUNKED:
            if filters != [h5py.h5z.FILTER_FLETCHER32]:
                raise self.unsafe(f"dataset {path!r}: filters: Expect: only fletcher32 "
                                  f"({h5py.h5z.FILTER_FLETCHER32}) Actual: {filters}")
            chunk = dcpl.get_chunk()
            if len(chunk) != len(shape) or any(c < 1 or c > max(d, 1) for c, d in zip(chunk, shape)):
                raise self.unsafe(f"dataset {path!r} has chunks {chunk} that do not fit its shape {shape}")
        elif layout in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT):
            if filters:
                raise self.unsafe(f"dataset {path!r} has filters {filters} without chunking")
            if shape != () and size != 0:
                raise self.unsafe(f"dataset {path!r} of shape {shape} is stored without checksum "
                                  f"({_LAYOUT_NAMES[layout]}); the writer chunks it with fletcher32")
        else:
            raise self.unsafe(f"dataset {path!r} has an unknown layout {layout}")
        self.datasets[path.lstrip("/")] = _Dataset(path.lstrip("/"), shape, dtype, nbytes, did)


def _read_text(value: Any, fname: str, where: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptCheckpointError(f"checkpoint {fname}: attribute {where} is not UTF-8") from None
    if not isinstance(value, str):
        raise CorruptCheckpointError(f"checkpoint {fname}: attribute {where} is not text "
                                     f"(got {type(value).__name__})")
    if len(value) > MAX_TEXT_BYTES:
        raise UnsafeCheckpointError(f"checkpoint {fname}: attribute {where} is longer than "
                                    f"{MAX_TEXT_BYTES} characters")
    return value


def _read_header(f: h5py.File, fname: str, version: int) -> dict[str, str]:
    header: dict[str, str] = {}
    for group, names in _group_attributes(version).items():
        attrs = f[group].attrs
        for name in sorted(names - {"sha256"}):  # the digest covers the rest
            key = f"{group.rstrip('/')}/{name}"
            if name not in attrs:
                raise CorruptCheckpointError(f"checkpoint {fname}: attribute {key} is missing")
            value = attrs[name]
            if key in INT_ATTRIBUTES:
                if not isinstance(value, (np.integer, int)):
                    raise CorruptCheckpointError(
                        f"checkpoint {fname}: attribute {key}: Expect: an integer Actual: {value!r:.60}")
                header[key] = str(int(value))
            else:
                header[key] = _read_text(value, fname, key)
    return header


def _parse_json(text: str, fname: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise CorruptCheckpointError(f"checkpoint {fname}: attribute {where} is not valid JSON: "
                                     f"{type(err).__name__}: {str(err)[:200]}") from None


_Expected = dict[str, tuple[tuple[int, ...], "np.dtype | None"]]


def _normalise_expected(expected: Any) -> _Expected | None:
    """Check the caller's ``expected`` before touching the file."""
    if expected is None:
        return None
    if not isinstance(expected, Mapping):
        raise InvalidArgumentError(
            f"expected: Expect: a dict {{name: (shape, dtype)}} or None Actual: {type(expected).__name__}")
    exp: _Expected = {}
    for name, spec in expected.items():
        check_name(name, "expected variable name")
        try:
            shape, dtype = spec
            exp[name] = (tuple(int(d) for d in shape), None if dtype is None else np.dtype(dtype))
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"expected[{name!r}]: Expect: (shape, dtype) Actual: {spec!r:.80}") from None
    return exp


def _check_expected(datasets: Mapping[str, _Dataset], exp: _Expected, fname: str) -> None:
    """Compare declared shapes and dtypes with the model's, listing every problem."""
    params = {p[len("params/"):]: d for p, d in datasets.items() if p.startswith("params/")}
    missing = sorted(set(exp) - set(params))
    unexpected = sorted(set(params) - set(exp))
    mismatched = []
    for path, d in sorted(datasets.items()):
        group, _, name = path.partition("/")
        if group == "optimizer":
            name = name.partition("/")[2]
        if name not in exp:
            if group != "params":  # an EMA shadow or slot of an unknown variable
                unexpected.append(f"/{path}")
            continue
        shape, dtype = exp[name]
        if d.shape != shape:
            mismatched.append(f"/{path}: file {list(d.shape)}, model {list(shape)}")
        elif group == "params" and dtype is not None and d.dtype.newbyteorder("=") != dtype.newbyteorder("="):
            mismatched.append(f"/{path}: file dtype {d.dtype}, model {dtype}")
    problems = []
    if missing:
        problems.append(f"missing variables (in the model, not in the file): {missing}")
    if unexpected:
        problems.append(f"unexpected variables (in the file, not in the model): {unexpected}")
    if mismatched:
        problems.append("shape or dtype mismatches: " + "; ".join(mismatched))
    if problems:
        raise CheckpointMismatchError(f"checkpoint {fname} does not match the model: " + "; ".join(problems))


def _scalar_attribute(group: h5py.Group, name: str, fname: str) -> Any:
    """An attribute of ``group``, checked to be a small scalar before it is read."""
    where = group.name.rstrip("/") + "/" + name
    if name not in group.attrs:
        raise CorruptCheckpointError(f"checkpoint {fname}: attribute {where} is missing "
                                     "(not a distnet checkpoint)")
    aid = h5py.h5a.open(group.id, name.encode())
    tid = aid.get_type()
    if aid.shape != () or tid.get_class() not in (h5py.h5t.STRING, h5py.h5t.INTEGER) \
            or tid.get_size() > 1024 or (tid.get_class() == h5py.h5t.STRING and tid.is_variable_str()):
        raise UnsafeCheckpointError(f"checkpoint {fname}: attribute {where} is not a "
                                    "scalar fixed-length string or integer")
    return group.attrs[name]


def _state_group(f: h5py.File, fname: str) -> h5py.Group:
    """/state, checked to be a hard-linked group before it is opened."""
    link = f.get("state", getlink=True)
    if link is None:
        raise CorruptCheckpointError(f"checkpoint {fname}: group /state is missing")
    if not isinstance(link, h5py.HardLink):
        kind = {"SoftLink": "a soft link", "ExternalLink": "an external link"}.get(type(link).__name__, "a link")
        raise UnsafeCheckpointError(f"checkpoint {fname}: /state is {kind}, not a group; "
                                    "refusing to read it")
    group = f["state"]
    if not isinstance(group, h5py.Group):
        raise CorruptCheckpointError(f"checkpoint {fname}: /state is not a group")
    return group


def _open(fname: str) -> h5py.File:
    if not os.path.exists(fname):
        raise CheckpointError(f"checkpoint {fname} does not exist")
    if not os.path.isfile(fname):
        raise CheckpointError(f"checkpoint {fname} is not a regular file")
    with open(fname, "rb") as fh:
        head = fh.read(len(_HDF5_SIGNATURE))
    if head != _HDF5_SIGNATURE:
        raise CorruptCheckpointError(f"checkpoint {fname}: Expect: an HDF5 file (its signature) "
                                     f"Actual: first bytes {head!r}")
    try:
        # rdcc_nbytes=0: chunks are read once, straight into the output array.
        return h5py.File(fname, "r", rdcc_nbytes=0)
    except Exception as err:  # h5py reports a damaged file as OSError (sometimes others)
        raise CorruptCheckpointError(f"checkpoint {fname} cannot be opened as HDF5 "
                                     f"(truncated or corrupt): {err}") from None


def _load(fname: str, expected: _Expected | None, max_bytes: int | None) -> CheckpointState:
    with _open(fname) as f:
        file_size = os.path.getsize(fname)
        # Format and version first: a newer layout is reported as such.
        fmt = _scalar_attribute(f, "format", fname)
        fmt = fmt.decode("utf-8", "replace") if isinstance(fmt, bytes) else fmt
        if fmt != FORMAT_NAME:
            raise CorruptCheckpointError(f"checkpoint {fname}: root attribute 'format': Expect: "
                                         f"{FORMAT_NAME!r} Actual: {fmt!r:.80} (not a distnet checkpoint)")
        version = _scalar_attribute(_state_group(f, fname), "format_version", fname)
        if not isinstance(version, (np.integer, int)) or int(version) not in READABLE_VERSIONS:
            shown = int(version) if isinstance(version, (np.integer, int)) else repr(version)[:80]
            raise CorruptCheckpointError(f"checkpoint {fname} has format version {shown}; "
                                         f"this distnet reads versions "
                                         f"{', '.join(map(str, READABLE_VERSIONS))}")
        version = int(version)
        scanner = _Scanner(fname, version)
        scanner.walk(f.id, "/", 0)
        top = {g.lstrip("/") for g in scanner.groups if g.count("/") == 1}
        top |= {p.split("/")[0] for p in scanner.datasets if "/" not in p}
        if top != _TOP_GROUPS:
            missing = sorted(_TOP_GROUPS - top)
            extra = sorted(top - _TOP_GROUPS)
            raise CorruptCheckpointError(f"checkpoint {fname}: top-level groups: Expect: exactly "
                                         f"{sorted(_TOP_GROUPS)} Actual: missing {missing}, unexpected {extra}")
        for path in scanner.datasets:
            if "/" not in path:
                raise CorruptCheckpointError(f"checkpoint {fname}: {path!r} should be a group")
            group, rest = path.split("/", 1)
            if group == "state":
                raise UnsafeCheckpointError(f"checkpoint {fname}: unexpected dataset /{path} in /state")
            if group == "optimizer" and "/" not in rest:
                raise CorruptCheckpointError(f"checkpoint {fname}: /{path} should be a slot group")
            for part in rest.split("/"):
                try:
                    check_name(part)
                except InvalidArgumentError:
                    raise UnsafeCheckpointError(f"checkpoint {fname}: invalid name /{path}") from None
        # Groups that hold at least one dataset somewhere below them.
        filled = {"/" + "/".join(p.split("/")[:i]) for p in scanner.datasets
                  for i in range(1, p.count("/") + 1)}
        for g in scanner.groups:
            parts = g.split("/")[1:]
            if parts[0] == "state" and len(parts) > 1:
                raise UnsafeCheckpointError(f"checkpoint {fname}: unexpected group {g} in /state")
            inner = len(parts) > (2 if parts[0] == "optimizer" else 1)
            if inner and g not in filled:
                raise CorruptCheckpointError(f"checkpoint {fname}: empty group {g}")
        declared = sum(d.nbytes for d in scanner.datasets.values())
        limit = file_size if max_bytes is None else min(file_size, max_bytes)
        if declared > limit:
            raise UnsafeCheckpointError(
                f"checkpoint {fname} declares {declared} bytes of arrays but "
                + (f"the file has only {file_size} bytes (arrays are stored uncompressed)"
                   if limit == file_size else f"the limit is max_bytes={max_bytes}"))
        if expected is not None:
            _check_expected(scanner.datasets, expected, fname)
        header = _read_header(f, fname, version)
        for path, d in sorted(scanner.datasets.items()):
            stored = d.id.get_storage_size() if d.nbytes else 0
            if stored < d.nbytes:
                raise CorruptCheckpointError(f"checkpoint {fname}: dataset /{path} stores {stored} "
                                             f"bytes for {d.nbytes} declared (chunks never written)")
        arrays, hasher = _read_and_hash(f, scanner.datasets, fname)
        digest = hasher.finish(header)
        stored_digest = _read_text(f.attrs["sha256"], fname, "/sha256")
        if digest != stored_digest:
            raise CorruptCheckpointError(f"checkpoint {fname}: SHA-256 digest mismatch (stored "
                                         f"{stored_digest[:16]}..., computed {digest[:16]}...): the file "
                                         "was modified or damaged")
    return _build_state(fname, header, arrays, scanner.groups)


def _read_into(did: Any, out: np.ndarray) -> None:
    """Read a whole dataset into ``out`` (HDF5 verifies each chunk's fletcher32)."""
    did.read(h5py.h5s.ALL, h5py.h5s.ALL, out)


#: Arrays are handed to the hashing thread in batches of at least this size
#: (one hand-off per small array costs more than hashing it).
_HASH_BATCH_BYTES = 2 ** 20


def _read_and_hash(f: h5py.File, datasets: Mapping[str, _Dataset],
                   fname: str) -> tuple[dict[str, np.ndarray], Digest]:
    """Read every dataset while a thread hashes the ones already read
    (hashlib releases the GIL), in sorted path order."""
    digest = Digest()
    pending: queue.Queue = queue.Queue(maxsize=4)
    failure: list[BaseException] = []

    def hash_worker() -> None:
        while True:
            batch = pending.get()
            if batch is None:
                return
            try:
                if not failure:
                    for path, arr in batch:
                        digest.add(path, arr)
            except BaseException as err:  # reported by the reading thread
                failure.append(err)

    worker = threading.Thread(target=hash_worker, name="checkpoint-digest", daemon=True)
    worker.start()
    arrays: dict[str, np.ndarray] = {}
    batch: list[tuple[str, np.ndarray]] = []
    batch_bytes = 0
    try:
        for path, d in sorted(datasets.items()):
            out = np.empty(d.shape, dtype=d.dtype)
            if d.nbytes:
                try:
                    _read_into(d.id, out)
                except Exception as err:
                    raise CorruptCheckpointError(f"checkpoint {fname}: dataset /{path} is corrupt "
                                                 f"(fletcher32 checksum or read error): {err}") from None
            arrays[path] = out
            batch.append((path, out))
            batch_bytes += d.nbytes
            if batch_bytes >= _HASH_BATCH_BYTES:
                pending.put(batch)
                batch, batch_bytes = [], 0
        if batch:
            pending.put(batch)
    finally:
        pending.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return arrays, digest


def _build_state(fname: str, header: Mapping[str, str], arrays: Mapping[str, np.ndarray],
                 groups: set[str]) -> CheckpointState:
    params, ema, slots = {}, {}, {}
    for g in groups:
        parts = g.split("/")
        if len(parts) == 3 and parts[1] == "optimizer":
            slots.setdefault(parts[2], {})
    for path, arr in arrays.items():
        group, rest = path.split("/", 1)
        if group == "params":
            params[rest] = arr
        elif group == "ema":
            ema[rest] = arr
        else:
            slot, name = rest.split("/", 1)
            slots.setdefault(slot, {})[name] = arr
    rng = _parse_json(header["/state/rng"], fname, "/state/rng")
    metrics = _parse_json(header["/state/metrics"], fname, "/state/metrics")
    hyper = _parse_json(header["/optimizer/hyper"], fname, "/optimizer/hyper")
    data = _parse_json(header["/state/data"], fname, "/state/data") if "/state/data" in header else {}
    conv = (_parse_json(header["/state/conv_algorithms"], fname, "/state/conv_algorithms")
            if "/state/conv_algorithms" in header else {})
    for what, value in (("rng", rng), ("metrics", metrics), ("hyper", hyper), ("data", data),
                        ("conv_algorithms", conv)):
        if not isinstance(value, dict):
            raise CorruptCheckpointError(f"checkpoint {fname}: {what} is not a JSON object")
    state = CheckpointState(
        params=params, ema=ema,
        optimizer={"name": header["/optimizer/name"],
                   "iterations": int(header["/optimizer/iterations"]),
                   "slots": {k: slots[k] for k in sorted(slots)}, "hyper": hyper},
        step=int(header["/state/step"]), epoch=int(header["/state/epoch"]),
        position=int(header["/state/position"]), world_size=int(header["/state/world_size"]),
        rng=rng, config_text=header["/state/config_text"], metrics=metrics, data=data,
        conv_algorithms=conv, format_version=int(header["/state/format_version"]),
        distnet_version=header["/state/distnet_version"],
    )
    try:
        return state.validate()
    except InvalidArgumentError as err:
        raise CorruptCheckpointError(f"checkpoint {fname}: invalid content: {err}") from None


def load(path: str | os.PathLike, expected: Mapping[str, Any] | None = None, *,
         max_bytes: int | None = None, allow_nonfinite: bool = False) -> CheckpointState:
    """Load and verify a checkpoint written by :func:`write_checkpoint`.

    Args:
        path: the checkpoint file.
        expected: ``{variable name: (shape, dtype)}`` of the model's
            parameters (see :func:`expected_from`); ``dtype`` may be None.
            Strict: missing, unexpected and mismatched parameters, and EMA
            or slot arrays whose names or shapes are not the model's, are
            all listed in one :class:`CheckpointMismatchError`.
        max_bytes: refuse files declaring more array bytes than this (they
            are always capped at the file's own size).
        allow_nonfinite: read a checkpoint whose weights, slots or shadows
            hold NaN or inf (for inspection) instead of refusing it.
    Returns:
        The :class:`CheckpointState`, with arrays bitwise equal to the ones
        written and their dtypes kept.
    Raises:
        CheckpointError: naming the file and the problem; subclasses
            :class:`CorruptCheckpointError` (not HDF5, truncated, checksum
            or digest mismatch, wrong version, missing groups),
            :class:`UnsafeCheckpointError` (links, virtual/external data,
            forbidden dtypes, oversized shapes),
            :class:`CheckpointMismatchError` and
            :class:`NonFiniteCheckpointError` (NaN or inf, each array named).
    Example:
        >>> state = load("ckpt/ckpt-00000100.h5", expected_from(model_params))
    """
    fname = os.path.abspath(os.fspath(path))
    exp = _normalise_expected(expected)
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                  or max_bytes < 0):
        raise InvalidArgumentError(f"max_bytes: Expect: a non-negative int or None Actual: {max_bytes!r}")
    try:
        state = _load(fname, exp, max_bytes)
    except (CheckpointError, InvalidArgumentError):
        raise
    except DistnetError as err:
        raise CorruptCheckpointError(f"checkpoint {fname}: {err}") from None
    except Exception as err:  # anything HDF5 or numpy says about a damaged file
        raise CorruptCheckpointError(f"checkpoint {fname} is unreadable: "
                                     f"{type(err).__name__}: {str(err)[:300]}") from None
    if not allow_nonfinite:
        bad = nonfinite_arrays(state)
        if bad:
            raise NonFiniteCheckpointError(
                f"checkpoint {fname} holds NaN/inf in {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}: "
                "training went wrong before it was written (resume from an earlier checkpoint; "
                "--allow-nonfinite reads it for inspection)")
    return state


def verify(path: str | os.PathLike) -> CheckpointState:
    """Fully check a checkpoint (structure, fletcher32, SHA-256 digest).

    Returns:
        The loaded state.
    Raises:
        CheckpointError: as :func:`load`.
    """
    return load(path)
