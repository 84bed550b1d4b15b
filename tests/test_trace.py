"""The per-rank timeline (distnet/training/trace.py): recorded, merged, readable, and
showing a straggler as the other ranks' wait."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from distnet.training.trace import KINDS, OFF, merge
from mpi_util import run_mpi

REPO_JOB = "examples/jobs/mlp.toml"


def _events(path):
    return json.loads(path.read_text())["traceEvents"]


def _by_rank(events, name):
    out = {}
    for e in events:
        if e.get("ph") == "X" and e["name"] == name:
            out.setdefault(e["pid"], []).append(e)
    return out


@pytest.mark.mpi
def test_distnet_train_trace_merges_every_ranks_steps(tmp_path):
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "distnet", "train", str(repo / REPO_JOB), "-n", "2", "--trace", "--run-dir",
           str(run), "--progress", "none", "--set", "train.steps=6", "--set", "train.eval_every=3",
           "--set", "train.batch_size=40"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    merged = subprocess.run([sys.executable, "-m", "distnet", "trace", str(run)], capture_output=True, text=True,
                            timeout=60)
    assert merged.returncode == 0, merged.stderr
    assert "2 rank(s)" in merged.stdout
    doc = json.loads((run / "trace.json").read_text())
    assert doc["displayTimeUnit"] == "ms"
    events = doc["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "process_name"}
    assert names == {(0, "rank 0"), (1, "rank 1")}
    threads = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert threads == set(KINDS)
    for kind in ("step", "data", "forward", "backward", "reduce", "update"):
        got = _by_rank(events, kind)
        assert sorted(got) == [0, 1], kind
        for rank, spans in got.items():
            assert sorted(e["args"]["step"] for e in spans) == list(range(1, 7)), (kind, rank)
            assert all(e["dur"] >= 0 and e["tid"] == KINDS[kind] for e in spans)
    assert all(e["args"]["bytes"] > 0 for e in _by_rank(events, "reduce")[0])
    assert sorted(_by_rank(events, "evaluate")) == [0, 1]
    collectives = [e for e in events if e.get("tid") == KINDS["collective"] and e.get("ph") == "X"]
    assert {e["pid"] for e in collectives} == {0, 1} and len(collectives) >= 12
    # A span sits inside its step's span, on every rank.
    steps = {(e["pid"], e["args"]["step"]): e for e in _by_rank(events, "step")[0] + _by_rank(events, "step")[1]}
    for e in _by_rank(events, "backward")[1]:
        s = steps[(1, e["args"]["step"])]
        assert s["ts"] <= e["ts"] and e["ts"] + e["dur"] <= s["ts"] + s["dur"] + 1.0


@pytest.mark.mpi
def test_a_straggler_shows_as_the_other_ranks_wait(tmp_path):
    run = run_mpi("trace_straggler.py", 2, str(tmp_path / "trace"), 1, 0.05, timeout=120)
    assert run.returncode == 0, run.describe()
    path, counts = merge(tmp_path, tmp_path / "merged.json")
    assert sorted(counts) == [0, 1]
    events = _events(path)
    data = {r: np.median([e["dur"] for e in spans]) for r, spans in _by_rank(events, "data").items()}
    assert data[1] >= 45_000 > 10 * data[0]          # rank 1 reads its data 50 ms late
    waits = {}
    for e in events:
        if e.get("tid") == KINDS["collective"] and e.get("ph") == "X" and e["name"] == "allreduce":
            waits.setdefault(e["pid"], []).append(e["dur"])
    longest = {r: np.percentile(d, 90) for r, d in waits.items()}
    # Rank 0 waits in its reduce for the straggler; the straggler finds it there.
    assert longest[0] > 30_000 and longest[1] < longest[0] / 3, longest


def test_merge_without_a_trace_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Expect: trace/rank-\*.json from `distnet train ... --trace`"):
        merge(tmp_path)


def test_untraced_spans_share_one_do_nothing_context():
    assert OFF.span("forward") is OFF.span("reduce", bytes=3)
    with OFF.span("step"):
        pass
    assert OFF.write() is None
