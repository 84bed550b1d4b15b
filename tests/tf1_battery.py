"""Running the TF1 battery (tests/tf1_programs/) and judging it.

A battery program is a TF1 program as its users wrote it (``import
tensorflow.compat.v1 as tf`` or ``import tensorflow as tf``), run unchanged
through ``distnet run`` -- whose import alias makes ``tensorflow`` mean
``distnet.compat.v1`` -- on one process or ``-n N`` workers.  It prints its
results as lines ``<label> <number> <number> ...``; the same program run
under real TensorFlow 2.21 by ``tests/tf1_programs/record_reference.py``
left its lines in ``tests/tf1_programs/reference/<program>.txt``, and
:func:`compare_with_reference` holds distnet's lines against them.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from mpi_util import find_mpiexec, mpi_env

PROGRAMS = Path(__file__).parent / "tf1_programs"
REFERENCE = PROGRAMS / "reference"

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)")


def run_program(name: str, n: int = 1, env: dict | None = None, timeout: float = 600) -> str:
    """``distnet run [-n n] <name>`` from the programs' folder; its stdout.

    Fails with the program's output if it exits non-zero or times out.
    """
    cmd = [sys.executable, "-m", "distnet", "run"]
    if n > 1:
        if find_mpiexec() is None:
            raise AssertionError("no mpiexec: the mpich wheel is a dependency (pip install -e .)")
        cmd += ["-n", str(n)]
    cmd.append(str(PROGRAMS / name))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROGRAMS, env=mpi_env(env),
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{name} on {n} process(es) did not end within {timeout} s:\n"
                             f"{exc.stdout}\n{exc.stderr}") from None
    assert proc.returncode == 0, f"{name} on {n} process(es) exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def parse_lines(text: str) -> dict[str, list[list[float]]]:
    """``{label: [numbers of each line with that label, in order]}``.

    The label is the line's words that are not numbers, in order, joined by
    spaces (``step 10 loss 0.52`` has the label ``step loss``); lines without
    a number are skipped.
    """
    out: dict[str, list[list[float]]] = {}
    for line in text.splitlines():
        words = line.replace(",", " ").replace("[", " ").replace("]", " ").split()
        nums, label = [], []
        for w in words:
            if _NUMBER.fullmatch(w):
                nums.append(float(w))
            else:
                label.append(w)
        if nums:
            out.setdefault(" ".join(label), []).append(nums)
    return out


def reference(name: str) -> str:
    path = REFERENCE / (Path(name).stem + ".txt")
    assert path.is_file(), (f"no reference for {name}: record it with real TensorFlow: "
                            f"python tests/tf1_programs/record_reference.py {name}")
    return path.read_text()


def compare_with_reference(out: str, name: str, rtol: float = 1e-4, atol: float = 1e-5,
                           labels: list[str] | None = None) -> int:
    """Every numbered line of the reference (or of ``labels`` only) equals distnet's.

    Returns how many numbers were compared (a test asserts it is the count it
    expects, so a program printing nothing cannot pass).
    """
    ref, got = parse_lines(reference(name)), parse_lines(out)
    keys = labels if labels is not None else sorted(ref)
    assert keys, f"the reference of {name} has no numbered line"
    compared = 0
    for key in keys:
        assert key in ref, f"{name}: label {key!r} is not in the reference (labels: {sorted(ref)})"
        assert key in got, f"{name}: distnet printed no {key!r} line; it printed:\n{out}"
        assert len(got[key]) == len(ref[key]), (f"{name}: {len(got[key])} {key!r} lines, "
                                                f"TensorFlow printed {len(ref[key])}")
        for i, (g, r) in enumerate(zip(got[key], ref[key])):
            assert len(g) == len(r), f"{name}: {key!r} line {i}: {g} against TensorFlow's {r}"
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, err_msg=f"{name}: {key!r} line {i}")
            compared += len(r)
    return compared


def assert_same_weights(a_path, b_path, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Two ``OUT`` files hold the same names and, to float rounding, the same arrays."""
    a, b = dict(np.load(a_path)), dict(np.load(b_path))
    assert sorted(a) == sorted(b) and a, (sorted(a), sorted(b))
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=rtol, atol=atol, err_msg=k)


def env_with(**values) -> dict:
    """``os.environ``-style additions with every value a string."""
    return {k: str(v) for k, v in values.items()}


__all__ = ["PROGRAMS", "REFERENCE", "run_program", "parse_lines", "compare_with_reference",
           "assert_same_weights", "env_with"]
