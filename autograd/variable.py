"""torch.autograd.Variable: the pre-0.4 wrapper, now a Tensor. Calling it returns a tensor that
shares the data and starts a new history (a leaf), as PyTorch does; any Tensor is an instance."""

from __future__ import annotations

import warnings

from ..errors import EmberTypeError


class _VariableMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        from .._tensor import Tensor

        return isinstance(obj, Tensor)

    def __call__(cls, data=None, requires_grad: bool = False, volatile: bool = False):
        from .._tensor import Tensor

        if volatile:
            warnings.warn(
                "volatile was removed and now has no effect. Use `with ember.no_grad():` "
                "instead.",
                UserWarning,
                stacklevel=2,
            )
        if data is None:
            from .._tensor.factories import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            raise EmberTypeError(
                f"Variable data has to be a tensor, but got {type(data).__name__}"
            )
        leaf = data.detach()
        if requires_grad:
            leaf.requires_grad_(True)
        return leaf


class Variable(metaclass=_VariableMeta):
    """Variable(tensor, requires_grad=False): the tensor's data as a new leaf."""
