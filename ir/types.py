"""TensorType: the static type of a value (shape and dtype; device-agnostic)."""

from __future__ import annotations

from typing import NamedTuple

from .dtypes import dtype


class TensorType(NamedTuple):
    """A tensor's shape (a tuple of sizes: ints, or SymInts for symbolic sizes) and dtype, as
    type rules see it."""

    shape: tuple
    dtype: dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        # getattr: a malformed type (a rule's bad result) must still print in its error
        dtype = getattr(self.dtype, "name", self.dtype)
        return f"{dtype}[{', '.join(str(d) for d in self.shape)}]"
