"""How much of TF1's everyday API ``distnet.compat.v1`` provides: the calls TF1 programs
use most (and the names that stopped real programs first), each looked up by its dotted
name; prints how many resolve and which do not.

usage: python benchmarks/tf1_surface.py
"""
import distnet.compat.v1 as tf

NAMES = ["clip_by_global_norm", "clip_by_norm", "layers.batch_normalization", "contrib.layers.batch_norm",
         "cond", "while_loop", "data.Dataset", "nn.avg_pool", "layers.average_pooling2d", "nn.moments",
         "reduce_logsumexp", "reduce_prod", "nn.leaky_relu", "layers.conv2d_transpose", "metrics.accuracy",
         "tile", "split", "nn.top_k", "gather_nd", "squared_difference", "nn.l2_normalize", "summary.image",
         "compat.v1.placeholder", "train.MonitoredTrainingSession", "train.StopAtStepHook",
         "distributed.BroadcastGlobalVariablesHook", "train.AdadeltaOptimizer", "nn.sampled_softmax_loss",
         # from the programs' first errors
         "contrib.rnn", "nn.rnn_cell.BasicLSTMCell", "nn.dynamic_rnn", "train.string_input_producer",
         "nn.nce_loss", "arg_min", "RunOptions", "RunMetadata", "contrib.framework.arg_scope",
         "examples.tutorials.mnist.input_data"]
missing = []
for name in NAMES:
    obj = tf
    try:
        for part in name.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        missing.append(name)
print(f"{len(NAMES) - len(missing)} of {len(NAMES)} resolve; missing: {', '.join(missing) or 'none'}")
