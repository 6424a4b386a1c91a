"""The `out=` keyword of PyTorch's functions (torch.add(x, y, out=r)): the result is computed
as usual, then written into the given tensor, resized when its shape differs, as PyTorch's
out variants do. Which functions take it: every declared elementwise function and its aliases
(ir/ops), and the composites in OUT_COMPOSITES."""

from __future__ import annotations

import functools
import warnings

from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..errors import runtime_error, type_error
from .tensor import Tensor

# composite functions that PyTorch gives an out= variant (its native_functions.yaml `.out`)
OUT_COMPOSITES = frozenset({
    "matmul", "mm", "bmm", "mv", "dot", "addmm", "cat", "concat", "concatenate", "stack",
    "sum", "mean", "prod", "cumsum", "cumprod", "amax", "amin", "argmax", "argmin", "max",
    "min", "std", "var", "logsumexp", "norm", "sort", "topk", "outer", "cross", "square",
})


def takes_out(name: str) -> bool:
    """Whether ember.<name> accepts out= (as torch.<name> does)."""
    from ..ir.schema import declared

    if name in OUT_COMPOSITES:
        return True
    return any(
        schema.kind == "elementwise" and (name == schema.name or name in schema.aliases)
        for schema in declared("function")
    )


def with_out(fn, name: str):
    """fn with PyTorch's out= keyword."""

    @functools.wraps(fn)
    def function(*args, out=None, **kwargs):
        result = fn(*args, **kwargs)
        if out is None:
            return result
        return write_out(name, result, out)

    return function


def write_out(name: str, result, out):
    if isinstance(result, Tensor):
        if not isinstance(out, Tensor):
            raise type_error(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
        return _write_one(name, result, out)
    results = tuple(result)
    if not isinstance(out, (tuple, list)) or len(out) != len(results):
        raise type_error(
            f"{name}(): argument 'out' must be a tuple of {len(results)} Tensors, got "
            f"{type(out).__name__}"
        )
    for r, o in zip(results, out):
        if not isinstance(o, Tensor):
            raise type_error(f"{name}(): argument 'out' must hold Tensors, not {type(o).__name__}")
        _write_one(name, r, o)
    return type(result)(*out) if hasattr(result, "_fields") else tuple(out)


def _write_one(name: str, result: Tensor, out: Tensor) -> Tensor:
    from .ops.nn import can_cast

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
                stacklevel=4,
            )
        from .factories import empty

        out.data = empty(tuple(result.shape), dtype=out.dtype, device=out.device)
    with no_grad():
        out.copy_(result)
    return out
