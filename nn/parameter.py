"""Parameter: a leaf tensor that a Module registers as one of its parameters."""

from __future__ import annotations

from .._tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a module parameter; shares storage with the tensor it wraps."""

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from .._tensor.factories import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            from ..errors import type_error

            raise type_error(f"Parameter expects a Tensor, got {type(data).__name__}")
        p = cls._make(data._data, data._dtype, data._device, data._version)
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data=None, requires_grad: bool = True):
        pass

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__  # print(param) shows it, as in PyTorch

    def __reduce_ex__(self, protocol):
        return (Parameter, (self.detach(), self._requires_grad))

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        out = Parameter(self.detach().clone(), self._requires_grad)
        memo[id(self)] = out
        return out


class Buffer(Tensor):
    """Marks a tensor to be registered as a module buffer when assigned as an attribute."""

    def __new__(cls, data: Tensor, *, persistent: bool = True):
        b = cls._make(data._data, data._dtype, data._device, data._version)
        b.persistent = persistent
        return b

    def __init__(self, data=None, *, persistent: bool = True):
        pass
