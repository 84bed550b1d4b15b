"""A model with BatchNorm layers on N ranks, synchronized with synchronize_batch_norm, the
Trainer's convention (each rank's loss is its share ``sum / global batch``, gradients summed):
rank 0 saves the summed gradients and the moving statistics after 3 training calls.

Usage: mpiexec -n N python batch_norm_layer_sync.py OUT.npz
"""
import numpy as np

import distnet
from _common import script_args
from distnet.distributed import get_communicator, install_abort_hook
from distnet.layers import AvgPool2D, BatchNorm, Conv2D, Dense, Flatten, synchronize_batch_norm
from distnet.model.models import Sequential

out_path = script_args()[0]
comm = get_communicator("auto")
install_abort_hook(comm)

model = Sequential([Conv2D(3, 3, padding="same"), BatchNorm(momentum=0.5), AvgPool2D(2), Flatten(), Dense(5),
                    BatchNorm(), Dense(4)], input_shape=(4, 4, 2), dtype=np.float64, seed=3)
assert synchronize_batch_norm(model, comm) == 2
rng = np.random.default_rng(6)
x = rng.standard_normal((3, 10, 4, 4, 2)) * 2 + 0.5
y = np.eye(4)[rng.integers(0, 4, (3, 10))]
part = np.array_split(np.arange(10), comm.size)[comm.rank]
for step in range(3):
    out = model(x[step][part], training=True)
    loss = distnet.reduce_sum(distnet.nn.softmax_cross_entropy_with_logits(labels=y[step][part], logits=out)) / 10.0
    grads = distnet.gradients(loss, model.trainable_variables)
flat = np.concatenate([g.reshape(-1) for g in grads])
comm.allreduce_(flat)
if comm.rank == 0:
    np.savez(out_path, grads=flat, **{v.name.replace("/", "__"): v.numpy() for v in model.variables
                                       if not v.trainable})
print(f"DONE {comm.rank}")
