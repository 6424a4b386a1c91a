"""torch.nn.modules.sparse's path to ember's layers (scripts import them from here)."""

from ..layers.embedding import Embedding, EmbeddingBag  # noqa: F401
