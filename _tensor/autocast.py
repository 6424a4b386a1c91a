"""Autocast's state and casts: which ops run in a lower precision, and which in float32.

ember.amp.autocast (amp/autocast.py) sets the state per device type; dispatch() asks
`lower_precision_inputs` before every op of LOWER_PRECISION_OPS, and the float32 composites
(the losses) call `float32_inputs`. The lists follow PyTorch's CPU autocast policy for the ops
ember has: matmul, linear and convolutions run in the autocast dtype; losses in float32;
everything else in whatever dtype its inputs have (softmax and layer_norm included, on the CPU).
"""

from __future__ import annotations

import functools

# primitives whose floating inputs autocast casts to its dtype (PyTorch's lower_precision_fp)
LOWER_PRECISION_OPS = frozenset({"matmul", "linear", "conv2d"})

# device type -> the autocast dtype, for the device types where autocast is on
enabled: dict = {}


def _cast_all(inputs: tuple, dtype) -> tuple:
    from .ops import cast  # deferred: ops/ imports dispatch, which imports this module
    from .tensor import Tensor

    return tuple(
        cast(x, dtype) if isinstance(x, Tensor) and x._dtype.is_floating_point else x
        for x in inputs
    )


def lower_precision_inputs(inputs: tuple, device_type: str) -> tuple:
    """inputs with their floating tensors cast to the autocast dtype of device_type (or as
    they are, where autocast is off there)."""
    dtype = enabled.get(device_type)
    return inputs if dtype is None else _cast_all(inputs, dtype)


def float32_inputs(fn):
    """Decorate a composite that autocast runs in float32 (PyTorch's fp32 list): its floating
    tensor arguments are cast to float32 while autocast is on for their device."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if enabled:
            from ..ir.dtypes import float32
            from .tensor import Tensor

            device = next((x._device.type for x in args if isinstance(x, Tensor)), "cpu")
            if device in enabled:
                args = _cast_all(args, float32)
                kwargs = dict(zip(kwargs, _cast_all(tuple(kwargs.values()), float32)))
        return fn(*args, **kwargs)

    return wrapper
