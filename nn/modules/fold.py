"""torch.nn.modules.fold's path to ember's layers (scripts import them from here)."""

from ..layers.rearrange import Fold, Unfold  # noqa: F401
