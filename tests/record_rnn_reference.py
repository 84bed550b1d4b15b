"""Record TF 2.21's numbers for tests/rnn_cases.py (run under real TensorFlow, never by the tests)::

    TF_USE_LEGACY_KERAS=1 /path/to/tf-venv/bin/python tests/record_rnn_reference.py

writes tests/rnn_reference.npz: ``<case>/<label>`` -> value, in float32 and float64.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import rnn_cases
import tensorflow as real_tf

tf = real_tf.compat.v1
tf.disable_v2_behavior()

out = {}
for case in rnn_cases.CASES:
    for dtype in (np.float32, np.float64):
        for label, value in rnn_cases.evaluate(tf, case, dtype).items():
            out[f"{np.dtype(dtype).name}/{case}/{label}"] = value
bad = [k for k, v in out.items() if not isinstance(v, np.ndarray)]
if bad:
    raise SystemExit(f"not arrays: {bad}")
np.savez(Path(__file__).parent / "rnn_reference.npz", tf_version=np.array(real_tf.__version__), **out)
print(f"{len(out)} arrays from TensorFlow {real_tf.__version__}")
