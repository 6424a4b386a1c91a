"""Flatten parameters into one vector and write a vector back into parameters."""

from __future__ import annotations

from collections.abc import Iterable

from ..._tensor import Tensor, ops
from ...errors import runtime_error, type_error


def _check_same_device(param: Tensor, device):
    if device is not None and param.device != device:
        raise type_error(
            "Found two parameters on different devices, this is currently not supported. "
            f"({device} and {param.device})"
        )
    return param.device


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """One 1-D tensor holding every parameter, flattened, in order."""
    device = None
    vec = []
    for param in parameters:
        device = _check_same_device(param, device)
        vec.append(param.reshape(-1))
    if not vec:
        raise runtime_error("parameters_to_vector() got an empty iterable of parameters")
    return ops.cat(vec)


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Write consecutive slices of vec into the parameters (their .data), in order."""
    if not isinstance(vec, Tensor):
        raise type_error(f"expected ember.Tensor, but got: {type(vec).__name__}")
    device = None
    pointer = 0
    for param in parameters:
        device = _check_same_device(param, device)
        num_param = param.numel()
        param.data = vec[pointer : pointer + num_param].view_as(param).data
        pointer += num_param
