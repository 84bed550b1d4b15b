"""The exact sum: the same bits for any order, split and number of ranks; its accuracy."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from mpi_util import run_mpi

from distnet.distributed.exact_sum import (
    ZERO_EXPONENT,
    dequantize,
    empty_exponents,
    exact_allreduce,
    fraction_bits,
    local_exponents,
    quantize,
)
from distnet.distributed.single import SingleCommunicator
from distnet.errors import DTypeError, InvalidArgumentError


def simulated(ranks: list, count: int, starts=None) -> np.ndarray:
    """:func:`exact_allreduce` on simulated ranks (each a list of pieces), adding
    the ranks' grid sums in the given order as MPI would in some order."""
    size = next(p.size for r in ranks for p in r)
    e = empty_exponents(1 if starts is None else len(starts))
    for r in ranks:
        e = np.maximum(e, local_exponents(r, starts) if r else empty_exponents(e.size - 1))
    frac = fraction_bits(count)
    acc = np.zeros(size, np.float64)
    with np.errstate(invalid="ignore"):   # +inf + -inf: NaN, as the float64 MPI sum gives
        for r in ranks:
            acc += quantize(r, e, frac, starts, out=np.zeros(size, np.float64))
    return dequantize(acc, e, frac, starts)


def exact_f32(column) -> np.float32:
    """The correctly rounded float32 of the exact sum (Fraction, then a round-half-even to 24 bits)."""
    s = sum((v if isinstance(v, Fraction) else Fraction(float(v)) for v in column), Fraction(0))
    if s == 0:
        return np.float32(0)
    # float64 first cannot double-round wrongly only if exact: check it and fall back to a manual rounding.
    e = math.floor(math.log2(abs(s)))
    while Fraction(2) ** e > abs(s):
        e -= 1
    while Fraction(2) ** (e + 1) <= abs(s):
        e += 1
    unit = Fraction(2) ** (max(e, -126) - 23)
    q = s / unit
    n = math.floor(q)
    rem = q - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2):
        n += 1
    return np.float32(float(n * unit))


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint32).tobytes()


def test_every_order_and_partition_gives_the_same_bits():
    rng = np.random.default_rng(0)
    pieces = [(rng.standard_normal(40) * 10.0 ** rng.integers(-6, 6, 40)).astype(np.float32) for _ in range(6)]
    ref = simulated([pieces], 6)
    for perm in itertools.permutations(range(6)):
        got = simulated([[pieces[i]] for i in perm], 6)
        assert bits(got) == bits(ref)
    for n in range(1, 7):   # contiguous and uneven splits over 1..6 ranks, some ranks empty
        for cuts in itertools.combinations_with_replacement(range(7), n - 1):
            bounds = (0, *cuts, 6)
            ranks = [pieces[bounds[k]:bounds[k + 1]] for k in range(n)]
            assert bits(simulated(ranks, 6)) == bits(ref)


def tree_sum(accs: list, rng) -> np.ndarray:
    """The ranks' grid sums added in a random binary tree, as some MPI algorithm might."""
    accs = [a.copy() for a in accs]
    while len(accs) > 1:
        i, j = sorted(rng.choice(len(accs), 2, replace=False))
        b = accs.pop(j)
        accs[i] = b + accs[i] if rng.random() < 0.5 else accs[i] + b
    return accs[0]


def extreme_pieces(rng, count: int, n: int) -> list:
    """Random float32 summands over the whole range: normal and subnormal, zeros of both signs,
    values near float32's largest, and (sometimes) NaN and infinities."""
    x = rng.standard_normal((count, n)) * 2.0 ** rng.integers(-149, 128, (count, n))
    kind = rng.integers(0, 12, (count, n))
    x[kind == 0] = 0.0
    x[kind == 1] = -0.0
    x[kind == 2] = rng.standard_normal(int((kind == 2).sum())) * 1e-42        # subnormal
    x[kind == 3] = rng.choice([-3.4e38, 3.4e38], int((kind == 3).sum()))      # near the largest
    if rng.random() < 0.5:
        x[kind == 4] = rng.choice([np.nan, np.inf, -np.inf], int((kind == 4).sum()))
    with np.errstate(over="ignore"):
        return list(x.astype(np.float32))


