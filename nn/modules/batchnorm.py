"""torch.nn.modules.batchnorm's path to ember's layers (scripts import them from here)."""

from ..layers.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm  # noqa: F401
