"""An order-independent exact sum of float32 arrays across ranks: a float64 fixed-point grid.

Float addition is not associative, so a float32 all-reduce gives bits that
depend on the number of ranks, on MPI's reduction algorithm and on how the
buffer is cut into buckets.  Addition of numbers on one grid is: if every
summand is first rounded to a multiple of one unit ``u = 2**(E - F)`` that
all ranks agree on, and no partial sum can leave the range where float64
holds every multiple of ``u`` (``2**53 * u``), each float64 addition is
exact, so MPI's float64 SUM gives the same numbers for any N, algorithm or
bucket split, hence the same float32 result.  (The same argument as an int64
fixed point, with float64 doing the bookkeeping: the rounding to the grid is
two float64 additions and the conversion back one cast, instead of the
multiply, round, convert and rescale passes of an integer format.)

One step, every rank (a collective; :func:`exact_allreduce` does all of it)::

    e = local_exponents(pieces, starts)       # max binade per segment, + a non-finite flag
    comm.allreduce_(e, op="max")              # the one small agreement on the scale
    acc = quantize(pieces, e, F, starts)      # float64 on the grid: the exact sum of this rank's pieces
    comm.allreduce_(acc)                      # exact, so associative: same numbers for any N
    out = dequantize(acc, e)                  # float32, one rounding

The scale.  ``E`` is the smallest integer with ``|x| < 2**E`` for every
finite summand ``x`` of a segment, on every rank (``np.frexp``'s exponent);
``F = min(51, 53 - ceil(log2(count)))`` fraction bits, where ``count`` is the
number of summands of the whole job (all pieces on all ranks) and must not
depend on the number of ranks, or the unit would.  Each summand is rounded to
``q * u`` with ``|q| <= 2**F`` (round half to even, as ``np.rint``): with
``M = 1.5 * 2**52 * u``, ``x + M`` lies in ``[2**52 u, 2**53 u)`` where
float64's spacing is exactly ``u`` (that needs ``F <= 51``), so
``(x + M) - M`` is ``x`` rounded to the grid and the subtraction is exact.
Any partial sum of at most ``count`` grid values is ``<= count * 2**F * u <=
2**53 * u``: exact in float64, whatever the order MPI adds them in.
``count`` is limited to ``2**20`` (``F >= 33``).

Segments (e.g. one per variable, given by their start offsets) get their own
``E``, so a layer of small gradients is not quantized at the scale of a layer
of large ones.  A segment with no nonzero finite summand gets
``E = ZERO_EXPONENT`` and ``M = 0``: its zeros stay zero.

Accuracy (tested against ``fractions.Fraction``/``math.fsum``):

- a summand within ``F - 24`` binades of its segment's largest (27 binades at
  ``count = 2``, 23 at 64, 9 at ``2**20``) is on the grid already, so when all
  are, the result is the **correctly rounded** float32 of the exact sum:
  never less accurate than any float32 summation order;
- in general ``|result - exact| <= ulp(result)/2 + count * 2**(E - F - 1)``,
  against the float32 sum's bound ``(count - 1) * 2**-24 * sum|x|`` with
  ``sum|x| >= 2**(E-1)``: the grid's term is about ``2**(F - 24)`` times
  smaller (``2**27`` for up to 4 summands, ``2**23`` at 64, ``2**9`` at
  ``2**20``).  The documented loss: a summand more than ``F`` binades below
  its segment's largest rounds away (``1 + (-1) + 1e-30`` gives 0; float32 in
  that order gives 1e-30).

Non-finite values: the flag rides on the scale agreement.  A NaN or an
infinity passes through the grid arithmetic unchanged and MPI's float64 SUM
gives NaN where any summand is NaN or both infinities meet and +-inf where
only one sign does — independent of the order; the NaN's payload and sign are
not, so with the flag up every NaN of the result is made the one quiet NaN
``0x7fc00000``.  A finite check still sees the non-finite.

At most two summands in the whole job (``count <= 2``, e.g. a global batch
cut into two pieces): float32 addition is commutative, so a plain float32
all-reduce already gives ``fl(a + b)``, the correctly rounded sum, on any N
(ranks without a summand add ``-0.0``, the exact identity); that path is
taken, at the cost of the default all-reduce, with IEEE's signed zeros.

Across ranks the float64 grid sums are reduce-scattered, each rank rounds its
block to float32 and the blocks are all-gathered: 12 bytes per element on the
wire against the float32 all-reduce's 8 (and a float64 all-reduce's 16).

Conversion back: the float64 sum is exact, so its cast to float32 is the one
correct rounding (float32 subnormals and overflow to infinity included).
Zeros are ``+0.0`` (``-0.0`` summands are rounded to the grid's ``+0.0``) when
``count > 2``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from distnet.errors import DTypeError, InvalidArgumentError

#: The exponent of a segment with no nonzero finite summand (below float32's
#: smallest subnormal binade, -148), so the scale maps it to zero.
ZERO_EXPONENT = -1000
#: The largest number of summands (``F >= 33``: the largest summand of a segment stays exact).
MAX_COUNT = 1 << 20
#: Elements per chunk of the element-wise passes: a chunk's float64 temporary stays
#: in cache across the two grid additions and the accumulation instead of streaming
#: through memory.
_CHUNK = 1 << 15
_CANONICAL_NAN = np.float32(np.nan)


def fraction_bits(count: int) -> int:
    """Fraction bits ``F`` of the grid for ``count`` summands in all: ``count * 2**F <= 2**53``, ``F <= 51``.

    Example:
        >>> fraction_bits(1), fraction_bits(4), fraction_bits(64), fraction_bits(65)
        (51, 51, 47, 46)
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_COUNT:
        raise InvalidArgumentError(f"exact sum count: Expect: an integer in 1..{MAX_COUNT} "
                                   f"(the summands of the whole job) Actual: {count!r}")
    return min(51, 53 - math.ceil(math.log2(int(count))))


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
        # Two read passes per piece, every segment at once; a NaN or an infinity shows in the max or min.
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


