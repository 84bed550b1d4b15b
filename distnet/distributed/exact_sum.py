"""An order-independent exact sum of float32 arrays across ranks: fixed-point int64.

Float addition is not associative, so a float32 all-reduce gives bits that
depend on the number of ranks, on MPI's reduction algorithm and on how the
buffer is cut into buckets.  Integer addition is associative: if every
summand is first turned into an int64 multiple of one unit ``2**(E - F)``
that all ranks agree on, MPI's integer SUM is exact, and any N, algorithm or
bucket split gives the same integers, hence the same float32 result.

One step, every rank (a collective; :func:`exact_allreduce` does all of it)::

    e = local_exponents(pieces, starts)       # max binade per segment, + a non-finite flag
    comm.allreduce_(e, op="max")              # the one small agreement on the scale
    acc = quantize(pieces, e, F, starts)      # int64, exact local sum of this rank's pieces
    comm.allreduce_(acc)                      # associative: same integers for any N
    out = dequantize(acc, e, F, starts)       # float32, one rounding

The scale.  ``E`` is the smallest integer with ``|x| < 2**E`` for every
finite summand ``x`` of a segment, on every rank (``np.frexp``'s exponent);
``F = 62 - ceil(log2(count))`` fraction bits, where ``count`` is the number
of summands of the whole job (all pieces on all ranks) and must not depend on
the number of ranks, or the unit would.  Each summand becomes
``q = rint(x * 2**(F - E))`` with ``|q| <= 2**F``; any partial sum of at most
``count`` of them is ``<= count * 2**F <= 2**62 < 2**63``: no int64 overflow,
whatever the order MPI adds them in.  ``count`` is limited to ``2**20``.

Segments (e.g. one per variable, given by their start offsets) get their own
``E``, so a layer of small gradients is not quantized at the scale of a layer
of large ones.  A segment of zeros gets ``E = ZERO_EXPONENT`` and stays zero.

Accuracy (tested against ``fractions.Fraction``/``math.fsum``):

- a summand within ``F - 24`` binades of its segment's largest (32 binades at
  ``count = 64``, 42 at 1, 18 at ``2**20``) is converted exactly, so when
  all are, the result is the **correctly rounded** float32 of the exact sum:
  never less accurate than any float32 summation order;
- in general ``|result - exact| <= ulp(result)/2 + count * 2**(E - F - 1)``,
  against the float32 sum's ``(count - 1) * 2**-24 * sum|x|`` with
  ``sum|x| >= 2**(E-1)``: the second term is at least ``2**(37 - log2 count)``
  times smaller than the float32 bound (what rounds away is below
  ``2**(E - 63)`` per summand relative to a ``2**E`` largest summand).

Non-finite values: the flag rides on the scale agreement; when any rank has a
NaN or an infinity, one more int64 sum counts NaNs, +inf and -inf per element,
so the result is NaN where any summand is NaN or both infinities meet, +-inf
where only one sign does, and the finite elements are summed exactly as
usual — the same bits on any N, and a finite-check still sees the non-finite.

Conversion back: the int64 sum goes to float64 exactly below 2**53 and
above it with its low 11 bits folded into a sticky bit (which cannot move
float32's rounding, see :func:`_to_float64_sticky`), is scaled by a power of
two (exact in float64) and rounded once to float32: the single correct
rounding of the exact sum (float32 subnormals and overflow to infinity
included).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError

#: The exponent of a segment with no nonzero finite summand (below float32's
#: smallest subnormal binade, -148), so the scale maps it to zero.
ZERO_EXPONENT = -1000
#: The largest number of summands: the non-finite counts share one int64 in 21-bit fields.
MAX_COUNT = 1 << 20
_FIELD = 21


def fraction_bits(count: int) -> int:
    """Fraction bits ``F`` of the fixed point for ``count`` summands in all: ``count * 2**F <= 2**62``.

    Example:
        >>> fraction_bits(1), fraction_bits(64), fraction_bits(65)
        (62, 56, 55)
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_COUNT:
        raise InvalidArgumentError(f"exact sum count: Expect: an integer in 1..{MAX_COUNT} "
                                   f"(the summands of the whole job) Actual: {count!r}")
    return 62 - math.ceil(math.log2(int(count)))


