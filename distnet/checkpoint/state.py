"""``CheckpointState``: everything a checkpoint holds, in memory.

The trainer builds one from its model, optimizer, EMA, sampler and RNGs,
hands it to :func:`distnet.checkpoint.save` / ``CheckpointManager.save``, and
gets one back from :func:`distnet.checkpoint.load`.  The record is plain data
(numpy arrays, ints, floats, strings, JSON-able dicts): nothing in it can run
code when it is read back.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from distnet._version import __version__
from distnet.errors import CheckpointError, InvalidArgumentError

#: Version of the on-disk layout that is written.  Version 2 added
#: ``/state@data`` (which data the run used), version 3 ``/state@conv_algorithms``
#: (the convolution layers' algorithms, reused on resume).
FORMAT_VERSION = 3
#: Versions a reader accepts (it refuses any other value).
READABLE_VERSIONS = (1, 2, 3)
#: Value of the root attribute ``format``: tells our files from other HDF5.
FORMAT_NAME = "distnet-checkpoint"

#: The array dtypes a checkpoint may hold (little or big endian).
ALLOWED_DTYPES = tuple(np.dtype(t) for t in (
    "float16", "float32", "float64",
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
))

# One path component: letters, digits and ``_ . : -`` (TF names such as
# ``dense_1/kernel`` or ``conv2d/kernel:0``), never ``.`` or ``..``.
_COMPONENT = re.compile(r"[A-Za-z0-9_.:\-]+")


class CorruptCheckpointError(CheckpointError):
    """The file is not a readable distnet checkpoint: not HDF5, truncated,
    checksum or digest mismatch, missing groups, wrong format version."""


class UnsafeCheckpointError(CorruptCheckpointError):
    """The file holds something a checkpoint never holds (links, virtual or
    external data, object/opaque/compound dtypes, oversized shapes) and was
    rejected before any of its data was read."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint is intact but does not match the model it is restored
    into (missing, unexpected or differently shaped variables)."""


class NonFiniteCheckpointError(CheckpointError):
    """The checkpoint is intact but holds NaN or inf in its weights, optimizer
    slots or EMA shadows: training from it, or evaluating it, gives NaN.
    ``load(..., allow_nonfinite=True)`` reads it anyway, for inspection."""


def nonfinite_arrays(state: "CheckpointState") -> list[str]:
    """The arrays of ``state`` holding NaN or inf (``params/x``, ``ema/x``, ``optimizer/m/x``)."""
    groups = [("params", state.params), ("ema", state.ema)]
    groups += [(f"optimizer/{slot}", table) for slot, table in sorted(state.optimizer.get("slots", {}).items())]
    bad = []
    for prefix, table in groups:
        for name, arr in sorted(table.items()):
            a = np.asarray(arr)
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                bad.append(f"{prefix}/{name} ({int(a.size - np.isfinite(a).sum())} of {a.size} values)")
    return bad


class CheckpointWarning(RuntimeWarning):
    """A checkpoint was skipped (for example a corrupt newest file)."""


def check_name(name: Any, what: str = "variable name") -> str:
    """Check a hierarchical name (``conv2d/kernel``) that becomes an HDF5 path.

    Args:
        name: the name to check.
        what: what the name is, for the error message.
    Returns:
        The name, unchanged.
    Raises:
        InvalidArgumentError: the name is not a non-empty ``/``-separated path
            of ``[A-Za-z0-9_.:-]`` components (no ``.``/``..``, no empty part).
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(
            f"{what}: Expect: a str Actual: {type(name).__name__} {name!r}")
    parts = name.split("/")
    for part in parts:
        if not _COMPONENT.fullmatch(part) or part in (".", ".."):
            raise InvalidArgumentError(
                f"{what}: Expect: a checkpoint path of '/'-separated components of letters, "
                f"digits and '_.:-' (no empty, '.' or '..' component) Actual: {name!r}")
    return name


def _check_arrays(arrays: Any, where: str) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        raise InvalidArgumentError(
            f"{where}: Expect: a dict {{name: ndarray}} Actual: {type(arrays).__name__}")
    out: dict[str, np.ndarray] = {}
    for name in sorted(arrays, key=str):
        check_name(name, f"name in {where}")
        arr = arrays[name]
        if isinstance(arr, np.generic):  # a numpy scalar is a 0-d array
            arr = np.asarray(arr)
        if not isinstance(arr, np.ndarray):
            raise InvalidArgumentError(
                f"{where}[{name!r}]: Expect: a numpy array Actual: {type(arr).__name__}")
        if arr.dtype.newbyteorder("=") not in ALLOWED_DTYPES:
            raise InvalidArgumentError(
                f"{where}[{name!r}]: dtype: Expect: one of "
                + ", ".join(str(d) for d in ALLOWED_DTYPES) + f" Actual: {arr.dtype}")
        out[name] = arr
    for n in out:
        parts = n.split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            if p in out:
                raise InvalidArgumentError(
                    f"{where} has both {p!r} and {n!r}: a name cannot be both "
                    "an array and a group of arrays in HDF5")
    return out


