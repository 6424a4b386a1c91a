"""torch.nn.modules.dropout's path to ember's layers (scripts import them from here)."""

from ..layers.dropout import Dropout  # noqa: F401
