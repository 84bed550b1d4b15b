"""Gradient compression on the wire: float16 instead of float32.

``Trainer(compression="float16")`` (job file: ``[dist] compression =
"float16"``) sends the gradients between ranks as IEEE float16: half the
bytes of float32, at the price of ~3 significant decimal digits (10-bit
mantissa, relative rounding error <= 2**-11), a largest finite value of
65504, fewer digits below 2**-14 ~ 6.1e-5 (subnormals, steps of 2**-24 ~
6e-8) and magnitudes below 2**-25 ~ 3e-8 flushed to zero.  A value that
overflows becomes inf, so the existing non-finite guard skips the step on
every rank.  Horovod's ``Compression.fp16`` casts to float16 too, but its
partial sums are rounded to float16 as they go; here they are float32.

MPI has no float16 datatype nor sum (MPICH's ``MPI_Allreduce`` cannot add
halves), so the reduction is built from built-in collectives that only move
bytes; for an all-reduce of ``n`` gradients on ``N`` ranks:

1. cast the float32 gradients to float16, cut into ``N`` equal blocks
   (zero-padded to a multiple of 32 elements);
2. ``Alltoall``: rank ``r`` receives block ``r`` of every rank;
3. rank ``r`` sums the ``N`` float16 blocks in float32, in rank order
   (``((b0 + b1) + b2) + ...``, every addend exact in float32);
4. the float32 sum is cast to float16 and ``Allgather``-ed in place: every
   rank gets the same bits, then casts them back to float32.

The result is ``float32(float16(sum over ranks, in rank order, of
float32(float16(g_r)))))``: each rank's contribution rounded once, the sum
rounded once.  The sharded optimizer (ZeRO-1) needs only steps 1-3 (its
reduce-scatter): its block keeps the float32 sum, and the parameter
all-gather stays float32.  The sample count and the metric scalars (loss
sum, correct count) never go through float16: they are all-reduced apart
in float32, exactly as without compression.

An ``MPI.Op.Create`` user sum on ``MPI.UINT16_T`` in ``Allreduce`` was
measured too (``benchmarks/f16_reduction.py``): slower, and on 3 ranks its
partial sums are rounded to float16 in an order MPI chooses, so its result
differs from the rank-order reference; it was not kept.  On one machine the
ranks talk through shared memory at several GB/s and the float32 <->
float16 conversions (done by numpy, in software: 3.5 per gradient) cost
more than the bytes saved: compression pays off only on a slow link (the
break-even is printed by ``benchmarks/allreduce.py``; figures in
``benchmarks/README.md``).

With one rank nothing goes on the wire: compression is a no-op (no
rounding), so a single-process run gives bitwise the uncompressed result.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from distnet.errors import DistributedError, InvalidArgumentError
from distnet.registry import STR, Option

COMPRESSIONS = ("none", "float16")

#: The ``compression`` option, as every strategy that takes it declares it.
COMPRESSION = Option(
    "compression", STR, "none", "`\"float16\"`: gradients travel between workers as float16, half the bytes, "
    "with ~3 significant digits; magnitudes below 6.1e-5 keep fewer digits and below 3e-8 become 0; a value "
    "beyond 65504 becomes inf and the step is skipped on every worker (like any non-finite step). The sample "
    "count, loss and accuracy stay exact; with one worker it changes nothing. Worth it only when the link "
    "between workers is slow (the break-even is in `benchmarks/README.md`)", choices=COMPRESSIONS)

# Block lengths are a multiple of this many elements (64 bytes of float16).
_ALIGN = 32
# Elements converted or summed per pass: float32 chunks that stay in cache.
_CHUNK = 1 << 14
# Below this magnitude a float32 becomes a float16 subnormal (or zero).
_F16_MIN_NORMAL = np.float32(2.0 ** -14)
# A chunk with fewer than 1 / _FEW_TINY of subnormal-bound values goes
# through numpy's cast, denser ones through the full-width path: numpy's cast
# of a tiny value costs tens of normal ones (benchmarks/README.md).
_FEW_TINY = 40


def check_compression(value: Any, what: str = "compression") -> str:
    """Return ``value`` if it names a compression, else raise a clear error.

    Args:
        value: ``"none"`` or ``"float16"``.
        what: the name of the option, for the message.
    Example:
        >>> check_compression("float16")
        'float16'
    """
    if not isinstance(value, str) or value not in COMPRESSIONS:
        raise InvalidArgumentError(
            f"{what}: Expect: one of {', '.join(repr(c) for c in COMPRESSIONS)} Actual: {value!r}")
    return value


def make_compressor(compression: str, comm, bucket_bytes: int | None = None) -> "Float16Compressor | None":
    """The compressor a synchroniser uses, or None when gradients go as float32.

    Args:
        compression: ``"none"`` or ``"float16"`` (validated).
        comm: the job's communicator.
        bucket_bytes: as for the synchroniser: the float32 bytes of gradients
            reduced per call (None: all at once).
    Returns:
        None for ``"none"`` and for a world of one rank (nothing on the wire);
        else a :class:`Float16Compressor`.
    """
    check_compression(compression)
    if compression == "none" or comm.size == 1:
        return None
    return Float16Compressor(comm, None if bucket_bytes is None else max(1, bucket_bytes // 4))


class Float16Compressor:
    """Sum float32 arrays over ranks with float16 on the wire (see the module docstring).

    Args:
        comm: a communicator of two or more ranks (it uses ``alltoall_`` and
            ``allgather_``).
        bucket_elements: gradients reduced per call by :meth:`allreduce_`
            (None: the whole array in one call).
    Example:
        >>> comp = Float16Compressor(comm)
        >>> comp.allreduce_(grads_f32)          # every rank: the same bits
    """

    def __init__(self, comm, bucket_elements: int | None = None) -> None:
        self.comm = comm
        if comm.size < 2:
            raise DistributedError(
                f"float16 compression: Expect: a communicator of 2 or more ranks (nothing goes on the wire "
                f"on one) Actual: {type(comm).__name__} of size {comm.size}")
        if bucket_elements is not None and (isinstance(bucket_elements, bool)
                                            or not isinstance(bucket_elements, int) or bucket_elements < 1):
            raise InvalidArgumentError(f"bucket_elements: Expect: None or an int >= 1 Actual: {bucket_elements!r}")
        self.bucket_elements = bucket_elements
        self.rank, self.size = comm.rank, comm.size
        # Grown on first use to the largest size needed, then reused.
        self._send = np.zeros(0, np.float16)
        self._recv = np.zeros(0, np.float16)
        self._acc = np.zeros(0, np.float32)
        # float16 bits -> float32 value, for every bit pattern (256 KB): a
        # lookup decodes at one speed whatever the values (numpy's cast is
        # several times slower on subnormals).  Bitwise numpy's own cast.
        self._decode_table = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
        self._scratch_f = np.empty(_CHUNK, np.float32)
        self._scratch_g = np.empty(_CHUNK, np.float32)
        self._scratch_u = np.empty(_CHUNK, np.uint16)
        self._tiny = np.empty(_CHUNK, bool)
        self._normal = np.empty(_CHUNK, bool)

    def _buffers(self, block: int) -> tuple:
        """``(send, recv, acc)``: ``size * block`` float16 twice and ``block`` float32."""
        total = block * self.size
        if self._send.size < total:
            self._send = np.zeros(total, np.float16)
            self._recv = np.zeros(total, np.float16)
            self._acc = np.zeros(block, np.float32)
        return self._send[:total], self._recv[:total], self._acc[:block]

    @staticmethod
    def _check(arr: Any, what: str) -> np.ndarray:
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != 1 \
                or not arr.flags.c_contiguous or not arr.flags.writeable:
            desc = (f"{type(arr).__name__}" if not isinstance(arr, np.ndarray) else
                    f"dtype {arr.dtype}, shape {arr.shape}, contiguous {arr.flags.c_contiguous}, "
                    f"writable {arr.flags.writeable}")
            raise InvalidArgumentError(
                f"float16 compression: {what}: Expect: a writable contiguous 1-d float32 array Actual: {desc}")
        return arr

    # -- the collective steps ---------------------------------------------
    def _encode(self, src: np.ndarray, dst: np.ndarray) -> None:
        """``dst[:] = float16(src)``: IEEE round-to-nearest-even, bitwise numpy's
        cast but for NaN payloads (overflow -> inf, NaN -> NaN, caught later
        by the finite check).

        numpy converts a float32 that rounds inexactly to a float16
        subnormal or to zero (|x| < 2**-14, common among small gradients)
        far slower than a normal one (benchmarks/README.md), so where they
        are many they never reach numpy's cast: they
        are cast as signed zeros, and their mantissa is OR-ed in, computed
        by adding 0.5 in float32 (which rounds |x| to a multiple of 2**-24,
        the ulp of 0.5, to nearest even): the bits of the sum minus those
        of 0.5.  Full-width passes on cache-sized chunks, no masked copies;
        a chunk with only a few such values takes numpy's cast.
        """
        dst_bits = dst.view(np.uint16)
        with np.errstate(over="ignore", invalid="ignore"):
            for lo in range(0, src.size, _CHUNK):
                hi = min(src.size, lo + _CHUNK)
                x, k = src[lo:hi], hi - lo
                mag, tiny, normal = self._scratch_f[:k], self._tiny[:k], self._normal[:k]
                np.abs(x, out=mag)
                np.less(mag, _F16_MIN_NORMAL, out=tiny)            # NaN: False
                if np.count_nonzero(tiny) * _FEW_TINY < k:         # numpy's cast is cheaper
                    np.copyto(dst[lo:hi], x, casting="unsafe")
                    continue
                np.logical_not(tiny, out=normal)
                zeroed = self._scratch_g[:k]
                np.multiply(x, normal, out=zeroed)                 # tiny -> +-0 (NaN, inf kept)
                np.copyto(dst[lo:hi], zeroed, casting="unsafe")
                bits, mant = mag.view(np.int32), self._scratch_u[:k]
                np.add(mag, np.float32(0.5), out=mag)
                np.subtract(bits, 0x3F000000, out=bits)             # bits(|x| + 0.5) - bits(0.5)
                np.multiply(bits, tiny, out=bits)                   # 0 where not tiny
                np.copyto(mant, bits, casting="unsafe")
                np.bitwise_or(dst_bits[lo:hi], mant, out=dst_bits[lo:hi])

    def _decode(self, src: np.ndarray, dst: np.ndarray) -> None:
        """``dst[:] = float32(src)`` (exact) by table lookup."""
        bits = src.view(np.uint16)
        for lo in range(0, src.size, _CHUNK):
            np.take(self._decode_table, bits[lo: lo + _CHUNK], out=dst[lo: lo + _CHUNK])

    def _alltoall(self, send: np.ndarray, recv: np.ndarray) -> None:
        self.comm.alltoall_(send.view(np.uint16), recv.view(np.uint16))

    def _sum_blocks(self, recv: np.ndarray, block: int, out: np.ndarray) -> None:
        """``out`` = the float32 sum, in rank order, of the ``size`` float16 blocks of ``recv``."""
        parts = recv.view(np.uint16).reshape(self.size, block)
        table = self._decode_table
        for lo in range(0, block, _CHUNK):
            hi = min(block, lo + _CHUNK)
            acc, term = out[lo:hi], self._scratch_f[:hi - lo]
            np.take(table, parts[0, lo:hi], out=acc)
            for r in range(1, self.size):
                np.take(table, parts[r, lo:hi], out=term)
                np.add(acc, term, out=acc)

    def _block(self, n: int) -> int:
        return max(_ALIGN, -(-n // (self.size * _ALIGN)) * _ALIGN)

    # -- public -------------------------------------------------------------
    def allreduce_(self, flat: np.ndarray) -> np.ndarray:
        """Replace ``flat`` (1-d float32, same length on every rank) by the
        float16-compressed sum over ranks, bucket by bucket; returns ``flat``."""
        self._check(flat, "allreduce_")
        step = flat.size if self.bucket_elements is None else self.bucket_elements
        for lo in range(0, flat.size, max(step, 1)):
            self._allreduce_slice(flat[lo: lo + step])
        return flat

    def _allreduce_slice(self, x: np.ndarray) -> None:
        n = x.size
        block = self._block(n)
        send, recv, acc = self._buffers(block)
        self._encode(x, send[:n])
        send[n:].fill(0)
        self._alltoall(send, recv)
        own = send[self.rank * block: (self.rank + 1) * block]
        self._sum_blocks(recv, block, acc)
        self._encode(acc, own)
        self.comm.allgather_(send.view(np.uint16))
        self._decode(send[:n], x)

    def reduce_scatter_block(self, flat: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Rank ``r``'s block of the float16-compressed sum over ranks, in float32.

        Args:
            flat: 1-d float32, ``size * out.size`` elements, same on every rank.
            out: this rank's float32 block; receives the float32 sum, in
                rank order, of every rank's float16-rounded block ``r``.
        Returns:
            ``out``.
        """
        self._check(flat, "reduce_scatter_block")
        self._check(out, "reduce_scatter_block output")
        block = out.size
        if flat.size != block * self.size:
            raise InvalidArgumentError(
                f"float16 compression: reduce_scatter_block: Expect: {self.size} x {block} = "
                f"{self.size * block} elements Actual: {flat.size}")
        send, recv, _ = self._buffers(block)
        self._encode(flat, send)
        self._alltoall(send, recv)
        self._sum_blocks(recv, block, out)
        return out

    def wire_bytes(self, n: int) -> int:
        """Bytes this rank sends for an all-reduce of ``n`` gradients (in one call)."""
        block = self._block(n)
        return 2 * 2 * block * (self.size - 1)