def _check_int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"{what}: Expect: an int Actual: {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum or value >= 2 ** 63:
        raise InvalidArgumentError(f"{what}: Expect: in [{minimum}, 2**63) Actual: {value}")
    return value


def _check_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(f"{what} must hold JSON-able values only: {err}") from None


@dataclass
class CheckpointState:
    """Everything needed to resume a job or evaluate its weights.

    Attributes:
        params: ``{variable name: ndarray}``, the trained weights.
        ema: ``{variable name: ndarray}``, EMA shadow weights (may be empty).
        optimizer: ``{"name": str, "iterations": int, "slots": {slot: {var:
            ndarray}}, "hyper": {str: float | str}}``.
        step: the global step (number of applied updates).
        epoch: the current epoch (0-based).
        position: samples of ``epoch`` already consumed (global count).
        rng: ``{str: JSON-able}``, e.g. bit-generator states as JSON text.
        world_size: number of ranks that wrote the state.
        config_text: the job file's text.
        metrics: small ``{str: float}`` (last loss, accuracy, ...).
        data: which data the run used, ``{"train": {...}, "test": {...}}`` as
            :func:`distnet.data.identity.data_identity` gives it (empty when
            unknown; always empty in a format-1 file).
        conv_algorithms: ``{conv layer name: algorithm}``, the plan the run's
            convolution layers ran (:mod:`distnet.nn.conv_choice`), reused on
            resume so that a resumed run computes what the first attempt did
            (empty without convolution layers, and in format 1 and 2 files).
        format_version: on-disk layout version (set by the writer).
        distnet_version: package version that wrote the file.

    Example:
        >>> s = CheckpointState(params={"dense/kernel": np.zeros((2, 3), np.float32)}, step=10)
        >>> s.validate().step
        10
    """

    params: dict[str, np.ndarray]
    ema: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=lambda: {
        "name": "", "iterations": 0, "slots": {}, "hyper": {}})
    step: int = 0
    epoch: int = 0
    position: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    config_text: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    conv_algorithms: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    distnet_version: str = __version__

    def validate(self) -> "CheckpointState":
        """Check every field and normalise the containers (sorted dicts,
        Python ints and floats).

        Returns:
            ``self``, for chaining.
        Raises:
            InvalidArgumentError: a field has the wrong type or value; the
                message names the field, what was expected and what came.
        """
        self.params = _check_arrays(self.params, "params")
        self.ema = _check_arrays(self.ema, "ema")
        opt = self.optimizer
        if not isinstance(opt, Mapping):
            raise InvalidArgumentError(
                f"optimizer: Expect: a dict Actual: {type(opt).__name__}")
        unknown = set(opt) - {"name", "iterations", "slots", "hyper"}
        if unknown:
            raise InvalidArgumentError(
                "optimizer: Expect: only the keys 'name', 'iterations', 'slots', 'hyper' "
                f"Actual: unknown keys {sorted(map(str, unknown))}")
        name = opt.get("name", "")
        if not isinstance(name, str):
            raise InvalidArgumentError(f"optimizer['name']: Expect: a str Actual: {type(name).__name__}")
        slots_in = opt.get("slots", {})
        if not isinstance(slots_in, Mapping):
            raise InvalidArgumentError(
                f"optimizer['slots']: Expect: a dict {{slot: {{var: ndarray}}}} Actual: {type(slots_in).__name__}")
        slots = {}
        for slot in sorted(slots_in, key=str):
            check_name(slot, "slot name")
            if "/" in slot:
                raise InvalidArgumentError(f"slot name {slot!r} must not contain '/'")
            slots[slot] = _check_arrays(slots_in[slot], f"optimizer['slots'][{slot!r}]")
        hyper = opt.get("hyper", {})
        if not isinstance(hyper, Mapping):
            raise InvalidArgumentError(f"optimizer['hyper']: Expect: a dict Actual: {type(hyper).__name__}")
        clean_hyper: dict[str, Any] = {}
        for k in sorted(hyper, key=str):
            v = hyper[k]
            if not isinstance(k, str):
                raise InvalidArgumentError(f"optimizer['hyper'] keys: Expect: str Actual: {k!r}")
            if isinstance(v, (bool, np.bool_)):
                v = bool(v)
            elif isinstance(v, (int, np.integer)):
                v = int(v)
            elif isinstance(v, (float, np.floating)):
                v = float(v)
            elif not isinstance(v, str):
                raise InvalidArgumentError(
                    f"optimizer['hyper'][{k!r}]: Expect: a float or a str Actual: {type(v).__name__}")
            clean_hyper[k] = v
        self.optimizer = {
            "name": name,
            "iterations": _check_int(opt.get("iterations", 0), "optimizer['iterations']"),
            "slots": slots,
            "hyper": clean_hyper,
        }
        self.step = _check_int(self.step, "step")
        self.epoch = _check_int(self.epoch, "epoch")
        self.position = _check_int(self.position, "position")
        self.world_size = _check_int(self.world_size, "world_size", minimum=1)
        if not isinstance(self.rng, Mapping) or not all(isinstance(k, str) for k in self.rng):
            raise InvalidArgumentError(f"rng: Expect: a dict with str keys Actual: {self.rng!r:.80}")
        self.rng = dict(self.rng)
        _check_json(self.rng, "rng")
        if not isinstance(self.config_text, str):
            raise InvalidArgumentError(
                f"config_text: Expect: a str Actual: {type(self.config_text).__name__}")
        if not isinstance(self.metrics, Mapping):
            raise InvalidArgumentError(f"metrics: Expect: a dict Actual: {type(self.metrics).__name__}")
        metrics = {}
        for k in sorted(self.metrics, key=str):
            v = self.metrics[k]
            if not isinstance(k, str):
                raise InvalidArgumentError(f"metrics keys: Expect: str Actual: {k!r}")
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise InvalidArgumentError(
                    f"metrics[{k!r}]: Expect: a number Actual: {type(v).__name__} {v!r:.40}")
            metrics[k] = float(v)
        self.metrics = metrics
        if not isinstance(self.data, Mapping) or not all(isinstance(k, str) for k in self.data):
            raise InvalidArgumentError(f"data: Expect: a dict with str keys Actual: {self.data!r:.80}")
        self.data = dict(self.data)
        _check_json(self.data, "data")
        self.format_version = _check_int(self.format_version, "format_version")
        if self.format_version not in READABLE_VERSIONS:
            raise InvalidArgumentError(f"format_version: Expect: one of {READABLE_VERSIONS} "
                                       f"Actual: {self.format_version}")
        if self.format_version < 2 and self.data:
            raise InvalidArgumentError("data: a format-1 checkpoint cannot hold it; "
                                       f"Expect: format_version >= 2 Actual: {self.format_version}")
        if not isinstance(self.conv_algorithms, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.conv_algorithms.items()):
            raise InvalidArgumentError("conv_algorithms: Expect: a dict {layer name: algorithm name} "
                                       f"Actual: {self.conv_algorithms!r:.80}")
        self.conv_algorithms = dict(sorted(self.conv_algorithms.items()))
        if self.format_version < 3 and self.conv_algorithms:
            raise InvalidArgumentError("conv_algorithms: a format-1 or -2 checkpoint cannot hold it; "
                                       f"Expect: format_version >= 3 Actual: {self.format_version}")
        if not isinstance(self.distnet_version, str):
            raise InvalidArgumentError(f"distnet_version: Expect: a str Actual: {type(self.distnet_version).__name__}")
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """Every stored array by its HDF5 path (``params/conv2d/kernel``,
        ``ema/...``, ``optimizer/<slot>/...``), sorted by path."""
        out: dict[str, np.ndarray] = {}
        for n, a in self.params.items():
            out["params/" + n] = a
        for n, a in self.ema.items():
            out["ema/" + n] = a
        for slot, arrays in self.optimizer.get("slots", {}).items():
            for n, a in arrays.items():
                out[f"optimizer/{slot}/{n}"] = a
        return dict(sorted(out.items()))


