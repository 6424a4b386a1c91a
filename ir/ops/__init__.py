"""The type rules of every primitive, one module per family; importing registers them."""

from . import collectives, elementwise, index, nn, norm, reduce, shape  # noqa: F401
