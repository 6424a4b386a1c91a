"""The type rules of every primitive, one module per family; importing registers them."""

from . import elementwise, index, nn, reduce, shape  # noqa: F401
