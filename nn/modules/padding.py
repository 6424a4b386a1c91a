"""torch.nn.modules.padding's path to ember's layers (scripts import them from here)."""

from ..layers.padding import *  # noqa: F403
from ..layers.padding import (  # noqa: F401
    _CircularPadNd,
    _ConstantPadNd,
    _ReflectionPadNd,
    _ReplicationPadNd,
)
