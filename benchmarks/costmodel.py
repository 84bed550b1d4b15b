"""A cost model of a data-parallel step, its constants measured here, checked on network-namespace hosts.

    step = compute(local batch, ranks sharing the cores) + sync(strategy, bytes, machines, ranks per machine, link)

* compute: the forward + backward + update of one rank at its local batch,
  measured in one process; ranks that share a machine's cores stretch it by
  ``max(1, ranks per machine / cores)``;
* sync: what the strategy puts on each machine's link and how many
  latency-bound rounds it makes, priced with the link's constants
  (``alpha`` seconds per round, ``beta`` seconds per byte), plus the work
  inside the machine (summing the ranks' gradients through shared memory,
  ``gamma`` seconds per byte).  Per step, with ``B`` the gradient bytes,
  ``M`` machines, ``R`` ranks per machine, ``P = M R``:

  ============ ======================================= ==================================
  strategy     bytes over each machine's link, each way latency-bound rounds
  ============ ======================================= ==================================
  replicated   2 (P-1)/P B  (buckets of 8 MB)          2 log2(P) per bucket
  zero1        2 (P-1)/P B                             2 log2(P) + 1
  hierarchical 2 (M-1)/M B                             2 log2(M) + 1
  float16      3/4 of zero1's (gradients as float16)   (P-1) + 2 log2(P) + 1
  ============ ======================================= ==================================

  (a reduce-scatter + all-gather over P ranks in a ring, the ranks of a
  machine side by side, moves ``(P-1)/P`` of the buffer over each machine's
  link each way per phase: the flat strategies pay for every rank, the
  hierarchical one for every machine.)

Subcommands:

``link``     measure alpha and beta: bare all-reduces of 8 B .. 32 MB between
             2 hosts (1 rank each), links shaped with ``tc ... tbf`` to a rate;
``measure``  step times of the models x strategies on 2 and 3 hosts, beside
             the model's prediction from ``compute`` (1 process) and ``link``;
``project``  the predicted step time and scaling efficiency for 1..64
             machines at 1/10/100 Gbit/s (no measurement).

Every address lives inside namespaces made here (tests/netns.py); the
machine's own namespace gets none.  Needs root and iproute2.  Prints figures;
docs/scaling.md holds a run's.  Example::

    python benchmarks/costmodel.py measure --rates 1gbit,10gbit --models mlp,reference
    python benchmarks/costmodel.py project --alpha 50e-6
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

PARAMS = {"mlp": 235_146, "reference": 6_434_634, "twoconv": 3_274_634}
GLOBAL_BATCH = 120                      # divisible by 1..6 ranks
#: Backward's share of a step's compute: what overlap can hide the reduce behind, at best.
BACKWARD_SHARE = 0.6
BUCKET_BYTES = 8 << 20


# ---------------------------------------------------------------------------
# The model
def rounds(strategy: str, machines: int, ranks: int, nbytes: int) -> float:
    p = machines * ranks
    if p == 1:
        return 0.0
    log = lambda n: math.log2(n) if n > 1 else 0.0   # noqa: E731
    if strategy == "replicated":
        return 2 * log(p) * math.ceil(nbytes / BUCKET_BYTES)
    if strategy == "zero1":
        return 2 * log(p) + 1
    if strategy == "hierarchical":
        return 2 * log(machines) + 1
    if strategy == "float16":
        return (p - 1) + 2 * log(p) + 1
    raise ValueError(strategy)


def link_bytes(strategy: str, machines: int, ranks: int, nbytes: int) -> float:
    """Bytes one machine's link carries in each direction per step."""
    if machines == 1:
        return 0.0
    if strategy == "hierarchical":
        return 2 * (machines - 1) / machines * nbytes
    p = machines * ranks
    flat = 2 * (p - 1) / p * nbytes
    return 0.75 * flat if strategy == "float16" else flat


