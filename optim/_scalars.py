"""Step-dependent scalars of the optimizers, eager or captured.

Eagerly a step count is read into a Python float and the scalars are computed as PyTorch
computes them. Under ember.script the step counter stays a tensor, and so does every scalar
computed from it, so one captured step stays right on every later call (PyTorch's
capturable=True) instead of retracing whenever the count changes.
"""

from __future__ import annotations

import math

from .._tensor import Tensor, hooks
from .._tensor.factories import tensor
from ..ir.dtypes import float32, float64, get_default_dtype
from .optimizer import addcdiv_

Scalar = float | Tensor


def traced() -> bool:
    """Whether this step is being captured by ember.script."""
    return hooks.trace_here() is not None


def step_value(step_t: Tensor) -> Scalar:
    """The step counter as a float eagerly, as itself under capture."""
    return step_t if traced() else step_t.item()


def power(base: float, exponent: Scalar) -> Scalar:
    """base ** exponent, for a tensor exponent as exp(exponent * log(base)) (base > 0)."""
    if not isinstance(exponent, Tensor):
        return base**exponent
    if base == 0:
        return exponent * 0.0
    return (exponent * math.log(base)).exp()


def scalar_state(value: float) -> Tensor:
    """A 0-d state tensor in PyTorch's scalar dtype: float32 (float64 under a float64
    default), which rounds the values stored in it as PyTorch's do."""
    return tensor(value, dtype=float64 if get_default_dtype() is float64 else float32)


def addcdiv(out: Tensor, a: Tensor, b: Tensor, value: Scalar) -> Tensor:
    """out += value * a / b in place; value may be a captured tensor scalar."""
    if isinstance(value, Tensor):
        return out.add_(a * value.to(a.dtype) / b)
    return addcdiv_(out, a, b, value=value)