@pytest.mark.parametrize("seed", range(12))
def test_property_any_split_any_order_same_bits(seed):
    # Random data over the whole float32 range, random segments, dealt to 1..7 simulated ranks in random
    # order (ranks may hold none), their grid sums added in a random tree: always the bits of one process.
    rng = np.random.default_rng(100 + seed)
    count, n = int(rng.integers(1, 13)), int(rng.integers(1, 300))
    pieces = extreme_pieces(rng, count, n)
    starts = np.unique(np.concatenate([[0], rng.integers(0, n, int(rng.integers(0, 5)))])) if n > 1 else None
    ref = simulated([pieces], count, starts)
    frac = fraction_bits(count)
    for _ in range(6):
        ranks = [[] for _ in range(int(rng.integers(1, 8)))]
        for i in rng.permutation(count):
            ranks[int(rng.integers(0, len(ranks)))].append(pieces[i])
        e = empty_exponents(1 if starts is None else len(starts))
        for r in ranks:
            e = np.maximum(e, local_exponents(r, starts) if r else empty_exponents(e.size - 1))
        with np.errstate(invalid="ignore"):
            acc = tree_sum([quantize(r, e, frac, starts, out=np.zeros(n)) for r in ranks], rng)
        assert bits(dequantize(acc, e, frac, starts)) == bits(ref)
    # NaN/inf where the float64 reference says so; finite elements correctly rounded when no summand
    # falls below the grid (checked elementwise with Fractions on the finite columns)
    cols = np.stack(pieces)
    nan = np.isnan(cols).any(0) | (np.isposinf(cols).any(0) & np.isneginf(cols).any(0))
    assert np.array_equal(np.isnan(ref), nan)
    assert np.all(ref[np.isposinf(cols).any(0) & ~nan] == np.inf)
    assert np.all(ref[np.isneginf(cols).any(0) & ~nan] == -np.inf)
    nan_bits = np.float32(np.nan).view(np.uint32)
    assert np.all(ref[np.isnan(ref)].view(np.uint32) == nan_bits)       # the one canonical NaN
    finite = np.flatnonzero(np.isfinite(cols).all(0))
    exact = np.array([math.fsum(map(float, cols[:, j])) for j in finite])
    # beyond float32's range (2**128 - 2**103 and up) the one rounding gives +-inf, as IEEE says
    over = np.abs(exact) >= 2.0 ** 128 - 2.0 ** 103
    assert np.array_equal(np.isinf(ref[finite]), over)
    seg = np.searchsorted(np.zeros(1) if starts is None else starts, np.arange(n), side="right") - 1
    e = local_exponents(pieces, starts)[seg].astype(np.float64)
    ok = finite[~over]
    got = ref[ok].astype(np.float64)
    bound = (np.spacing(np.abs(ref[ok])).astype(np.float64) / 2 + count * 2.0 ** (e[ok] - frac - 1)
             + np.abs(exact[~over]) * 2.0 ** -52)   # fsum's own float64 rounding
    assert np.all(np.abs(got - exact[~over]) <= bound)


def test_two_dimensional_pieces_and_out():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 70)).astype(np.float32)
    out = np.full(70, 7, np.float32)
    got = exact_allreduce(SingleCommunicator(), x, 5, starts=[0, 30], out=out)
    assert got is out and bits(out) == bits(simulated([list(x)], 5, [0, 30]))


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 3.4e38, -3.4e38, np.inf, -np.inf, np.nan,
                    -np.nan, 1.5, 2.0 ** -24, 1 + 2.0 ** -23], np.float32)


