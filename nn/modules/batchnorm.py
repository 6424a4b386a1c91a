"""torch.nn.modules.batchnorm's path to ember's layers (scripts import them from here)."""

from ..layers.normalization import (  # noqa: F401
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    _BatchNorm,
)
