# Shell functions the system tests share (docker/test-cluster.sh, launch/test-slurm.sh),
# sourced (not a command, so no run bit and no --help), with $PY set to a Python that has h5py and numpy.

same_checkpoint() {  # A.h5 B.h5: every array bitwise equal
    "$PY" - "$1" "$2" <<'EOF'
import sys
import h5py
import numpy as np

def arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out

a, b = arrays(sys.argv[1]), arrays(sys.argv[2])
weights = [k for k in a if k.startswith(("params/", "optimizer/", "ema/"))]
if not weights:
    sys.exit(f"no params/optimizer/ema arrays in {sys.argv[1]}")
if sorted(weights) != sorted(k for k in b if k.startswith(("params/", "optimizer/", "ema/"))):
    sys.exit(f"the checkpoints hold different arrays: {sorted(a)} vs {sorted(b)}")
differ = [k for k in weights
          if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape
          or np.asarray(a[k]).tobytes() != np.asarray(b[k]).tobytes()]
if differ:
    sys.exit(f"{len(differ)} of {len(weights)} arrays differ, e.g. {differ[0]}")
print(f"{len(weights)} arrays bitwise equal")
EOF
}
metric() {  # FILE KIND FIELD: FIELD of the last record of KIND (empty if none)
    "$PY" - "$@" <<'EOF'
import json
import sys
value = ""
for line in open(sys.argv[1]):
    record = json.loads(line)
    if record.get("kind") == sys.argv[2]:
        value = record.get(sys.argv[3], "")
print(value)
EOF
}
newest_checkpoint_step() {  # RUN_DIR
    local newest
    newest=$(ls "$1/checkpoints" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1)
    echo "${newest:-none}"
}