def _magic(exponents: np.ndarray, frac_bits: int) -> np.ndarray:
    """Per segment, the float64 ``M = 1.5 * 2**52 * u`` whose addition and subtraction round
    to the grid ``u = 2**(E - F)``; 0 for a zero segment (its +-0, NaN and inf pass unchanged)."""
    e = np.asarray(exponents[:-1], np.int64)
    m = np.ldexp(np.float64(1.5), (52 - frac_bits + e).astype(np.int32))
    return np.where(e == ZERO_EXPONENT, np.float64(0), m)


def _chunk_magic(magic: np.ndarray, starts: np.ndarray, a: int, b: int):
    """``M`` for elements ``a:b``: a scalar when the chunk lies in one segment, else per element."""
    i0 = int(np.searchsorted(starts, a, side="right")) - 1
    i1 = int(np.searchsorted(starts, b - 1, side="right")) - 1
    if i0 == i1:
        return magic[i0]
    bounds = np.clip(np.append(starts[i0:i1 + 1], b), a, b)
    return np.repeat(magic[i0:i1 + 1], np.diff(bounds))


def quantize(pieces: Sequence[np.ndarray], exponents: np.ndarray, frac_bits: int,
             starts: Sequence[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The exact float64 sum of ``pieces``, each first rounded to its segment's grid ``2**(E - F)``.

    Args:
        pieces: 1-d float32 arrays of one length (or the rows of a 2-d float32 array).
        exponents: the agreed (max-reduced) :func:`local_exponents`.
        frac_bits: :func:`fraction_bits` of the job's number of summands.
        out: a float64 array (of grid values) to accumulate into (default: a new zero array).
    """
    size = _check_pieces(pieces, None if out is None else out.size)
    if size is None:
        if out is None:
            raise InvalidArgumentError("quantize: Expect: a piece or an out array Actual: neither")
        size = out.size
    s = _starts(starts, size)
    if out is None:
        out = np.zeros(size, np.float64)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.ndim != 1:
        raise DTypeError(f"quantize out: Expect: a 1-d float64 array Actual: {getattr(out, 'dtype', type(out))}")
    if not len(pieces):
        return out
    magic = _magic(exponents, frac_bits)
    buf = np.empty(min(size, _CHUNK), np.float64)
    with np.errstate(invalid="ignore"):   # inf - inf where a NaN is the right answer (non-finite flag)
        for a in range(0, size, _CHUNK):
            b = min(size, a + _CHUNK)
            m, f, acc = _chunk_magic(magic, s, a, b), buf[: b - a], out[a:b]
            for p in pieces:
                # Widened first (exact; numpy's plain cast is faster than a mixed-type add), then
                # M added and subtracted in float64: the first addition is the rounding to the grid,
                # the second is exact.
                np.copyto(f, p[a:b])
                np.add(f, m, out=f)
                np.subtract(f, m, out=f)
                np.add(acc, f, out=acc)   # grid values within 2**53 units: exact
    return out


def dequantize(acc: np.ndarray, exponents: np.ndarray | None = None, frac_bits: int | None = None,
               starts: Sequence[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The float32 value of the summed grid values ``acc`` (one rounding).

    ``exponents`` (the agreed :func:`local_exponents`) tells whether a
    non-finite summand was present: then every NaN becomes the one quiet NaN
    (its payload and sign would depend on MPI's order).  ``frac_bits`` and
    ``starts`` are not needed (the grid values are the values) and kept for
    callers that pass them.
    """
    if not isinstance(acc, np.ndarray) or acc.dtype != np.float64 or acc.ndim != 1:
        raise DTypeError(f"dequantize: Expect: a 1-d float64 array Actual: {getattr(acc, 'dtype', type(acc))}")
    if out is None:
        out = np.empty(acc.size, np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != acc.shape:
        raise DTypeError(f"dequantize out: Expect: a float32 array of shape {acc.shape} Actual: "
                         f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}")
    with np.errstate(over="ignore"):   # a sum beyond float32's range is +-inf, as IEEE rounding says
        np.copyto(out, acc, casting="same_kind")
    if exponents is None or exponents[-1]:
        out[np.isnan(out)] = _CANONICAL_NAN
    return out


def exact_allreduce(comm, pieces: Sequence[np.ndarray], count: int, size: int | None = None,
                    starts: Sequence[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The sum over all ranks of all ranks' ``pieces``, the same bits for any split (a collective).

    Args:
        comm: a :class:`~distnet.distributed.communicator.Communicator`.
        pieces: this rank's 1-d float32 summands, or a 2-d float32 array of them
            (may be empty: then give ``size``).
        count: summands of the whole job, the same on every rank and for any
            number of ranks (e.g. the canonical pieces of a global batch).
        size: elements of each summand (needed when ``pieces`` is empty).
        starts: start offsets of the segments that get a scale of their own.
        out: a float32 array of ``size`` elements for the result (default: a new one).
    Returns:
        the float32 sum (``out`` when given).
    Example:
        >>> exact_allreduce(comm, [g0, g1], count=8)   # 8 pieces over all ranks
    """
    frac = fraction_bits(count)
    n = _check_pieces(pieces, size)
    if n is None:
        raise InvalidArgumentError("exact_allreduce: Expect: pieces or a size Actual: neither")
    s = _starts(starts, n)
    if out is None:
        out = np.empty(n, np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (n,):
        raise DTypeError(f"exact_allreduce out: Expect: a float32 array of shape ({n},) Actual: "
                         f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}")
    if count <= 2:
        return _sum_of_two(comm, pieces, out)
    e = local_exponents(pieces, s) if len(pieces) else empty_exponents(s.size)
    comm.allreduce_(e, op="max")
    if comm.size == 1:
        return dequantize(quantize(pieces, e, frac, s), e, out=out)
    # The float64 grid sums are reduce-scattered (exact, so in any order), each rank rounds its
    # block to float32 (one rounding, element by element) and the float32 blocks are all-gathered:
    # 12 bytes per element on the wire instead of a float64 all-reduce's 16.
    block = -(-n // comm.size)
    acc = quantize(pieces, e, frac, s, out=np.zeros(block * comm.size, np.float64)[:n])
    whole = acc.base if acc.base is not None else acc
    mine = comm.reduce_scatter_block_(whole, np.empty(block, np.float64))
    gathered = out if block * comm.size == n else np.empty(block * comm.size, np.float32)
    dequantize(mine, e, out=gathered[comm.rank * block:(comm.rank + 1) * block])
    comm.allgather_(gathered)
    if gathered is not out:
        np.copyto(out, gathered[:n])
    return out


def _sum_of_two(comm, pieces: Sequence[np.ndarray], out: np.ndarray) -> np.ndarray:
    """At most two summands in the whole job: float32 addition is commutative, so ``fl(a + b)``
    (the correctly rounded sum) comes out of a plain float32 all-reduce in any order, the ranks
    without a summand adding ``-0.0`` (the exact identity: ``x + -0.0 == x`` for every ``x``,
    ``-0.0`` included).  Only a NaN's payload and sign depend on the order: made canonical."""
    with np.errstate(invalid="ignore", over="ignore"):   # inf - inf is NaN, 2 * 3e38 is inf: IEEE's answers
        if len(pieces) == 2:
            np.add(pieces[0], pieces[1], out=out)
        elif len(pieces) == 1:
            np.copyto(out, pieces[0])
        else:
            out.fill(-0.0)
        comm.allreduce_(out)
    nan = np.isnan(out)
    if nan.any():
        out[nan] = _CANONICAL_NAN
    return out