def _check_pieces(pieces: Sequence[np.ndarray], size: int | None = None) -> int:
    for p in pieces:
        if not isinstance(p, np.ndarray) or p.dtype != np.float32 or p.ndim != 1:
            got = f"dtype {p.dtype} shape {p.shape}" if isinstance(p, np.ndarray) else type(p).__name__
            raise DTypeError(f"exact sum piece: Expect: a 1-d float32 array Actual: {got}")
        if size is not None and p.size != size:
            raise InvalidArgumentError(f"exact sum piece: Expect: {size} elements Actual: {p.size}")
        size = p.size
    return size


def _starts(starts: Sequence[int] | None, size: int) -> np.ndarray:
    s = np.zeros(1, np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
    if s.ndim != 1 or s.size == 0 or s[0] != 0 or np.any(np.diff(s) <= 0) or (size and s[-1] >= size):
        raise InvalidArgumentError(f"exact sum segments: Expect: increasing start offsets from 0, "
                                   f"each below the length {size} Actual: {list(s)}")
    return s


def local_exponents(pieces: Sequence[np.ndarray], starts: Sequence[int] | None = None) -> np.ndarray:
    """This rank's share of the scale agreement: ``[E of each segment..., non-finite flag]`` (int64).

    Reduce it with ``max`` over all ranks (ranks with no piece send
    ``empty_exponents``); ``E`` is :data:`ZERO_EXPONENT` for a segment of zeros.
    """
    size = _check_pieces(pieces)
    s = _starts(starts, size or 0)
    out = empty_exponents(s.size)
    for p in pieces:
        if not p.size:
            continue
        # Two passes per piece; a NaN or an infinity shows in the segment's max or min.
        biggest = np.maximum(np.maximum.reduceat(p, s), -np.minimum.reduceat(p, s))
        if not np.isfinite(biggest).all():
            out[-1] = 1
            mag = np.where(np.isfinite(p), np.abs(p), np.float32(0))
            biggest = np.maximum.reduceat(mag, s)
        _, e = np.frexp(biggest)
        out[:-1] = np.maximum(out[:-1], np.where(biggest > 0, e, ZERO_EXPONENT))
    return out


def empty_exponents(segments: int = 1) -> np.ndarray:
    """The scale share of a rank that holds no summand (the identity of ``max``)."""
    out = np.full(segments + 1, ZERO_EXPONENT, np.int64)
    out[-1] = 0
    return out


def _segments(exponents: np.ndarray, starts: np.ndarray, size: int):
    """``(lo, hi, E)`` of each segment with a nonzero summand somewhere."""
    ends = np.append(starts[1:], size)
    for lo, hi, e in zip(starts.tolist(), ends.tolist(), exponents[:-1].tolist()):
        if e != ZERO_EXPONENT:
            yield lo, hi, e


def _chunks(lo: int, hi: int):
    for a in range(lo, hi, _CHUNK):
        yield a, min(hi, a + _CHUNK)


def quantize(pieces: Sequence[np.ndarray], exponents: np.ndarray, frac_bits: int,
             starts: Sequence[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The exact int64 sum of ``pieces`` in units of ``2**(E - F)`` (non-finite values count as 0).

    Args:
        pieces: 1-d float32 arrays of one length.
        exponents: the agreed (max-reduced) :func:`local_exponents`.
        frac_bits: :func:`fraction_bits` of the job's number of summands.
        out: an int64 array to accumulate into (default: a new zero array).
    """
    size = _check_pieces(pieces, None if out is None else out.size)
    if size is None:
        if out is None:
            raise InvalidArgumentError("quantize: Expect: a piece or an out array Actual: neither")
        size = out.size
    s = _starts(starts, size)
    if out is None:
        out = np.zeros(size, np.int64)
    scaled = np.empty(min(size, _CHUNK), np.float64)
    whole = np.empty(min(size, _CHUNK), np.int64)
    pieces = [np.where(np.isfinite(p), p, np.float32(0)) if exponents[-1] and not np.isfinite(p).all() else p
              for p in pieces]
    for lo, hi, e in _segments(exponents, s, size):
        # x * 2**(F - E) is exact in float64 (24 significant bits, F - E <= 210) and below 2**F;
        # the scale is np.float64: a Python float would leave the product in float32.
        scale = np.float64(2.0 ** (frac_bits - e))
        for a, b in _chunks(lo, hi):
            f, w = scaled[: b - a], whole[: b - a]
            for p in pieces:
                np.multiply(p[a:b], scale, out=f)
                np.rint(f, out=f)
                np.copyto(w, f, casting="unsafe")   # integral already: exact
                out[a:b] += w
    return out


def nonfinite_counts(pieces: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Per element, NaNs + (+inf) * 2**21 + (-inf) * 2**42 among ``pieces`` (int64; sum it over ranks)."""
    out = np.zeros(size, np.int64)
    for p in pieces:
        out += np.isnan(p).astype(np.int64)
        out += (p == np.inf).astype(np.int64) << _FIELD
        out += (p == -np.inf).astype(np.int64) << (2 * _FIELD)
    return out


#: Elements per chunk of the element-wise passes: a chunk's float64 and int64
#: temporaries stay in cache across the passes instead of streaming through memory.
_CHUNK = 1 << 15
_EXACT = 1 << 53   # int64 below this in magnitude converts to float64 exactly
_LOW = 2047


def _to_float64_sticky(acc: np.ndarray) -> np.ndarray:
    """int64 -> float64 that rounds to float32 as ``acc`` itself would (no double rounding).

    Below 2**53 the conversion is exact.  Above, float32's spacing is at
    least 2**30, so its rounding midpoints are multiples of 2048: ``acc`` and
    ``(acc & ~2047) + 1024`` (exact in float64, 52 significant bits) lie in
    the same open interval between multiples of 2048 whenever the low bits are
    nonzero — a sticky bit — and so round alike.
    """
    low = acc & _LOW
    sticky = (acc ^ low) | ((low != 0).astype(np.int64) << 10)
    big = (acc >= _EXACT) | (acc <= -_EXACT)
    return np.where(big, sticky, acc).astype(np.float64)


def dequantize(acc: np.ndarray, exponents: np.ndarray, frac_bits: int, starts: Sequence[int] | None = None,
               counts: np.ndarray | None = None) -> np.ndarray:
    """The float32 value of the summed ``acc`` (one rounding); with ``counts``
    (summed :func:`nonfinite_counts`) the non-finite elements become NaN/+-inf."""
    if not isinstance(acc, np.ndarray) or acc.dtype != np.int64 or acc.ndim != 1:
        raise DTypeError(f"dequantize: Expect: a 1-d int64 array Actual: {getattr(acc, 'dtype', type(acc))}")
    s = _starts(starts, acc.size)
    out = np.zeros(acc.size, np.float32)
    with np.errstate(over="ignore"):   # a sum beyond float32's range is +-inf, as IEEE rounding says
        for lo, hi, e in _segments(exponents, s, acc.size):
            scale = 2.0 ** (e - frac_bits)
            for a, b in _chunks(lo, hi):
                # times a power of two: exact in float64; the cast to float32 is the one rounding
                np.copyto(out[a:b], _to_float64_sticky(acc[a:b]) * scale, casting="same_kind")
    if counts is not None:
        mask = (1 << _FIELD) - 1
        nan = counts & mask
        pos = (counts >> _FIELD) & mask
        neg = (counts >> (2 * _FIELD)) & mask
        out[pos > 0] = np.inf
        out[neg > 0] = -np.inf
        out[(nan > 0) | ((pos > 0) & (neg > 0))] = np.nan
    return out


def exact_allreduce(comm, pieces: Sequence[np.ndarray], count: int, size: int | None = None,
                    starts: Sequence[int] | None = None) -> np.ndarray:
    """The sum over all ranks of all ranks' ``pieces``, the same bits for any split (a collective).

    Args:
        comm: a :class:`~distnet.distributed.communicator.Communicator`.
        pieces: this rank's 1-d float32 summands (may be empty: then give ``size``).
        count: summands of the whole job, the same on every rank and for any
            number of ranks (e.g. the canonical pieces of a global batch).
        size: elements of each summand (needed when ``pieces`` is empty).
        starts: start offsets of the segments that get a scale of their own.
    Returns:
        a new float32 array of ``size`` elements.
    Example:
        >>> exact_allreduce(comm, [g0, g1], count=8)   # 8 pieces over all ranks
    """
    frac = fraction_bits(count)
    n = _check_pieces(pieces, size)
    if n is None:
        raise InvalidArgumentError("exact_allreduce: Expect: pieces or a size Actual: neither")
    s = _starts(starts, n)
    e = local_exponents(pieces, s) if pieces else empty_exponents(s.size)
    comm.allreduce_(e, op="max")
    acc = quantize(pieces, e, frac, s, out=np.zeros(n, np.int64))
    comm.allreduce_(acc)
    counts = None
    if e[-1]:
        counts = comm.allreduce_(nonfinite_counts(pieces, n))
    return dequantize(acc, e, frac, s, counts)
