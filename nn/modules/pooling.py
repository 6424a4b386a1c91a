"""torch.nn.modules.pooling's path to ember's layers (scripts import them from here)."""

from ..layers.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d  # noqa: F401
