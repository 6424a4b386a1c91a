"""The `out=` keyword of PyTorch's functions (torch.add(x, y, out=r)): the result, computed as
usual, is written into the given tensor, resized when its shape differs, as PyTorch's out
variants do. The op functions that take out= (_tensor/ops) call write_out."""

from __future__ import annotations

import warnings

from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..errors import runtime_error, type_error, type_name
from .tensor import Tensor


def write_out(name: str, result: Tensor, out) -> Tensor:
    """Write result into out (the out= of function `name`) and return out."""
    from .ops.nn import can_cast

    if not isinstance(out, Tensor):
        raise type_error(f"{name}(): argument 'out' must be Tensor, not {type_name(out)}")
    if is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise runtime_error(
            f"{name}(): functions with out=... arguments don't support automatic "
            "differentiation, but one of the arguments requires grad."
        )
    if not can_cast(result.dtype, out.dtype):
        raise runtime_error(
            f"{name}(): result type {result.dtype.name} can't be cast to the desired output "
            f"type {out.dtype.name}"
        )
    if out.device != result.device:
        raise runtime_error(
            f"{name}(): expected out on {result.device}, like the result, but it is on "
            f"{out.device}"
        )
    if tuple(out.shape) != tuple(result.shape):
        if out.numel() != 0:
            warnings.warn(
                f"{name}(): an output with one or more elements was resized since it had shape "
                f"{list(out.shape)}, which does not match the required output shape "
                f"{list(result.shape)}.",
                UserWarning,
                stacklevel=3,
            )
        from .factories import empty

        out.data = empty(tuple(result.shape), dtype=out.dtype, device=out.device)
    with no_grad():
        out.copy_(result)
    return out
