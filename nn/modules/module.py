"""torch.nn.modules.module's path to ember's layers (scripts import them from here)."""

from ..module import Module  # noqa: F401
