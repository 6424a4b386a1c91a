"""Gradient clipping: by total norm (any p, inf included) and by value, in place."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..._tensor import Tensor, ops
from ..._tensor.factories import tensor as make_tensor
from ...autograd.grad_mode import no_grad
from ...errors import runtime_error, type_error, value_error

_TensorOrTensors = Tensor | Iterable[Tensor]


def _as_list(tensors: _TensorOrTensors) -> list[Tensor]:
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _vector_norm(t: Tensor, norm_type: float) -> Tensor:
    if norm_type == math.inf:
        return ops.amax(ops.abs(t))
    if norm_type == -math.inf:
        return ops.amin(ops.abs(t))
    if norm_type == 0:
        return ops.sum(ops.cast(ops.ne(t, 0), t.dtype))
    return ops.norm(t, norm_type)


def get_total_norm(
    tensors: _TensorOrTensors,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """The norm of the norms of tensors: the norm of all of them concatenated into one vector."""
    tensors = _as_list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return make_tensor(0.0)
    with no_grad():
        norms = [_vector_norm(t, norm_type) for t in tensors]
        dtype = norms[0].dtype
        total = _vector_norm(ops.stack([ops.cast(n, dtype) for n in norms]), norm_type)
    if error_if_nonfinite and not bool(ops.isfinite(total)):
        raise runtime_error(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the gradients "
            "by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    return total


def clip_grads_with_norm_(
    parameters: _TensorOrTensors, max_norm: float, total_norm: Tensor, foreach: bool | None = None
) -> None:
    """Scale every gradient by max_norm / total_norm when that is below one."""
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return
    with no_grad():
        clip_coef = ops.clamp(float(max_norm) / (total_norm + 1e-6), max=1.0)
        for g in grads:
            g.mul_(ops.cast(clip_coef, g.dtype))


def _as_float(value, name: str) -> float:
    """float(value), with Python's error class (ValueError for 'a', TypeError for None)."""
    try:
        return float(value)
    except ValueError:
        raise value_error(f"{name} must be a number, got {value!r}") from None
    except TypeError:
        raise type_error(f"{name} must be a number, got {type(value).__name__}") from None


def clip_grad_norm_(
    parameters: _TensorOrTensors,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Clip the gradients of parameters in place so their total norm is at most max_norm.

    Returns the total norm before clipping, as PyTorch does.
    """
    max_norm, norm_type = _as_float(max_norm, "max_norm"), _as_float(norm_type, "norm_type")
    parameters = _as_list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    total_norm = get_total_norm(grads, norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total_norm)
    return total_norm


def clip_grad_value_(
    parameters: _TensorOrTensors, clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient in place to [-clip_value, clip_value]."""
    clip_value = _as_float(clip_value, "clip_value")
    with no_grad():
        for p in _as_list(parameters):
            if p.grad is not None:
                p.grad.clamp_(min=-clip_value, max=clip_value)
