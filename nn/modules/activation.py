"""torch.nn.modules.activation's path to ember's layers (scripts import them from here)."""

from ..layers.activation import (  # noqa: F401
    GELU,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from ..layers.attention import MultiheadAttention  # noqa: F401