def predict(compute_s: float, strategy: str, machines: int, ranks: int, nbytes: int,
            alpha: float, beta: float, gamma: float, stretch: float, codec: float = 0.0) -> float:
    """Predicted seconds per step.

    Args:
        compute_s: one rank's compute at its local batch, alone on a core.
        stretch: how much sharing cores slows compute (ranks / cores where more ranks than cores).
        codec: seconds per gradient element of the float16 encode + decode + sums.
    """
    overlap = strategy == "overlap"
    if overlap:
        strategy = "replicated"
    local_sum = gamma * nbytes * (ranks - 1) / ranks if ranks > 1 else 0.0
    f16 = codec * nbytes / 4 if strategy == "float16" and machines * ranks > 1 else 0.0
    sync = (rounds(strategy, machines, ranks, nbytes) * alpha + link_bytes(strategy, machines, ranks, nbytes) * beta
            + local_sum + f16)
    if overlap:   # at best the reduce hides behind backward (BACKWARD_SHARE of compute)
        sync = max(0.0, sync - BACKWARD_SHARE * compute_s * stretch)
    return compute_s * stretch + sync


# ---------------------------------------------------------------------------
# Measurements (run as a worker under mpiexec, or in one process)
def worker(args) -> None:
    import numpy as np

    import distnet
    from compare import CLASSES, distnet_model, make_data
    from distnet.data import ArrayDataset

    comm = distnet.distributed.init().comm
    out: dict = {"size": comm.size}
    if args.what == "link":
        times = {}
        for nbytes in [8 << k for k in range(0, 23, 2)]:
            buf = np.ones(nbytes // 4, np.float32)
            samples = []
            for _ in range(args.repeats):
                comm.barrier()
                t0 = time.perf_counter()
                comm.allreduce_(buf)
                samples.append(time.perf_counter() - t0)
            times[nbytes] = float(np.median(samples))
        out["allreduce"] = times
    else:
        model = distnet_model(args.model)
        batch = args.batch
        x, y = make_data(batch * (args.steps + 2))
        options = {"strategy": args.strategy} if args.strategy != "float16" else \
            {"strategy": "zero1", "compression": "float16"}
        trainer = distnet.Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.Adam(1e-4),
                                  ArrayDataset(x, y, num_classes=CLASSES), global_batch_size=batch,
                                  steps=args.steps + 2, comm=comm, check_every=None, **options)
        stamps = []
        trainer.add_hook(lambda t, r: stamps.append(time.perf_counter()))
        comm.barrier()
        start = time.perf_counter()
        trainer.fit()
        steps = np.diff([start, *stamps])[2:]
        out["step_s"] = float(np.median(steps))
        out["nbytes"] = 4 * sum(v.data.size for v in trainer.variables)
    if comm.rank == 0:
        Path(args.out).write_text(json.dumps(out))


def _cores() -> int:
    return len(os.sched_getaffinity(0))


