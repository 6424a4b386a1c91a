"""torch.nn.modules.normalization's path to ember's layers (scripts import them from here)."""

from ..layers.normalization import GroupNorm, LayerNorm  # noqa: F401
