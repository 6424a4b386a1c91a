"""torch.nn.modules.pooling's path to ember's layers (scripts import them from here)."""

from ..layers.pooling import *  # noqa: F403
from ..layers.pooling import (  # noqa: F401
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _LPPoolNd,
    _MaxPoolNd,
    _MaxUnpoolNd,
)
