"""distnet side by side with PyTorch and TensorFlow: the same training step.

The step: forward, backward, Adam update (lr 1e-4), softmax cross-entropy
with integer labels, float32, global batch 100, random data of the right
shape (the same arrays for every framework, from one seed).  Models:

* ``reference``: conv 5x5x32 SAME + relu + max-pool 2 -> dense 1024 relu ->
  dense 10 (the reference net of docs/jobs.md, the default job);
* ``twoconv``: the same with conv 5x5x64 SAME + relu + max-pool 2 added
  after the first pool;
* ``mlp``: 784 -> 256 relu -> 128 relu -> 10.

Configurations (each framework x configuration x model runs in its own
subprocess, with the thread settings fixed in the environment before
numpy/torch/tensorflow are imported):

* ``1x1``: one process, one thread;
* ``1x2``: one process, two threads (BLAS threads for distnet; intra-op
  threads for torch and TensorFlow);
* ``2x1``: two processes, one thread each, global batch 100 (50 per rank):
  distnet with ``mpiexec -n 2`` (the mpiexec next to ``sys.executable``) and
  ``distnet.Trainer``; PyTorch DistributedDataParallel with the gloo backend.
  This row is also compared with the frameworks' ``1x2`` figures.  distnet
  runs it twice (``--zero1 both``, the default): with the replicated Adam and
  with the sharded ZeRO-1 optimizer (``Trainer(strategy="zero1",
  shared_memory="auto")``, as job files run it: the weights in memory the two
  ranks share and the gradient blocks summed from it, no reduce-scatter/
  all-gather messages).  The replicated run sums the gradients as job files do
  too (``--shared-memory on``, the default: ``shared_memory="auto"``, through the
  two ranks' shared memory; ``off``: the MPI all-reduce).  With ``--deterministic on`` (the default) it also
  runs the deterministic step (``Trainer(deterministic=True)``, replicated:
  canonical pieces of the global batch and the exact sum,
  docs/determinism.md) in the same rounds, and prints its ms/step beside the
  default replicated step's and the ratio.

The frameworks are optional: the script looks for ``torch`` and
``tensorflow`` with ``importlib`` in the running interpreter and says which it
skipped.  Run it with an interpreter that has them, e.g. a separate venv::

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install -e . torch==2.13.0 tensorflow-cpu
    /work/bench-venv/bin/python benchmarks/compare.py            # a few minutes
    /work/bench-venv/bin/python benchmarks/compare.py --quick    # under a minute
    /work/bench-venv/bin/python benchmarks/compare.py --models reference,mlp --configs 1x1 --rounds 5

distnet's convolution layers run with ``Trainer(conv_algorithm="auto")``
(``--conv-algorithm``): each layer's algorithm (im2col + GEMM, FFT,
Winograd) is measured once at start-up, as TensorFlow's oneDNN and cuDNN's
benchmark mode pick theirs; the chosen plan is printed in round 1.
``--conv-algorithm gemm`` gives the Trainer's default (today's arithmetic).

How the figures are taken: warm-up steps are excluded; each run reports the
median wall time per step of its timed steps; the runs of all frameworks
alternate in rounds (the order rotating from round to round) so that machine
load hits them alike, and the table shows the median over rounds.  Each
framework's idiomatic fast path is used: torch eager mode with
``torch.set_num_threads``; TensorFlow a ``tf.function`` train step with a
``GradientTape`` and the Keras Adam (``--tf-jit`` picks XLA compilation on or
off; the default is the one found faster here, see benchmarks/README.md).

It also prints distnet's 2-rank scaling efficiency on the reference net at
global batch 200, defined as ``T1 / (2 * T2)`` with T1 the 1-rank and T2 the
2-rank median step time at the same global batch (100% = perfect), the
gradient synchronisation time beside a bare in-place ``MPI.Allreduce`` of the
same bytes in the same processes, and the peak RSS of every distnet rank
(``resource.getrusage(...).ru_maxrss``) beside the theoretical need computed
from the shapes, and each issue-7 target with its measured figure.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from distnet.runner.blas_spin import spin_briefly  # imports no numpy: the workers set their threads first

MODELS = ("reference", "twoconv", "mlp")
CONFIGS = ("1x1", "1x2", "2x1")
FRAMEWORKS = ("distnet", "torch", "tensorflow")
LEARNING_RATE = 1e-4
IMAGE = (28, 28, 1)
CLASSES = 10

# ---------------------------------------------------------------------------
# Shapes: one description of each model, used by every framework and by the
# memory arithmetic.


def layer_plan(model: str) -> list[tuple]:
    """The layers of ``model`` as ``("conv", filters) | ("pool",) | ("flatten",) | ("dense", units, relu)``.

    Args:
      model: one of ``MODELS``.

    Returns:
      The list of layer descriptions, input 28x28x1, output 10 logits.
    """
    if model == "reference":
        return [("conv", 32), ("pool",), ("flatten",), ("dense", 1024, True), ("dense", CLASSES, False)]
    if model == "twoconv":
        return [("conv", 32), ("pool",), ("conv", 64), ("pool",), ("flatten",),
                ("dense", 1024, True), ("dense", CLASSES, False)]
    if model == "mlp":
        return [("flatten",), ("dense", 256, True), ("dense", 128, True), ("dense", CLASSES, False)]
    raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")


def memory_need(model: str, local_batch: int, size: int) -> dict:
    """Theoretical bytes a distnet rank needs for one step of ``model``.

    Convention: float32 everywhere; parameters, gradients (one set), Adam's
    ``m`` and ``v``, EMA shadows (one per parameter, as the default job keeps
    them; this benchmark's step does not run an EMA, so its line is shown but
    the step needs the total without it), and the activations kept for the
    backward pass of an unfused graph: the input batch, each conv's im2col
    matrix, the pre-bias, post-bias and post-relu outputs of every conv and
    dense layer, and every pool output.  ``sharded`` is the same with the
    optimizer slots and EMA split over ``size`` ranks (ZeRO stage 1).

    Args:
      model: one of ``MODELS``.
      local_batch: samples per rank per step.
      size: number of ranks.

    Returns:
      A dict of byte counts.
    """
    h, w, c = IMAGE
    params = 0
    acts = local_batch * h * w * c  # the input batch
    flat = None
    for layer in layer_plan(model):
        if layer[0] == "conv":
            f = layer[1]
            params += 5 * 5 * c * f + f
            acts += local_batch * h * w * 5 * 5 * c  # im2col
            acts += 3 * local_batch * h * w * f      # conv, + bias, relu
            c = f
        elif layer[0] == "pool":
            h, w = h // 2, w // 2
            acts += local_batch * h * w * c
        elif layer[0] == "flatten":
            flat = h * w * c
        else:
            units = layer[1]
            params += flat * units + units
            acts += (3 if layer[2] else 2) * local_batch * units
            flat = units
    b = 4
    need = {"parameters": params * b, "gradients": params * b, "adam_m_v": 2 * params * b,
            "ema": params * b, "activations": acts * b}
    need["total_without_ema"] = need["parameters"] + need["gradients"] + need["adam_m_v"] + need["activations"]
    need["total"] = need["total_without_ema"] + need["ema"]
    need["sharded_total"] = (need["parameters"] + need["gradients"] + need["activations"]
                             + (need["adam_m_v"] + need["ema"]) // size)
    need["num_parameters"] = params
    return need


def make_data(n: int, seed: int = 0):
    """``n`` random NHWC float32 images in [0, 1) and int64 labels, the same for every framework."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.random((n,) + IMAGE, dtype=np.float32), rng.integers(0, CLASSES, n)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def pss_bytes() -> int | None:
    """This process's proportional set size now (Linux): shared pages count 1/k in each of the k
    processes that map them, so the ranks' figures add up to the machine's memory; None elsewhere."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resident_bytes() -> dict:
    """This process's resident pages now by kind (Linux ``/proc/self/status``): ``anon`` (its own heap
    and arrays), ``file`` (mapped files, mostly shared libraries: clean pages the kernel can drop and
    reread, one copy per machine) and ``shmem`` (shared memory, e.g. ZeRO-1's shared weights); {}
    elsewhere."""
    kinds = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    try:
        return {kinds[f[0]]: int(f[1]) * 1024 for f in map(str.split, Path("/proc/self/status").read_text().splitlines())
                if f and f[0] in kinds}
    except OSError:
        return {}


# ---------------------------------------------------------------------------
# Workers: one run = one framework, one configuration, one model; prints one
# JSON line (rank 0).


def distnet_model(model_name: str):
    """``model_name`` (one of ``MODELS``) as a distnet Sequential, seed 0."""
    import distnet
    from distnet import layers

    seq = []
    for layer in layer_plan(model_name):
        if layer[0] == "conv":
            seq.append(layers.Conv2D(layer[1], 5, padding="same", activation="relu"))
        elif layer[0] == "pool":
            seq.append(layers.MaxPool2D(2))
        elif layer[0] == "flatten":
            seq.append(layers.Flatten())
        else:
            seq.append(layers.Dense(layer[1], activation="relu" if layer[2] else None))
    return distnet.Sequential(seq, input_shape=IMAGE, seed=0)


def run_distnet(model_name: str, batch: int, steps: int, warmup: int, sharded: bool = False,
                conv_algorithm: str = "auto", deterministic: bool = False, shared_memory: bool = True) -> dict | None:
    """distnet's step through ``Trainer`` on this process's communicator (mpiexec gives 2 ranks).

    Args:
      model_name: one of ``MODELS``.
      batch: the global batch.
      steps, warmup: timed and untimed steps.
      sharded: ``Trainer(strategy="zero1")`` (ZeRO-1).
      shared_memory: the replicated strategy's ``shared_memory="auto"`` (2 ranks on one machine: no MPI all-reduce).
      conv_algorithm: the Trainer's ``conv_algorithm`` (``"auto"``: measured per layer at start-up).
      deterministic: ``Trainer(deterministic=True)`` (replicated; the default piece size).

    Returns:
      On rank 0, ``{"step_ms", "cores", "sync_ms", "bare_allreduce_ms", "sync_mbytes", "rss"}``; None elsewhere.
    """
    import numpy as np

    import distnet
    from distnet.data import ArrayDataset
    from distnet.training.trainer import Trainer

    comm = distnet.distributed.init().comm   # BLAS threads per rank and the allocator, as `distnet train`
    baseline_rss = peak_rss_bytes()
    model = distnet_model(model_name)
    x, y = make_data(batch * (steps + warmup))
    data = ArrayDataset(x, y, num_classes=CLASSES)
    trainer = Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(LEARNING_RATE), data,
                      global_batch_size=batch, steps=steps + warmup, seed=0, comm=comm, check_every=None,
                      strategy="zero1" if sharded else "replicated",
                      # the deterministic step refuses an explicit "auto" (a timing would choose):
                      # unset, it runs the fixed plan (gemm on a fresh run)
                      conv_algorithm=None if deterministic and conv_algorithm == "auto" else conv_algorithm,
                      **({"shared_memory": "auto"} if sharded or (shared_memory and not deterministic) else {}),
                      **({"deterministic": True} if deterministic else {}))

    sync_times: list[float] = []
    sync = trainer.strategy
    if True:
        original = sync.reduce

        def timed_sync(*args, **kwargs):
            # Between a barrier and the return, as the bare all-reduce below: waiting for a
            # slower rank is load imbalance, not synchronisation cost.
            if comm.size > 1:
                comm.barrier()
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            sync_times.append(time.perf_counter() - t0)
            return out

        sync.reduce = timed_sync
        if sharded:  # ZeRO-1: the parameters' all-gather after the update is part of the synchronisation
            original_gather = sync.gather_params

            def timed_gather(*args, **kwargs):
                t0 = time.perf_counter()
                out = original_gather(*args, **kwargs)
                sync_times[-1] += time.perf_counter() - t0
                return out

            sync.gather_params = timed_gather
    step_times: list[float] = []
    cpu_times: list[float] = []
    last = [0.0, 0.0]

    def on_step(_trainer, _record) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        step_times.append(now - last[0])
        cpu_times.append(cpu - last[1])
        last[0], last[1] = now, cpu

    trainer.add_hook(on_step)
    comm.barrier()
    last[0], last[1] = time.perf_counter(), time.process_time()
    trainer.fit()
    # Before the bare all-reduce below: its buffer (and MPI's for the sum) is this script's, not training's.
    peak = peak_rss_bytes()
    resident = resident_bytes()

    bare: list[float] = []
    nbytes = int(getattr(sync, "nbytes", 0) or 0)
    if comm.size > 1 and nbytes:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        for _ in range(max(steps, 5)):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce_(buf)
            bare.append(time.perf_counter() - t0)
    rss = comm.allgather_object({"peak": peak, "baseline": baseline_rss, "pss": pss_bytes(), **resident})
    if comm.rank != 0:
        return None
    return {
        "step_ms": 1e3 * statistics.median(step_times[warmup:]),
        "cores": sum(cpu_times[warmup:]) / sum(step_times[warmup:]),
        "blas_kernel": blas_kernel(),
        "shared_memory": bool(getattr(sync, "shared", False)),
        "sync_ms": 1e3 * statistics.median(sync_times[warmup:]) if len(sync_times) > warmup else None,
        "bare_allreduce_ms": 1e3 * statistics.median(bare) if bare else None,
        "sync_mbytes": nbytes / 1e6,
        "rss": rss,
        "conv_algorithms": trainer.conv_algorithms,
        "piece_size": trainer.piece_size if deterministic else None,
    }


def run_torch(model_name: str, batch: int, steps: int, warmup: int, threads: int, ddp: bool) -> dict | None:
    """PyTorch's eager step (NCHW); with ``ddp``, DistributedDataParallel over gloo (RANK/WORLD_SIZE env).

    Returns:
      On rank 0, ``{"step_ms", "cores"}``; None elsewhere.
    """
    import numpy as np
    import torch
    import torch.nn as tnn

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    rank, size = 0, 1
    if ddp:
        import torch.distributed as tdist

        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        tdist.init_process_group("gloo", rank=rank, world_size=size)
    torch.manual_seed(0)
    mods: list = []
    h, c, flat = IMAGE[0], IMAGE[2], None
    for layer in layer_plan(model_name):
        if layer[0] == "conv":
            mods += [tnn.Conv2d(c, layer[1], 5, padding=2), tnn.ReLU()]
            c = layer[1]
        elif layer[0] == "pool":
            mods.append(tnn.MaxPool2d(2))
            h //= 2
        elif layer[0] == "flatten":
            mods.append(tnn.Flatten())
            flat = h * h * c
        else:
            mods.append(tnn.Linear(flat, layer[1]))
            if layer[2]:
                mods.append(tnn.ReLU())
            flat = layer[1]
    model = tnn.Sequential(*mods)
    if ddp:
        model = tnn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = tnn.CrossEntropyLoss()
    local = batch // size
    x, y = make_data(batch * (steps + warmup))
    # NHWC -> NCHW (torch's layout); this rank's contiguous shard of each global batch.
    xs = [torch.from_numpy(np.ascontiguousarray(x[i * batch + rank * local:i * batch + (rank + 1) * local]
                                                .transpose(0, 3, 1, 2))) for i in range(steps + warmup)]
    ys = [torch.from_numpy(y[i * batch + rank * local:i * batch + (rank + 1) * local]) for i in range(steps + warmup)]
    times, cpu = [], []
    for xb, yb in zip(xs, ys):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if ddp:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    if rank != 0:
        return None
    return {"step_ms": 1e3 * statistics.median(times[warmup:]), "cores": sum(cpu[warmup:]) / sum(times[warmup:])}


def run_tensorflow(model_name: str, batch: int, steps: int, warmup: int, threads: int, jit: bool) -> dict:
    """TensorFlow's step: a ``tf.function`` (XLA if ``jit``) with a GradientTape and the Keras Adam.

    Returns:
      ``{"step_ms", "cores", "jit"}``.
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras
    keras.utils.set_random_seed(0)
    seq: list = [keras.Input(IMAGE)]
    for layer in layer_plan(model_name):
        if layer[0] == "conv":
            seq.append(keras.layers.Conv2D(layer[1], 5, padding="same", activation="relu"))
        elif layer[0] == "pool":
            seq.append(keras.layers.MaxPooling2D(2))
        elif layer[0] == "flatten":
            seq.append(keras.layers.Flatten())
        else:
            seq.append(keras.layers.Dense(layer[1], activation="relu" if layer[2] else None))
    model = keras.Sequential(seq)
    opt = keras.optimizers.Adam(LEARNING_RATE)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    @tf.function(jit_compile=jit)
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    x, y = make_data(batch * (steps + warmup))
    xs = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps + warmup)]
    ys = [tf.constant(y[i * batch:(i + 1) * batch]) for i in range(steps + warmup)]
    times, cpu = [], []
    for xb, yb in zip(xs, ys):
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(xb, yb).numpy()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"step_ms": 1e3 * statistics.median(times[warmup:]), "cores": sum(cpu[warmup:]) / sum(times[warmup:]),
            "jit": jit}


