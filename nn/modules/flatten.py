"""torch.nn.modules.flatten's path to ember's layers (scripts import them from here)."""

from ..layers.linear import Flatten, Unflatten  # noqa: F401