def ema_params(state: CheckpointState, *, strict: bool = True) -> dict[str, np.ndarray]:
    """The weights to evaluate or export with: EMA shadows in place of the
    trained weights.

    # TF1: ``ema.average(var)`` is read in place of ``var`` for evaluation
    # (``ema.variables_to_restore()``); a variable without a shadow keeps its
    # trained value only when ``strict=False``.

    Args:
        state: a loaded checkpoint.
        strict: every parameter must have a shadow (else CheckpointError).
    Returns:
        ``{name: ndarray}`` with the same names as ``state.params``.
    Example:
        >>> w = ema_params(load("ckpt-00001000.h5"))
    """
    if not state.ema:
        raise CheckpointError(
            "the checkpoint has no EMA shadow weights (its /ema group is empty); "
            "train with an ExponentialMovingAverage or use the trained weights")
    unknown = sorted(set(state.ema) - set(state.params))
    if unknown:
        raise CheckpointError(f"EMA shadows without a parameter: {unknown}")
    missing = sorted(set(state.params) - set(state.ema))
    if missing and strict:
        raise CheckpointError(
            f"parameters without an EMA shadow: {missing}; pass strict=False "
            "to keep their trained values")
    out = {}
    for name, arr in state.params.items():
        shadow = state.ema.get(name)
        if shadow is None:
            out[name] = arr
        elif shadow.shape != arr.shape or shadow.dtype != arr.dtype:
            raise CheckpointError(
                f"EMA shadow {name!r} is {shadow.dtype}{list(shadow.shape)} but the "
                f"parameter is {arr.dtype}{list(arr.shape)}")
        else:
            out[name] = shadow
    return out


def expected_from(arrays: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Build the ``expected`` argument of :func:`load` from arrays or
    Variables (anything with ``.shape`` and ``.dtype``).

    Example:
        >>> expected_from({v.name: v for v in model.variables})
    """
    return {name: (tuple(int(d) for d in a.shape), np.dtype(a.dtype)) for name, a in arrays.items()}