def test_two_summands_take_the_float32_sum_in_either_order():
    # count <= 2: a float32 all-reduce; a + b == b + a bit for bit (NaN made canonical), and a rank
    # without a summand adds -0.0, which leaves every value's bits alone (-0.0 and NaN included).
    a, b = np.repeat(SPECIAL, SPECIAL.size), np.tile(SPECIAL, SPECIAL.size)
    with np.errstate(invalid="ignore", over="ignore"):
        want = a + b
    want[np.isnan(want)] = np.float32(np.nan)
    comm = SingleCommunicator()
    for pieces in ([a, b], [b, a]):
        assert bits(exact_allreduce(comm, pieces, 2)) == bits(want)
    with np.errstate(invalid="ignore"):
        assert bits(np.float32(-0.0) + a) == bits(a)
    one = exact_allreduce(comm, [a], 1)
    assert bits(one[~np.isnan(a)]) == bits(a[~np.isnan(a)])
    assert bits(exact_allreduce(comm, [], 2, size=3)) == bits(np.full(3, -0.0, np.float32))


def test_bucket_split_gives_the_same_bits():
    # Buckets quantized apart with the one agreed scale give the grid sums of the whole buffer.
    rng = np.random.default_rng(1)
    pieces = [rng.standard_normal(100).astype(np.float32) for _ in range(4)]
    whole = simulated([pieces], 4)
    e = local_exponents(pieces)
    frac = fraction_bits(4)
    for cut in (1, 37, 99):
        acc = np.concatenate([quantize([p[:cut] for p in pieces], e, frac),
                              quantize([p[cut:] for p in pieces], e, frac)])
        assert bits(dequantize(acc, e, frac)) == bits(whole)


def test_result_is_correctly_rounded_when_summands_are_within_range():
    rng = np.random.default_rng(2)
    for trial in range(30):
        m = int(rng.integers(2, 20))
        spread = int(rng.integers(0, 30))
        x = (rng.standard_normal((m, 16)) * 2.0 ** rng.integers(-spread, 1, (m, 16))).astype(np.float32)
        got = simulated([list(x)], m)
        for j in range(16):
            assert got[j] == exact_f32(x[:, j]), (trial, j)


