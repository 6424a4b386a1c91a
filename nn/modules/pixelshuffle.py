"""torch.nn.modules.pixelshuffle's path to ember's layers (scripts import them from here)."""

from ..layers.rearrange import PixelShuffle, PixelUnshuffle  # noqa: F401