def worker(args: argparse.Namespace) -> int:
    """One measurement in this process; prints ``RESULT {json}`` on rank 0."""
    if args.worker == "distnet":
        out = run_distnet(args.models, args.batch, args.steps, args.warmup, args.sharded, args.conv_algorithm,
                          args.det_worker, args.shared_memory == "on")
    elif args.worker == "torch":
        out = run_torch(args.models, args.batch, args.steps, args.warmup, args.threads, args.ddp)
    else:
        out = run_tensorflow(args.models, args.batch, args.steps, args.warmup, args.threads, args.tf_jit == "on")
    if out is not None:
        print("RESULT " + json.dumps(out), flush=True)
    return 0


# ---------------------------------------------------------------------------
# Driver.


#: What ``--openblas-core`` does to ``OPENBLAS_CORETYPE`` in every run's environment:
#: None removes it (OpenBLAS picks its kernels from the CPU, as oneDNN does for
#: torch and TensorFlow), ``"inherit"`` keeps this process's, a name sets it.
OPENBLAS_CORE: str | None = None


def thread_env(threads: int) -> dict:
    """The environment of a run with ``threads`` BLAS/OpenMP threads (set before any import)."""
    env = dict(os.environ)
    if OPENBLAS_CORE is None:
        env.pop("OPENBLAS_CORETYPE", None)
    elif OPENBLAS_CORE != "inherit":
        env["OPENBLAS_CORETYPE"] = OPENBLAS_CORE
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    # OpenBLAS's idle threads spin briefly, as in the processes the distnet command starts
    # (distnet/runner/blas_spin.py); torch (MKL) and TensorFlow (oneDNN, Eigen) do not read it.
    spin_briefly(env)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_result(proc: subprocess.CompletedProcess, what: str) -> dict:
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def launch(framework: str, config: str, model: str, batch: int, steps: int, warmup: int, tf_jit: str,
           conv_algorithm: str = "auto", shared_memory: str = "on") -> dict:
    """Run one measurement in fresh subprocess(es) and return its result dict."""
    threads = 2 if config == "1x2" else 1
    sharded = framework == "distnet-zero1"
    det = framework == "distnet-det"
    me = [sys.executable, os.path.abspath(__file__), "--worker", "distnet" if sharded or det else framework,
          "--models", model,
          "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup),
          "--threads", str(threads), "--tf-jit", tf_jit, "--conv-algorithm", conv_algorithm,
          "--shared-memory", shared_memory] + (
              ["--sharded"] if sharded else []) + (["--det-worker"] if det else [])
    env = thread_env(threads)
    what = f"{framework} {config} {model}"
    if config != "2x1":
        return parse_result(subprocess.run(me, env=env, capture_output=True, text=True), what)
    if framework in ("distnet", "distnet-zero1", "distnet-det"):
        mpiexec = str(Path(sys.executable).parent / "mpiexec")
        return parse_result(subprocess.run([mpiexec, "-n", "2", *me], env=env, capture_output=True, text=True), what)
    if framework == "torch":
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2")
        procs = [subprocess.Popen(me + ["--ddp"], env=dict(env, RANK=str(r)), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for r in range(2)]
        outs = [p.communicate() for p in procs]
        return parse_result(subprocess.CompletedProcess(me, procs[0].returncode, outs[0][0], outs[0][1] + outs[1][1]),
                            what)
    raise ValueError(f"no 2-process configuration for {framework}")


def machine_info() -> dict:
    """CPU count and model, numpy and BLAS versions, load average and date."""
    import numpy as np

    info = {"nproc": os.cpu_count(), "cpu": "?", "numpy": np.__version__, "python": sys.version.split()[0],
            "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
            break
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = ", ".join(f"{p.get('internal_api')} {p.get('version')}" for p in threadpool_info()
                                 if p.get("user_api") == "blas")
    except ImportError:
        info["blas"] = "?"
    return info


def blas_kernel() -> str:
    """The kernel family numpy's OpenBLAS runs in this process, or "?"."""
    from distnet.distributed.threads import openblas_cores

    return ",".join(sorted(set(openblas_cores()))) or "?"


def fmt_ratio(a, b) -> str:
    return f"{a / b:6.2f}x" if a is not None and b is not None else "      -"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None,
                        help=f"comma-separated subset of {','.join(MODELS)} (default: all)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of 1x1,1x2,2x1,scaling (default: all)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run (default 12)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per run (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--batch", type=int, default=100, help="global batch (default 100)")
    parser.add_argument("--scaling-batch", type=int, default=200, help="global batch of the scaling run")
    parser.add_argument("--tf-jit", choices=("on", "off"), default="off",
                        help="TensorFlow's XLA compilation of the train step (default off: faster here)")
    parser.add_argument("--conv-algorithm", choices=("auto", "gemm", "fft", "winograd"), default="auto",
                        help="distnet's Trainer(conv_algorithm=...): auto (default) measures the algorithms per "
                             "layer at start-up, as TensorFlow's oneDNN and cuDNN's benchmark mode choose theirs")
    parser.add_argument("--quick", action="store_true",
                        help="reference net and MLP (unless --models), 4 timed steps, 1 round: under a minute on an idle machine")
    parser.add_argument("--json", metavar="FILE", help="also write every raw result to FILE")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--ddp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sharded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--det-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", choices=("on", "off"), default="on",
                        help="also run distnet's deterministic step (Trainer(deterministic=True), replicated) at "
                             "2x1 in the same rounds and print its cost beside the default step (default on)")
    parser.add_argument("--frameworks", default=None,
                        help="comma-separated subset of distnet,torch,tensorflow to run (default: all installed)")
    parser.add_argument("--zero1", choices=("off", "on", "both"), default="both",
                        help="distnet's 2-rank runs with the replicated optimizer (off), the sharded ZeRO-1 "
                             "optimizer (on) or both side by side (default)")
    parser.add_argument("--shared-memory", choices=("on", "off"), default="on",
                        help="distnet's replicated 2-rank runs sum the gradients through shared memory "
                             "(Trainer(shared_memory='auto'), as job files run them: the default) or, off, "
                             "with an MPI all-reduce")
    parser.add_argument("--openblas-core", default="auto", metavar="auto|inherit|NAME",
                        help="OPENBLAS_CORETYPE of every run: auto (default) removes it, so OpenBLAS picks its "
                             "kernels from the CPU as oneDNN does for torch and TensorFlow; inherit keeps this "
                             "shell's; a name (Haswell, SkylakeX, ...) sets it")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    global OPENBLAS_CORE
    OPENBLAS_CORE = None if args.openblas_core == "auto" else args.openblas_core
    if args.quick:  # what the user names explicitly still wins
        args.models = args.models or "reference,mlp"
        args.steps, args.warmup, args.rounds = 4, 2, 1
    args.models = args.models or ",".join(MODELS)
    args.configs = args.configs or ",".join(CONFIGS) + ",scaling"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for m in models:
        if m not in MODELS:
            parser.error(f"--models: unknown model {m!r}; expected some of {', '.join(MODELS)}")
    for c in configs:
        if c not in CONFIGS + ("scaling",):
            parser.error(f"--configs: unknown configuration {c!r}; expected some of 1x1, 1x2, 2x1, scaling")
    for name, value in (("--steps", args.steps), ("--rounds", args.rounds), ("--batch", args.batch)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.batch % 2 or args.scaling_batch % 2:
        parser.error(f"the batches must be even (split over 2 ranks), got {args.batch} and {args.scaling_batch}")

    present = ["distnet"]
    wanted = set(FRAMEWORKS if args.frameworks is None else [f.strip() for f in args.frameworks.split(",")])
    if not wanted <= set(FRAMEWORKS) or "distnet" not in wanted:
        parser.error(f"--frameworks: Expect: distnet and some of torch,tensorflow Actual: {args.frameworks}")
    for fw in ("torch", "tensorflow"):
        if fw not in wanted:
            continue
        if importlib.util.find_spec(fw) is not None:
            present.append(fw)
        else:
            print(f"# skipped {fw}: not installed in {sys.executable} (pip install "
                  f"{'torch==2.13.0' if fw == 'torch' else 'tensorflow-cpu'} to compare)")
    info = machine_info()
    versions = {}
    if "torch" in present:
        versions["torch"] = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                           capture_output=True, text=True).stdout.strip()
    if "tensorflow" in present:
        versions["tensorflow"] = subprocess.run(
            [sys.executable, "-c", "import tensorflow as tf; print(tf.__version__)"], capture_output=True, text=True,
            env=thread_env(1)).stdout.strip()
    print(f"# {info['date']}; {info['nproc']} cpus, {info['cpu']}; python {info['python']}, numpy {info['numpy']} "
          f"({info['blas']}); " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"# load average at start: {info['loadavg']}")
    kernel = subprocess.run([sys.executable, "-c", "import numpy, sys; sys.path.insert(0, sys.argv[1]); "
                             "import compare; print(compare.blas_kernel())", str(Path(__file__).parent)],
                            capture_output=True, text=True, env=thread_env(1)).stdout.strip() or "?"
    inherited = os.environ.get("OPENBLAS_CORETYPE")
    how = {"auto": f"OPENBLAS_CORETYPE={inherited} of this shell removed, picked from the CPU" if inherited
           else "picked from the CPU", "inherit": f"OPENBLAS_CORETYPE={inherited or '(unset)'} kept"
           }.get(args.openblas_core, f"OPENBLAS_CORETYPE={args.openblas_core} set")
    print(f"# numpy's OpenBLAS kernels in every run: {kernel} ({how}; --openblas-core)")
    from distnet import jit
    numba = importlib.util.find_spec("numba")
    print("# distnet's compiled kernels (distnet/jit.py): " + (
        f"numba {importlib.metadata.version('numba')}" if jit.available() else
        "OFF (" + ("DISTNET_JIT=0" if numba else "numba is not installed in this interpreter") +
        "): the numpy paths run, the same bits, slower"))
    print(f"# global batch {args.batch}, {args.steps} timed + {args.warmup} warm-up steps per run, "
          f"{args.rounds} alternating round(s); TensorFlow jit_compile={args.tf_jit}; "
          f"distnet conv_algorithm={args.conv_algorithm}")
    print("# command: " + " ".join([Path(sys.executable).name, *sys.argv]))

    two_rank = {"off": ["distnet"], "on": ["distnet-zero1"], "both": ["distnet", "distnet-zero1"]}[args.zero1]
    det_rank = ["distnet-det"] if args.deterministic == "on" else []
    jobs: list[tuple[str, str, str, int]] = []
    for model in models:
        for config in configs:
            if config == "scaling":
                if model == "reference":
                    jobs.append(("distnet", "scaling1", model, args.scaling_batch))
                    jobs += [(fw, "scaling2", model, args.scaling_batch) for fw in two_rank]
                continue
            for fw in present:
                if config == "2x1" and fw == "tensorflow":
                    continue  # TF's 2-process data parallelism is not part of the comparison
                if config == "2x1" and fw == "distnet":
                    jobs += [(d, config, model, args.batch) for d in two_rank + det_rank]
                    continue
                jobs.append((fw, config, model, args.batch))
    results: dict[tuple, list[dict]] = {}
    t_start = time.time()
    for r in range(args.rounds):
        shift = (r * 3) % max(len(jobs), 1)
        for fw, config, model, batch in jobs[shift:] + jobs[:shift]:
            real = {"scaling1": "1x1", "scaling2": "2x1"}.get(config, config)
            res = launch(fw, real, model, batch, args.steps, args.warmup, args.tf_jit, args.conv_algorithm,
                         args.shared_memory)
            if res.get("conv_algorithms") and r == 0:
                print(f"# distnet {config} {model}: convolution algorithms {res['conv_algorithms']}", flush=True)
            results.setdefault((fw, config, model), []).append(res)
        print(f"# round {r + 1}/{args.rounds} done after {time.time() - t_start:.0f} s, "
              f"load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({" ".join(k): v for k, v in results.items()}, indent=1))

    def med(fw: str, config: str, model: str, key: str = "step_ms"):
        vals = [x[key] for x in results.get((fw, config, model), []) if x.get(key) is not None]
        return statistics.median(vals) if vals else None

    def best(fw: str, config: str, model: str):
        vals = [x["step_ms"] for x in results.get((fw, config, model), [])]
        return min(vals) if vals else None

    def cell(fw: str, config: str, model: str) -> str:
        m, b = med(fw, config, model), best(fw, config, model)
        return "-" if m is None else f"{m:.1f} ({b:.1f})"

    # --- the table ---------------------------------------------------------
    label = {"distnet": "replicated", "distnet-zero1": "ZeRO-1", "distnet-det": "determin."}
    others = [fw for fw in present if fw != "distnet"]
    head = f"{'model':10} {'config':13} {'distnet':>15}" + "".join(f" {fw:>15}" for fw in others)
    head += "   samples/s (distnet" + "".join(f" / {fw}" for fw in others) + ")"
    head += "".join(f"   distnet/{fw}" for fw in others)
    print("\nms/step: median over rounds (best round in brackets); lower is better; ratio of medians < 1 means "
          "distnet is faster")
    print(head)
    rows = []  # (model, config, distnet variant)
    for model in models:
        for config in [c for c in configs if c != "scaling"]:
            rows += [(model, config, d) for d in (two_rank + det_rank if config == "2x1" else ["distnet"])]
    for model, config, dn in rows:
        d = med(dn, config, model)
        name = config + (f" {label[dn]}" if config == "2x1" else "")
        row = f"{model:10} {name:13} {cell(dn, config, model):>15}"
        peers = []
        for fw in others:
            v = med(fw, config, model) if not (config == "2x1" and fw == "tensorflow") else None
            peers.append(v)
            row += f" {cell(fw, config, model) if v is not None else '-':>15}"
        row += "   " + " / ".join(f"{args.batch / v * 1e3:.0f}" if v else "-" for v in [d] + peers)
        row += "".join(f"   {fmt_ratio(d, v):>12}" for v in peers)
        print(row)
        if config == "2x1":
            extra = [f"vs {fw} 1x2 {v:.1f} ms: {fmt_ratio(d, v).strip()}"
                     for fw in others if (v := med(fw, "1x2", model)) is not None]
            if extra:
                print(f"{'':24} " + "; ".join(extra))
    print("  (2x1: distnet = mpiexec -n 2 x 1 thread, replicated Adam or ZeRO-1 sharded Adam; "
          "torch = DDP gloo 2 processes x 1 thread; global batch split 50/50)")
    print("\ncores busy per process during the timed steps (CPU time / wall time of rank 0; checks the thread "
          "settings and shows what the machine's load took)")
    for model in models:
        for config in [c for c in configs if c != "scaling"]:
            cells = [f"{fw} {v:.2f}" for fw in (two_rank + det_rank + others if config == "2x1" else present)
                     if (v := med(fw, config, model, "cores")) is not None]
            print(f"  {model:10} {config:7} " + ", ".join(cells))

    # --- the deterministic step's cost --------------------------------------
    if det_rank and "2x1" in configs:
        print("\ndeterministic step (canonical pieces + exact sum, replicated Adam) beside the default replicated "
              "step, 2x1, same rounds (median over rounds; per round in brackets)")
        for model in models:
            d_runs, r_runs = results.get(("distnet-det", "2x1", model)), results.get(("distnet", "2x1", model))
            if not d_runs or not r_runs:
                continue
            d, r = med("distnet-det", "2x1", model), med("distnet", "2x1", model)
            per = ", ".join(f"{a['step_ms'] / b['step_ms']:.2f}x" for a, b in zip(d_runs, r_runs))
            print(f"  {model:10} piece size {d_runs[0].get('piece_size')}: deterministic {d:.1f} ms/step, "
                  f"default {r:.1f} ms/step -> {d / r:.2f}x ({per})")
    print()
    for model in models:
        for dn in two_rank:
            s, b = med(dn, "2x1", model, "sync_ms"), med(dn, "2x1", model, "bare_allreduce_ms")
            if s is not None and b is not None:
                mb = results[(dn, "2x1", model)][0]["sync_mbytes"]
                shm = results[(dn, "2x1", model)][0].get("shared_memory")
                what = (("half sums from the ranks' shared memory + barriers" if shm else "all-reduce")
                        if dn != "distnet-zero1" else
                        "block sums from the ranks' shared memory + barrier" if shm else "reduce-scatter + all-gather")
                print(f"gradient sync {model} {label[dn]} ({what}): {s:.2f} ms/step vs bare MPI.Allreduce of the "
                      f"same {mb:.1f} MB {b:.2f} ms -> {s / b:.2f}x")
    t1 = med("distnet", "scaling1", "reference")
    t2s = {dn: med(dn, "scaling2", "reference") for dn in two_rank}
    for dn, t2 in t2s.items():
        if t1 is not None and t2 is not None:
            print(f"scaling, reference net, global batch {args.scaling_batch}, {label[dn]}: T1 = {t1:.1f} ms "
                  f"(1 rank x 1 thread), T2 = {t2:.1f} ms (2 ranks x 1 thread); "
                  f"efficiency = T1 / (2 * T2) = {100 * t1 / (2 * t2):.1f} %")
    print("\npeak RSS per distnet rank during training (ru_maxrss; counts a shared page in every rank that touches it) and "
          "PSS at the end (shared pages split between the ranks) beside the theoretical need (MB = 1e6 bytes)")
    mem_rows = []
    for model in models:
        for config in [c for c in configs if c != "scaling"]:
            mem_rows += [(dn, config, model, args.batch) for dn in (two_rank if config == "2x1" else ["distnet"])]
        if "scaling" in configs and model == "reference":
            mem_rows += [(dn, "scaling2", model, args.scaling_batch) for dn in two_rank]
    for dn, config, model, batch in mem_rows:
        runs = results.get((dn, config, model))
        if not runs:
            continue
        size = 2 if config in ("2x1", "scaling2") else 1
        need = memory_need(model, batch // size, size)
        peaks = [statistics.median(run["rss"][i]["peak"] for run in runs) / 1e6 for i in range(size)]
        base = statistics.median(run["rss"][0]["baseline"] for run in runs) / 1e6
        pss = [statistics.median(run["rss"][i].get("pss") or 0 for run in runs) / 1e6 for i in range(size)]
        name = config + (f" {label[dn]}" if size > 1 else "")
        print(f"  {model:10} {name:19} ranks {size}, local batch {batch // size}: peak RSS "
              + ", ".join(f"rank {i} {p:.0f}" for i, p in enumerate(peaks))
              + f" MB (of which {base:.0f} MB before the model: interpreter, numpy, MPI, data)"
              + (f"; PSS at the end {', '.join(f'{p:.0f}' for p in pss)} MB" if all(pss) else ""))
        kinds = [{k: statistics.median(run["rss"][i].get(k, 0) for run in runs) / 1e6 for k in ("anon", "file", "shmem")}
                 for i in range(size)]
        if kinds[0]["anon"]:
            print(f"  {'':30} resident at the end: " + "; ".join(
                f"anonymous {k['anon']:.0f} + files {k['file']:.0f} (shared libraries) + shared memory "
                f"{k['shmem']:.0f} MB" for k in kinds))
        sharded = dn == "distnet-zero1"
        shared = sharded and bool(runs[0].get("shared_memory"))
        slots = need["adam_m_v"] // size if sharded else need["adam_m_v"]
        params = need["parameters"] // size if shared else need["parameters"]
        total = need["total_without_ema"] - need["adam_m_v"] + slots - need["parameters"] + params
        print(f"  {'':30} need {total / 1e6:.1f} MB = parameters "
              f"{params / 1e6:.1f}{' (one shared copy per machine, 1/2 per rank)' if shared else ''} "
              f"({need['num_parameters']:,}) + gradients "
              f"{need['gradients'] / 1e6:.1f} + Adam m,v {slots / 1e6:.1f}{' (1/2 per rank)' if sharded else ''}"
              f" + activations {need['activations'] / 1e6:.1f}; an EMA would add "
              f"{(need['ema'] // size if sharded else need['ema']) / 1e6:.1f}")

    # --- targets -----------------------------------------------------------
    print("\nissue-7 targets (reference net unless named; the 2-rank figures use the faster distnet variant)")

    def target(text: str, value, ok) -> None:
        verdict = "n/a (not measured)" if value is None else ("MET" if ok else "NOT MET")
        print(f"  {text:66} {value if value is not None else '-':>18}  {verdict}")

    def ratio(a, b):
        return None if a is None or b is None else a / b

    r = ratio(med("distnet", "1x1", "reference"), med("torch", "1x1", "reference"))
    target("1x1 reference: distnet / torch <= 1.10", None if r is None else f"{r:.2f}x", r is not None and r <= 1.1)
    r = ratio(med("distnet", "1x1", "mlp"), med("torch", "1x1", "mlp"))
    target("1x1 mlp: distnet / torch <= 1.20", None if r is None else f"{r:.2f}x", r is not None and r <= 1.2)
    variants = [(med(dn, "2x1", "reference"), dn) for dn in two_rank if med(dn, "2x1", "reference") is not None]
    d2, dn2 = min(variants) if variants else (None, "distnet")
    tag = f" [{label[dn2]}]" if variants else ""
    r = ratio(d2, med("torch", "1x2", "reference"))
    target(f"2x1{tag} faster than torch 1 process x 2 threads (< 1)", None if r is None else f"{r:.2f}x",
           r is not None and r < 1)
    r = ratio(d2, med("torch", "2x1", "reference"))
    target(f"2x1{tag} faster than torch DDP 2 x 1 (< 1)", None if r is None else f"{r:.2f}x",
           r is not None and r < 1)
    r = ratio(d2, med("tensorflow", "1x2", "reference"))
    target(f"2x1{tag} / tensorflow 1 process x 2 threads <= 1.10", None if r is None else f"{r:.2f}x",
           r is not None and r <= 1.1)
    effs = [(100 * t1 / (2 * t2), dn) for dn, t2 in t2s.items() if t1 is not None and t2 is not None]
    eff, dn = max(effs) if effs else (None, "distnet")
    target(f"scaling T1/(2*T2) at B={args.scaling_batch}{f' [{label[dn]}]' if effs else ''} >= 90%",
           None if eff is None else f"{eff:.1f} %", eff is not None and eff >= 90)
    syncs = [(ratio(med(dn, "2x1", "reference", "sync_ms"), med(dn, "2x1", "reference", "bare_allreduce_ms")), dn)
             for dn in two_rank]
    syncs = [(r, dn) for r, dn in syncs if r is not None]
    r, dn = min(syncs) if syncs else (None, "distnet")
    target(f"gradient sync / bare MPI.Allreduce{f' [{label[dn]}]' if syncs else ''} <= 1.10",
           None if r is None else f"{r:.2f}x", r is not None and r <= 1.1)
    print(f"# load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; "
          f"total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
