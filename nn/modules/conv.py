"""torch.nn.modules.conv's path to ember's layers (scripts import them from here)."""

from ..layers.conv import Conv1d, Conv2d, _ConvNd  # noqa: F401
