"""Padding layers: constant (and zero), reflection, replication and circular padding of the
last 1, 2 or 3 dims, as torch.nn.ConstantPad2d, ReflectionPad1d, ... spell them."""

from __future__ import annotations

from ..._tensor import Tensor
from ...errors import value_error
from .. import functional as F
from ..module import Module

__all__ = [
    "CircularPad1d", "CircularPad2d", "CircularPad3d",
    "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d",
    "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d",
    "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
]


def _padding(padding, dims: int) -> tuple:
    """An int pads every side; a sequence is F.pad's (left, right, top, bottom, ...)."""
    if isinstance(padding, int):
        return (padding,) * (2 * dims)
    padding = tuple(int(p) for p in padding)
    if len(padding) != 2 * dims:
        raise value_error(
            f"expected padding of {2 * dims} ints (left, right, ... for {dims} dims), got "
            f"{padding}"
        )
    return padding


class _PadNd(Module):
    """Pads the last `_dims` dims by F.pad in `_mode`."""

    _dims: int
    _mode: str

    def __init__(self, padding) -> None:
        super().__init__()
        self.padding = _padding(padding, self._dims)

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    _mode = "constant"

    def __init__(self, padding, value: float) -> None:
        super().__init__(padding)
        self.value = value

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pads the last dim with a constant value."""

    _dims = 1


class ConstantPad2d(_ConstantPadNd):
    """Pads the last two dims with a constant value."""

    _dims = 2


class ConstantPad3d(_ConstantPadNd):
    """Pads the last three dims with a constant value."""

    _dims = 3


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad1d(_ZeroPadNd):
    """Pads the last dim with zeros."""

    _dims = 1


class ZeroPad2d(_ZeroPadNd):
    """Pads the last two dims with zeros."""

    _dims = 2


class ZeroPad3d(_ZeroPadNd):
    """Pads the last three dims with zeros."""

    _dims = 3


class _ReflectionPadNd(_PadNd):
    _mode = "reflect"


class ReflectionPad1d(_ReflectionPadNd):
    """Pads the last dim with its reflection about the edge elements."""

    _dims = 1


class ReflectionPad2d(_ReflectionPadNd):
    """Pads the last two dims with their reflection about the edge elements."""

    _dims = 2


class ReflectionPad3d(_ReflectionPadNd):
    """Pads the last three dims with their reflection about the edge elements."""

    _dims = 3


class _ReplicationPadNd(_PadNd):
    _mode = "replicate"


class ReplicationPad1d(_ReplicationPadNd):
    """Pads the last dim with copies of its edge elements."""

    _dims = 1


class ReplicationPad2d(_ReplicationPadNd):
    """Pads the last two dims with copies of their edge elements."""

    _dims = 2


class ReplicationPad3d(_ReplicationPadNd):
    """Pads the last three dims with copies of their edge elements."""

    _dims = 3


class _CircularPadNd(_PadNd):
    _mode = "circular"

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in (self._dims + 1, self._dims + 2):
            raise value_error(
                f"expected {self._dims + 1}D or {self._dims + 2}D input (got {input.ndim}D "
                "input)"
            )
        return super().forward(input)


class CircularPad1d(_CircularPadNd):
    """Pads the last dim by wrapping around it."""

    _dims = 1


class CircularPad2d(_CircularPadNd):
    """Pads the last two dims by wrapping around them."""

    _dims = 2


class CircularPad3d(_CircularPadNd):
    """Pads the last three dims by wrapping around them."""

    _dims = 3
