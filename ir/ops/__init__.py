"""The type rules of every primitive, one module per family; importing registers them."""

from . import collectives, elementwise, index, nn, reduce, shape  # noqa: F401
