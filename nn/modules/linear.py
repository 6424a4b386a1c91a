"""torch.nn.modules.linear's path to ember's layers (scripts import them from here)."""

from ..layers.attention import NonDynamicallyQuantizableLinear  # noqa: F401
from ..layers.linear import Bilinear, Identity, Linear  # noqa: F401
