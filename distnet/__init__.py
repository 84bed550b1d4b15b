"""distnet: data-parallel neural-network training on numpy and MPI."""
from distnet._version import __version__  # noqa: F401
from distnet.autodiff import gradients  # noqa: F401
from distnet.errors import (  # noqa: F401
    CheckpointError, ConfigError, DataError, DistnetError, DistributedError,
    DTypeError, InvalidArgumentError, ShapeError,
)
from distnet.tensor import Tensor, Variable, constant  # noqa: F401
from distnet.ops import *  # noqa: F401,F403
from distnet import initializers, layers, losses, optimizers, regularizers, schedules  # noqa: F401,E402
from distnet.models import Sequential  # noqa: F401,E402
from distnet.moving_averages import ExponentialMovingAverage  # noqa: F401,E402
from distnet import data, distributed, nn  # noqa: F401,E402
from distnet.trainer import Trainer  # noqa: F401,E402