class Hosts:
    """Namespace hosts with shaped links, and mpiexec across them."""

    def __init__(self, n: int, rate: str | None) -> None:
        import netns

        self.cluster = netns.NetnsCluster(n)
        self.dir = Path(f"/tmp/costmodel-{os.getpid()}")
        self.dir.mkdir(exist_ok=True)
        self.agent = self.cluster.write_agent(self.dir / "agent.sh")
        if rate:
            for i, ns in enumerate(self.cluster.hosts):
                # each host's sending side: every byte between two hosts passes one shaped egress
                subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "eth0", "root",
                                "tbf", "rate", rate, "burst", "256kb", "latency", "100ms"], check=True)

    def run(self, ranks_per_host: int, argv: list[str], out: Path, timeout: float = 600) -> dict:
        hostfile = self.dir / f"hosts{ranks_per_host}"
        hostfile.write_text("".join(f"{a}:{ranks_per_host}\n" for a in self.cluster.addresses))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PMI_", "HYDRA_", "UCX_", "OMP_", "OPENBLAS_", "MKL_"))}
        env.update(UCX_TLS="tcp,self", UCX_NET_DEVICES="eth0", UCX_LOG_LEVEL="error",
                   HYDRA_LAUNCHER_EXEC=str(self.agent), HYDRA_IFACE="eth0", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1")
        mpiexec = str(Path(sys.executable).parent / "mpiexec")
        cmd = self.cluster.in_host(0) + [mpiexec, "-f", str(hostfile), "-n",
                                         str(ranks_per_host * len(self.cluster.hosts)),
                                         sys.executable, __file__, "worker", "--out", str(out), *argv]
        subprocess.run(cmd, env=env, cwd=REPO, check=True, timeout=timeout, capture_output=True)
        return json.loads(out.read_text())

    def close(self) -> None:
        self.cluster.close()


def single(argv: list[str], out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    subprocess.run([sys.executable, __file__, "worker", "--out", str(out), *argv], env=env, check=True,
                   capture_output=True, timeout=600)
    return json.loads(out.read_text())


def fit_link(times: dict) -> tuple[float, float]:
    """alpha, beta of a 2-host all-reduce: t(B) = 2 alpha + B beta (one round each way, B over the link)."""
    import numpy as np

    sizes = np.array(sorted(int(k) for k in times), dtype=float)
    t = np.array([times[str(int(s))] if str(int(s)) in times else times[int(s)] for s in sizes])
    big = sizes >= 1 << 16
    beta = float(np.polyfit(sizes[big], t[big], 1)[0])
    alpha = float(np.median(t[sizes <= 1 << 10])) / 2
    return alpha, beta


def cmd_link(args) -> dict:
    result = {}
    for rate in args.rates.split(","):
        hosts = Hosts(2, None if rate == "none" else rate)
        try:
            got = hosts.run(1, ["--what", "link", "--repeats", "15"], hosts.dir / "link.json")
        finally:
            hosts.close()
        alpha, beta = fit_link(got["allreduce"])
        result[rate] = {"alpha": alpha, "beta": beta, "gbit_s": 8 / beta / 1e9, "allreduce": got["allreduce"]}
        print(f"link {rate}: alpha {alpha * 1e6:.1f} us per round, beta -> {8 / beta / 1e9:.2f} Gbit/s effective",
              flush=True)
    return result


def cmd_measure(args) -> None:
    link = cmd_link(args)
    gamma = args.gamma
    cores = _cores()
    rows = []
    tmp = Path(f"/tmp/costmodel-{os.getpid()}")
    tmp.mkdir(exist_ok=True)
    for model in args.models.split(","):
        compute = {}
        for local in sorted({GLOBAL_BATCH // p for p in (1, 2, 3, 4, 6)}):
            compute[local] = single(["--what", "step", "--model", model, "--strategy", "replicated",
                                     "--batch", str(local), "--steps", str(args.steps)],
                                    tmp / "single.json")["step_s"]
        for rate in args.rates.split(","):
            c = link[rate]
            for n_hosts, per_host in ((2, 1), (3, 1), (2, 2)):
                hosts = Hosts(n_hosts, None if rate == "none" else rate)
                try:
                    for strategy in args.strategies.split(","):
                        if strategy == "hierarchical" and per_host == 1:
                            continue
                        got = hosts.run(per_host, ["--what", "step", "--model", model, "--strategy", strategy,
                                                   "--batch", str(GLOBAL_BATCH), "--steps", str(args.steps)],
                                        hosts.dir / "step.json")
                        p = n_hosts * per_host
                        # every namespace "host" runs on this machine's cores
                        want = predict(compute[GLOBAL_BATCH // p], strategy, n_hosts, per_host, got["nbytes"],
                                       c["alpha"], c["beta"], gamma, max(1.0, p / cores), args.codec)
                        row = (model, rate, f"{n_hosts}x{per_host}", strategy, got["step_s"] * 1e3, want * 1e3)
                        rows.append(row)
                        print(f"{row[0]:9} {row[1]:7} {row[2]:4} {row[3]:12} measured {row[4]:8.1f} ms  "
                              f"predicted {row[5]:8.1f} ms  ({row[5] / row[4]:.2f}x)", flush=True)
                finally:
                    hosts.close()
    print("\n| model | link | hosts x ranks | strategy | measured ms | predicted ms | predicted / measured |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]:.1f} | {r[5] / r[4]:.2f} |")


def cmd_project(args) -> None:
    """Scaling efficiency T1 / T_M at a fixed per-rank batch (weak scaling): the global batch grows with M."""
    compute = {"mlp": args.compute_mlp, "reference": args.compute_reference, "twoconv": args.compute_twoconv}
    print(f"alpha {args.alpha * 1e6:.0f} us per round, {args.ranks} ranks per machine with {args.ranks} cores, "
          f"gamma {args.gamma:.2e} s/B; compute per rank per step (local batch 100): "
          + ", ".join(f"{m} {c * 1e3:.1f} ms" for m, c in compute.items()))
    print("\n| model | Gbit/s | strategy | " + " | ".join(f"{m} mach." for m in MACHINES) + " |")
    print("|---|---|---|" + "---|" * len(MACHINES))
    for model, c in compute.items():
        nbytes = 4 * PARAMS[model]
        for gbit in (1, 10, 100):
            beta = 8 / (gbit * 1e9)
            for strategy in ("replicated", "overlap", "zero1", "hierarchical", "float16"):
                cells = []
                for m in MACHINES:
                    t = predict(c, strategy, m, args.ranks, nbytes, args.alpha, beta, args.gamma, 1.0, args.codec)
                    cells.append(f"{t * 1e3:.0f} ms ({c / t:.0%})")
                print(f"| {model} | {gbit} | {strategy} | " + " | ".join(cells) + " |")


MACHINES = (1, 2, 4, 8, 16, 32, 64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--out", required=True)
    w.add_argument("--what", choices=("link", "step"), default="step")
    w.add_argument("--model", default="mlp")
    w.add_argument("--strategy", default="replicated")
    w.add_argument("--batch", type=int, default=GLOBAL_BATCH)
    w.add_argument("--steps", type=int, default=10)
    w.add_argument("--repeats", type=int, default=15)
    for name in ("link", "measure"):
        p = sub.add_parser(name)
        p.add_argument("--rates", default="1gbit,10gbit", help="tbf rates of the hosts' links ('none': unshaped)")
        p.add_argument("--models", default="mlp,reference")
        p.add_argument("--strategies", default="replicated,zero1,hierarchical,float16")
        p.add_argument("--steps", type=int, default=8)
        p.add_argument("--gamma", type=float, default=8e-11,
                       help="seconds per byte of the shared-memory sums (benchmarks/allreduce.py)")
        p.add_argument("--codec", type=float, default=8e-9,
                       help="seconds per gradient element of float16 encode + decode + sums (benchmarks/f16_reduction.py)")
    p = sub.add_parser("project")
    p.add_argument("--alpha", type=float, default=50e-6, help="seconds per latency-bound round")
    p.add_argument("--gamma", type=float, default=8e-11)
    p.add_argument("--codec", type=float, default=8e-9)
    p.add_argument("--ranks", type=int, default=8, help="ranks (and cores) per machine")
    p.add_argument("--compute-mlp", type=float, default=0.0037)
    p.add_argument("--compute-reference", type=float, default=0.050)
    p.add_argument("--compute-twoconv", type=float, default=0.080)
    args = parser.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)
    if args.cmd == "worker":
        worker(args)
    elif args.cmd == "link":
        cmd_link(args)
    elif args.cmd == "measure":
        cmd_measure(args)
    else:
        cmd_project(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
