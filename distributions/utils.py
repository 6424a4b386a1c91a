"""Helpers the distributions share: parameter broadcasting, probs <-> logits, cached
parameters, and the inverse error function written in tensor ops."""

from __future__ import annotations

import math
from numbers import Number

from .._tensor import Tensor, ops
from .._tensor.factories import randn, tensor
from .._tensor.tensor import Size
from ..autograd.grad_mode import enable_grad, no_grad
from ..errors import type_error, value_error
from ..ir.dtype_info import finfo
from ..ir.dtypes import float64, get_default_dtype
from ..nn import functional as F

__all__ = ["broadcast_all", "clamp_probs", "lazy_property", "logits_to_probs", "probs_to_logits"]


def broadcast_all(*values) -> tuple[Tensor, ...]:
    """values broadcast to one shape; Python numbers become tensors of the first tensor's dtype
    and device (the default dtype when all are numbers)."""
    for value in values:
        if not isinstance(value, (Tensor, Number)):
            raise type_error(
                "Input arguments must all be instances of Number or ember.Tensor, got "
                f"{type(value).__name__}"
            )
    first = next((v for v in values if isinstance(v, Tensor)), None)
    if first is None:
        options = {"dtype": get_default_dtype()}
    else:
        options = {"dtype": first.dtype, "device": first.device}
    as_tensors = [v if isinstance(v, Tensor) else tensor(float(v), **options) for v in values]
    return tuple(ops.broadcast_tensors(*as_tensors))


def as_size(sample_shape) -> Size:
    """sample_shape as an ember.Size; an int is refused as torch refuses it."""
    if isinstance(sample_shape, Size):
        return sample_shape
    if isinstance(sample_shape, int) or not hasattr(sample_shape, "__iter__"):
        raise type_error(
            f"sample_shape must be a tuple or ember.Size, got {type(sample_shape).__name__} "
            f"{sample_shape!r}; write sample(({sample_shape!r},)) for that many samples"
        )
    return Size(int(n) for n in sample_shape)


def standard_normal(shape, dtype, device) -> Tensor:
    """N(0, 1) draws of shape from ember's global generator."""
    return randn(size=tuple(shape), dtype=dtype, device=device)


def sum_rightmost(value: Tensor, dim: int) -> Tensor:
    """value summed over its rightmost dim dimensions."""
    if dim == 0:
        return value
    return value.reshape(tuple(value.shape)[: value.dim() - dim] + (-1,)).sum(-1)


def clamp_probs(probs: Tensor) -> Tensor:
    """probs clamped to [eps, 1 - eps] of their dtype, so their logs stay finite."""
    eps = finfo(probs.dtype).eps
    return probs.clamp(min=eps, max=1 - eps)


def logits_to_probs(logits: Tensor, is_binary: bool = False) -> Tensor:
    """sigmoid (binary) or softmax over the last dim."""
    return ops.sigmoid(logits) if is_binary else F.softmax(logits, dim=-1)


def probs_to_logits(probs: Tensor, is_binary: bool = False) -> Tensor:
    """log-odds (binary) or log-probabilities, of probs clamped away from 0 and 1."""
    clamped = clamp_probs(probs)
    if is_binary:
        return ops.log(clamped) - ops.log1p(-clamped)
    return ops.log(clamped)


class lazy_property:
    """A parameter computed from another on first use and cached in the instance's __dict__
    (Categorical's probs from logits, and the reverse); computed with grad enabled, so the
    cached tensor stays attached to the parameter it came from."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        self.__doc__ = wrapped.__doc__
        self.__name__ = wrapped.__name__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        with enable_grad():
            value = self.wrapped(instance)
        instance.__dict__[self.wrapped.__name__] = value
        return value


# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011): single-precision
# polynomials in w = -log(1 - y^2), refined below by Newton steps on erf
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                   0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def _horner(coefficients, x: Tensor) -> Tensor:
    result = coefficients[0]
    for c in coefficients[1:]:
        result = result * x + c
    return result


def erfinv(y: Tensor) -> Tensor:
    """The inverse of erf, elementwise, for y in [-1, 1] (+-inf at +-1, NaN outside).

    The value is found without the tape (in float64, Newton-polished to full precision); one
    last Newton step x0 - (erf(x0) - y) / erf'(x0) on the tape then carries the exact
    derivative dx/dy = 1 / erf'(x)."""
    with no_grad():
        y64 = y.detach().to(float64)
        w = -ops.log((1 - y64) * (1 + y64))
        central = _horner(_ERFINV_CENTRAL, w - 2.5)
        tail = _horner(_ERFINV_TAIL, ops.sqrt(w) - 3)
        x = ops.where(w < 5, central, tail) * y64
        x = ops.where(y64.abs() == 1, y64 * float("inf"), x)  # the tail polynomial has no sign
        finite = ops.isfinite(x)
        for _ in range(3):
            step = (ops.erf(x) - y64) / (_TWO_OVER_SQRT_PI * ops.exp(-x * x))
            x = ops.where(finite, x - ops.where(finite, step, 0.0), x)
        x0 = x.to(y.dtype)
        slope = ops.where(finite, _TWO_OVER_SQRT_PI * ops.exp(-x * x), 1.0).to(y.dtype)
    residual = ops.where(finite, ops.erf(x0) - y, 0.0)
    return x0 - residual / slope


def check_probs_or_logits(probs, logits) -> None:
    """Exactly one of probs and logits is given, as torch's distributions require."""
    if (probs is None) == (logits is None):
        raise value_error("Either `probs` or `logits` must be specified, but not both.")


class BinaryProbs:
    """The parameter of a distribution over one two-outcome event (Bernoulli, Binomial,
    Geometric): probs or logits as given (_param), the other made from it on first use."""

    @lazy_property
    def logits(self) -> Tensor:
        return probs_to_logits(self.probs, is_binary=True)

    @lazy_property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits, is_binary=True)

    @property
    def param_shape(self):
        return self._param.size()
