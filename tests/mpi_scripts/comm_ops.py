"""Every communicator call checked against numpy, on every rank.

Each rank's input is drawn from ``default_rng(rank)``, so every rank can
compute what every other rank sent and check the collective's result itself.
Prints ``OK <name>`` per check and ``DONE <rank> <size> <communicator>``.
"""
import os

import numpy as np

from _common import expect, say
from distnet.distributed import (
    CollectiveError, block_counts, broadcast_variables, check_same_variables, get_communicator,
    install_abort_hook,
)
from distnet.errors import DTypeError, InvalidArgumentError
from distnet.tensor import Variable

comm = get_communicator("auto")
install_abort_hook(comm)
rank, size = comm.rank, comm.size
expect(size == int(os.environ["PMI_SIZE"]), f"size {size} vs PMI_SIZE {os.environ['PMI_SIZE']}")
expect(type(comm).__name__ == "MPICommunicator", f"auto chose {type(comm).__name__}")


def data(r, dtype, n=1000):
    rng = np.random.default_rng(r)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(n).astype(dtype)
    return rng.integers(-1000, 1000, n).astype(dtype)


def ok(name):
    if rank == 0:
        say(f"OK {name}")


for dtype in (np.float32, np.float64, np.int32, np.int64):
    every = np.stack([data(r, dtype) for r in range(size)])
    for op, ref in (("sum", every.sum(0, dtype=dtype)), ("max", every.max(0)), ("min", every.min(0))):
        arr = data(rank, dtype)
        out = comm.allreduce_(arr, op=op)
        expect(out is arr, "allreduce_ returns its argument")
        if op == "sum" and np.dtype(dtype).kind == "f":
            expect(np.allclose(arr, ref, rtol=1e-5, atol=1e-5), f"allreduce {op} {np.dtype(dtype)}")
        else:
            expect(np.array_equal(arr, ref), f"allreduce {op} {np.dtype(dtype)}")
        ok(f"allreduce_{op}_{np.dtype(dtype).name}")

# A multi-dimensional array, reduced in place.
arr = np.full((3, 4), rank + 1.0, np.float32)
comm.allreduce_(arr)
expect(np.all(arr == size * (size + 1) / 2), "allreduce of a 2-d array")
ok("allreduce_2d")

# Broadcast from every root.
for root in range(size):
    arr = data(rank, np.float64)
    comm.bcast_(arr, root=root)
    expect(np.array_equal(arr, data(root, np.float64)), f"bcast_ from root {root}")
ok("bcast")

comm.barrier()
ok("barrier")

got = comm.allgather_object({"rank": rank, "tag": f"r{rank}"})
expect(got == [{"rank": r, "tag": f"r{r}"} for r in range(size)], f"allgather_object {got}")
ok("allgather_object")
got = comm.bcast_object(("hello", rank), root=size - 1)
expect(got == ("hello", size - 1), f"bcast_object {got}")
ok("bcast_object")

# reduce_scatter / allgather with a length that does not divide by size.
n = 10 * size + 1
full = np.stack([data(r, np.float64, n) for r in range(size)]).sum(0)
mine = comm.reduce_scatter(data(rank, np.float64, n))
counts = block_counts(n, size)
lo = sum(counts[:rank])
expect(np.allclose(mine, full[lo: lo + counts[rank]]), "reduce_scatter block")
back = comm.allgather(mine)
expect(np.allclose(back, full), "allgather of the reduce_scatter blocks")
back = comm.allgather(mine, counts=counts)
expect(np.allclose(back, full), "allgather with counts")
ok("reduce_scatter_allgather")

# Bad buffers are refused with distnet errors, before any communication.
for bad, exc in ((np.zeros((4, 4))[:, 0], InvalidArgumentError), ([1.0, 2.0], InvalidArgumentError),
                 (np.zeros(3, np.complex64), DTypeError), (np.zeros(3, object), DTypeError)):
    try:
        comm.allreduce_(bad)
    except exc:
        pass
    else:
        raise RuntimeError(f"allreduce_ accepted {bad!r}")
try:
    comm.allreduce_(np.zeros(3), op="prod")
except InvalidArgumentError:
    pass
else:
    raise RuntimeError("allreduce_ accepted op='prod'")
try:
    comm.bcast_(np.zeros(3), root=size)
except InvalidArgumentError:
    pass
else:
    raise RuntimeError("bcast_ accepted a root out of range")
ok("bad_buffers")

# Start-up consistency: identical specs pass, values come from rank 0.
rng = np.random.default_rng(100 + rank)
variables = [Variable(rng.standard_normal((3, 2)).astype(np.float32), name="b/kernel"),
             Variable(rng.standard_normal(2).astype(np.float32), name="a/bias"),
             Variable(np.array(rank, np.int64), name="c/step")]
if rank % 2:
    variables.reverse()   # order of the list must not matter
check_same_variables(comm, variables)
broadcast_variables(comm, variables)
rng0 = np.random.default_rng(100)
want = {"b/kernel": rng0.standard_normal((3, 2)).astype(np.float32)}
want["a/bias"] = rng0.standard_normal(2).astype(np.float32)
want["c/step"] = np.array(0, np.int64)
for v in variables:
    expect(np.array_equal(v.data, want[v.name]) and v.data.dtype == want[v.name].dtype,
           f"broadcast_variables {v.name}")
ok("broadcast_variables")

# Different shapes on the last rank: a CollectiveError on every rank.
specs = [Variable(np.zeros((3, 2 + (rank == size - 1)), np.float32), name="b/kernel")]
try:
    check_same_variables(comm, specs)
except CollectiveError as e:
    msg = str(e)
    expect("'b/kernel'" in msg and f"rank {size - 1} has (3, 3) float32" in msg
           and "rank 0 has (3, 2) float32" in msg, f"message: {msg}")
else:
    raise RuntimeError("check_same_variables accepted different shapes")
ok("check_same_variables_mismatch")

say(f"DONE {rank} {size} {type(comm).__name__}")
