"""`distnet run`'s import alias: TF1 programs unchanged, and the battery's harness.

The alias makes ``import tensorflow`` (and its TF1-era submodules) mean
``distnet.compat.v1`` inside ``distnet run`` only; ``--no-tf-alias`` and a
plain ``python prog.py`` leave the installed TensorFlow (if any) alone.
"""
from __future__ import annotations

import subprocess
import sys

from mpi_util import mpi_env
from tf1_battery import assert_same_weights, compare_with_reference, env_with, parse_lines, run_program

PROBE = """
import tensorflow as tf
import tensorflow.compat.v1 as tf1
from tensorflow.contrib import layers
import tensorflow.contrib.layers as contrib_layers
import distnet.compat.v1 as native
import tensorflow.compat
print("compat", tf.compat.as_bytes("a") == b"a", tensorflow.compat.v1.Session is native.Session)
print("same", tf.placeholder is native.placeholder, tf1.Session is native.Session,
      layers.l2_regularizer is contrib_layers.l2_regularizer is native.contrib.layers.l2_regularizer)
try:
    from tensorflow.contrib import no_such_member
except ImportError as exc:
    print("refused", exc)
"""


def _run(tmp_path, *flags):
    prog = tmp_path / "probe.py"
    prog.write_text(PROBE)
    return subprocess.run([sys.executable, "-m", "distnet", "run", *flags, str(prog)], capture_output=True,
                          text=True, timeout=120, env=mpi_env())


def test_import_tensorflow_is_distnet_inside_distnet_run(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "same True True True" in proc.stdout and "compat True True" in proc.stdout
    assert ("refused import tensorflow.contrib.no_such_member: tf.contrib.no_such_member is not supported "
            "by distnet.compat.v1") in proc.stdout


def test_no_tf_alias_leaves_tensorflow_to_python(tmp_path):
    proc = _run(tmp_path, "--no-tf-alias")
    # Without the alias `import tensorflow` is Python's; the test environment has no TensorFlow
    # (it is never a dependency of distnet or of its tests).
    assert proc.returncode != 0
    assert "No module named 'tensorflow'" in proc.stderr
    assert "same" not in proc.stdout


def test_the_alias_is_gone_after_the_program(tmp_path):
    from distnet.compat import alias

    finder = alias.install()
    import tensorflow  # noqa: F401  (the alias's module)
    assert "tensorflow" in sys.modules
    alias.uninstall(finder)
    assert "tensorflow" not in sys.modules and finder not in sys.meta_path


def test_parse_lines_reads_labels_and_numbers():
    got = parse_lines("step 0 loss 1.5\nstep 5 loss 2e-3\nno numbers here\nweights [1.0, -2] bias 3\n")
    assert got == {"step loss": [[0.0, 1.5], [5.0, 0.002]], "weights bias": [[1.0, -2.0, 3.0]]}


def test_tf115_regression_matches_tensorflow_and_two_ranks_match_one(tmp_path):
    one = run_program("tf115_regression.py", env=env_with(STEPS=30, OUT=tmp_path / "one.npz"))
    assert compare_with_reference(one, "tf115_regression.py", rtol=1e-4, atol=1e-6) == 7 * 2 + 5
    two = run_program("tf115_regression.py", n=2,
                      env=env_with(STEPS=30, OUT=tmp_path / "two.npz", DISTRIBUTED=1))
    assert "step 29 loss" in two
    assert_same_weights(tmp_path / "one.npz", tmp_path / "two.npz")
