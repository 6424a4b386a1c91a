"""torch.nn.modules.transformer's path to ember's layers (scripts import them from here)."""

from ..layers.transformer import (  # noqa: F401
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