@pytest.mark.parametrize("case", ["cancel", "many_small", "wide", "subnormal", "near_max", "random"])
def test_at_least_as_accurate_as_float32_sums(case):
    rng = np.random.default_rng(3)
    m, n = 64, 200
    if case == "cancel":       # big values that cancel, leaving small ones
        big = (rng.standard_normal((m // 2, n)) * 1e7).astype(np.float32)
        x = np.concatenate([big, -big[::-1]]) + (rng.standard_normal((m, n)) * 1e-1).astype(np.float32)
    elif case == "many_small":  # one large value and many below its half-ulp
        x = np.full((m, n), 2.0 ** -25, np.float32)
        x[0] = 1.0
    elif case == "wide":        # 30 binades apart
        x = (rng.standard_normal((m, n)) * 2.0 ** rng.integers(-30, 0, (m, n))).astype(np.float32)
    elif case == "subnormal":
        x = (rng.standard_normal((m, n)) * 1e-39).astype(np.float32)
    elif case == "near_max":    # the partial sums of a float32 add overflow; the exact sum does not
        x = np.full((m, n), 3e38, np.float32)
        x[1::2] = -3e38
    else:
        x = rng.standard_normal((m, n)).astype(np.float32)
    ours = simulated([list(x)], m)
    seq = np.zeros(n, np.float32)
    for row in x:
        seq = seq + row
    pair = np.add.reduce(x, axis=0, dtype=np.float32)
    ref = np.array([math.fsum(map(float, x[:, j])) for j in range(n)])
    err = np.abs(ours.astype(np.float64) - ref)
    for other in (seq, pair):
        e32 = np.abs(other.astype(np.float64) - ref)
        assert np.all(err <= e32), case
    # and within half an ulp of the exact sum (correctly rounded: fsum is float64, then one float32 rounding)
    assert np.all(err <= np.spacing(np.abs(ours)).astype(np.float64) / 2 + np.abs(ref) * 2.0 ** -52), case


def test_error_bound_when_summands_fall_below_the_unit():
    # 1 + (-1) + 1e-30: the unit at E=1, count=3 is 2**-50, so 1e-30 rounds away.  The bound says so.
    x = np.array([[1.0], [-1.0], [1e-30]], np.float32)
    got = simulated([list(x)], 3)
    frac = fraction_bits(3)
    assert got[0] == 0.0
    assert abs(float(got[0]) - 1e-30) <= 3 * 2.0 ** (1 - frac - 1)


def test_zeros_and_empty_segments():
    z = np.zeros(5, np.float32)
    assert local_exponents([z])[0] == ZERO_EXPONENT
    got = simulated([[z], [z.copy()]], 2)
    assert bits(got) == bits(z)
    a = np.array([0, 0, 1.5, -2.5, 0, 0], np.float32)
    got = simulated([[a], [a]], 2, starts=[0, 2, 4])
    assert bits(got) == bits(2 * a)
    # -0.0 + -0.0: the grid rounds -0.0 to +0.0; the sum is +0.0 on any N (stated, not IEEE's -0.0).
    assert bits(simulated([[np.array([-0.0], np.float32)]], 1)) == bits(np.zeros(1, np.float32))


def test_segments_keep_small_layers_exact():
    small = np.full(4, 1e-20, np.float32)
    big = np.full(4, 1e10, np.float32)
    one = simulated([[np.concatenate([small, big])] * 3], 3)
    per = simulated([[np.concatenate([small, big])] * 3], 3, starts=[0, 4])
    assert np.all(one[:4] == 0)                       # one scale: the small layer rounds away
    assert np.all(per[:4] == exact_f32([small[0]] * 3))
    assert np.all(per[4:] == exact_f32([big[0]] * 3))


def test_non_finite_values_stay_visible_and_deterministic():
    a = np.array([1, np.nan, np.inf, np.inf, -np.inf, 2], np.float32)
    b = np.array([np.inf, 1, -np.inf, 1, -np.inf, 3], np.float32)
    want = np.array([np.inf, np.nan, np.nan, np.inf, -np.inf, 5], np.float32)
    for ranks in ([[a, b]], [[a], [b]], [[b], [a]], [[b], [], [a]]):
        got = simulated(ranks, 2)
        assert bits(got) == bits(want)
    # 3e38 * 3 overflows float32 exactly where the exact sum does: +inf, the same on every split
    c = np.full(1, 3e38, np.float32)
    assert bits(simulated([[c, c, c]], 3)) == bits(simulated([[c], [c], [c]], 3)) == bits(np.full(1, np.inf, np.float32))


def test_single_communicator_is_the_local_sum():
    rng = np.random.default_rng(4)
    pieces = [rng.standard_normal(50).astype(np.float32) for _ in range(5)]
    assert bits(exact_allreduce(SingleCommunicator(), pieces, 5)) == bits(simulated([pieces], 5))


def test_headroom_keeps_every_partial_sum_exact():
    for count in (1, 2, 3, 4, 5, 64, 65, 1000, 1 << 20):
        frac = fraction_bits(count)
        assert count * 2 ** frac <= 2 ** 53 and frac <= 51
    frac = fraction_bits(1 << 20)
    x = np.full(3, np.float32(np.nextafter(np.float32(2.0), np.float32(0))), np.float32)   # just below 2**E
    e = local_exponents([x])
    q = quantize([x], e, frac) / 2.0 ** (int(e[0]) - frac)
    assert np.all(np.abs(q) <= 2 ** frac)
    # count summands of the largest magnitude, one sign: the grid sum is exact (every partial sum an
    # integer multiple of the unit at most 2**53 units), checked against integers.
    count = 1 << 12
    frac = fraction_bits(count)
    big = np.float32(np.nextafter(np.float32(2.0), np.float32(0)))
    e = local_exponents([np.full(2, big)])
    acc = quantize(np.full((count, 2), big, np.float32), e, frac)
    unit = Fraction(2) ** (int(e[0]) - frac)
    assert Fraction(acc[0]) == count * round(Fraction(float(big)) / unit) * unit


def test_grid_rounding_is_rint_of_the_scaled_summand():
    # (x + M) - M is x rounded half-to-even to the unit 2**(E - F), the integer format's definition
    rng = np.random.default_rng(8)
    for count in (1, 7, 64, 1 << 20):
        frac = fraction_bits(count)
        x = (rng.standard_normal(4000) * 2.0 ** rng.integers(-60, 0, 4000)).astype(np.float32)
        x[:4] = [0.0, -0.0, 1.5 * 2.0 ** -40, -2.5 * 2.0 ** -40]    # ties at some units
        e = local_exponents([x])
        unit = Fraction(2) ** (int(e[0]) - frac)
        got = quantize([x], e, frac)
        for v, g in zip(x[:400].tolist() + x[:4].tolist(), got[:400].tolist() + got[:4].tolist()):
            q = Fraction(v) / unit
            n = math.floor(q)
            if q - n > Fraction(1, 2) or (q - n == Fraction(1, 2) and n % 2):
                n += 1
            assert Fraction(g) == n * unit, (count, v)


@pytest.mark.parametrize("bad, words", [
    (lambda: fraction_bits(0), "count"), (lambda: fraction_bits((1 << 20) + 1), "count"),
    (lambda: local_exponents([np.zeros(3, np.float64)]), "float32"),
    (lambda: local_exponents([np.zeros(3, np.float32)], starts=[1]), "segments"),
    (lambda: quantize([np.zeros(3, np.float32), np.zeros(4, np.float32)], empty_exponents(), 10), "3 elements"),
    (lambda: quantize([np.zeros(3, np.float32)], empty_exponents(), 10, out=np.zeros(3, np.int64)), "float64"),
    (lambda: dequantize(np.zeros(3, np.int64)), "float64"),
])
def test_bad_input_is_refused(bad, words):
    with pytest.raises((InvalidArgumentError, DTypeError), match=words):
        bad()


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_mpi_ranks_give_the_bits_of_one_process(nprocs):
    one = run_mpi("exact_sum_ranks.py", 1, timeout=60)
    assert one.returncode == 0, one.describe()
    run = run_mpi("exact_sum_ranks.py", nprocs, timeout=60)
    assert run.returncode == 0, run.describe()
    digests = run.values("DIGEST")
    assert len(digests) == nprocs and len(set(digests)) == 1, run.describe()
    assert digests[0] == one.values("DIGEST")[0], run.describe() + one.describe()


def test_conversion_back_is_one_rounding():
    # grid sums near rounding midpoints of float32 (and one unit off them): the cast rounds once, correctly
    rng = np.random.default_rng(5)
    frac = 40
    vals = []
    for k in range(20, 54):
        base = int(rng.integers(1 << (k - 1), 1 << k))
        shift = max(k - 24, 0)
        mid = ((base >> shift) << shift) + ((1 << shift) >> 1)          # a float32 midpoint
        vals += [mid, mid + 1, mid - 1, -mid, -mid - 1, base, -base]
    vals = [v for v in vals if abs(v) <= 2 ** 53]
    acc = np.array([v * 2.0 ** -frac for v in vals], np.float64)
    assert all(Fraction(a) == Fraction(v, 1 << frac) for a, v in zip(acc.tolist(), vals))   # exact grid values
    got = dequantize(acc, np.array([0, 0], np.int64), frac)
    for v, g in zip(vals, got):
        assert g == exact_f32([Fraction(v, 1 << frac)]), v


def test_arrays_longer_than_a_chunk_give_the_bits_of_their_slices():
    # the element-wise passes run chunk by chunk; slices that fit one chunk must agree with them
    rng = np.random.default_rng(6)
    n = 3 * (1 << 15) + 123
    pieces = [(rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)).astype(np.float32) for _ in range(3)]
    starts = [0, 5, 70_000]
    e = local_exponents(pieces, starts)
    frac = fraction_bits(3)
    whole = dequantize(quantize(pieces, e, frac, starts), e, frac, starts)
    for lo, hi in ((0, 5), (5, 40_000), (40_000, 70_000), (70_000, n)):
        seg_e = np.array([e[0 if hi <= 5 else (1 if hi <= 70_000 else 2)], 0], np.int64)
        part = dequantize(quantize([p[lo:hi] for p in pieces], seg_e, frac), seg_e, frac)
        assert bits(part) == bits(whole[lo:hi]), (lo, hi)
