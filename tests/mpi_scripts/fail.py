"""A small synchronous training loop with one injected failure.

Usage: fail.py MODE BAD_RANK [STALL_TIMEOUT]

MODE is one of: none, raise, raise_thread, kill, stop, loop, steps,
variables, diverge, nan.  ``BAD_RANK`` misbehaves at step ``FAIL_STEP``
(prints ``FAIL_AT <time.time()>`` just before) so the test can measure the
time from the failure to the end of the job.  A stall timeout > 0 starts a
watchdog.  Every rank prints ``SKIP <rank> <step>`` for a skipped
non-finite step and ``DONE <rank> <checksum>`` at the end.
"""
import os
import signal
import threading
import time

import numpy as np

from _common import expect, script_args, say
from distnet.distributed.strategies.base import reduce_arrays
from distnet.distributed import (
    DivergenceChecker, Replicated, NonFiniteGuard, Watchdog, broadcast_variables,
    check_parameters_agree, check_same_variables, get_communicator, install_abort_hook,
)
from distnet.tensor import Variable

args = script_args()
mode, bad = args[0], int(args[1])
stall_timeout = float(args[2]) if len(args) > 2 else 0.0
STEPS, FAIL_STEP = 10, 3

comm = get_communicator("auto")
install_abort_hook(comm)
rank = comm.rank
is_bad = rank == bad
expect(comm.size > 1, "run me under mpiexec -n 2 or more")
watchdog = Watchdog(comm, stall_timeout=stall_timeout) if stall_timeout > 0 else None


def failing_now():
    say(f"FAIL_AT {time.time()!r}")


rng = np.random.default_rng(rank)
kernel_shape = (4, 5) if (mode == "variables" and is_bad) else (4, 3)
variables = [Variable(rng.standard_normal(kernel_shape).astype(np.float32), name="dense/kernel"),
             Variable(np.zeros(3, np.float32), name="dense/bias")]
if mode == "variables" and is_bad:
    variables.append(Variable(np.zeros(2, np.float32), name="extra/w"))
    failing_now()
check_same_variables(comm, variables)
broadcast_variables(comm, variables)
sync = Replicated(comm, variables, scalar_names=("loss_sum",))
guard = NonFiniteGuard(max_consecutive=3, rank=rank)
checker = DivergenceChecker(comm, variables, every=2)

steps = STEPS - 1 if (mode == "steps" and is_bad) else STEPS
for step in range(steps):
    if watchdog is not None:
        watchdog.beat(step)
    if is_bad and step == FAIL_STEP and mode not in ("none", "nan", "steps", "variables"):
        time.sleep(0.2)   # this step's computation, then the failure
        if mode == "raise":
            failing_now()
            raise RuntimeError(f"injected failure on rank {rank} at step {step}")
        if mode == "raise_thread":
            failing_now()

            def boom():
                raise RuntimeError(f"injected failure in a thread of rank {rank}")
            threading.Thread(target=boom, name="worker").start()
            time.sleep(30)
        if mode == "kill":
            failing_now()
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "stop":
            failing_now()
            os.kill(os.getpid(), signal.SIGSTOP)
        if mode == "loop":
            failing_now()
            while True:
                pass
        if mode == "diverge":
            failing_now()
            variables[0].data[0, 0] += 1e-3
    if mode == "steps" and is_bad and step == steps - 1:
        failing_now()
    count = 2 + rank
    grads = [np.full(v.shape, 0.01 * (rank + 1), np.float32) for v in variables]
    # NaN on the bad rank only at step 2 (skipped once), then from step 5 on (abort at the 3rd).
    if mode == "nan" and is_bad and (step == 2 or step >= 5):
        if step == 5:
            failing_now()
        grads[1][0] = np.nan
    res = reduce_arrays(sync, grads, count, scalars={"loss_sum": 1.0 * count})
    if guard.check(res.is_finite, step):
        for g, v in res.grads_and_vars():
            v.data -= 0.1 * g
    else:
        say(f"SKIP {rank} {step}")
    checker.maybe_check(step)
    time.sleep(0.05)

if watchdog is not None:
    watchdog.stop()
check_parameters_agree(comm, variables) if mode != "steps" else None
say(f"DONE {rank} {float(sum(v.data.sum(dtype=np.float64) for v in variables))!r}")
