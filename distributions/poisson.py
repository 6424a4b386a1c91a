"""Poisson(rate): counts of events at a given rate, sampled from ember's generator."""

from __future__ import annotations

from .._tensor import Tensor, ops
from .._tensor.factories import arange, rand
from ..autograd.grad_mode import no_grad
from ..ir.dtypes import float64
from . import constraints
from .distribution import Distribution
from .utils import broadcast_all

__all__ = ["Poisson"]

_INVERSION_BELOW = 10.0  # rates below this sample by CDF inversion, the rest by PTRS
_MAX_INVERSION_STEPS = 200  # P(k > 200) for rate < 10 is far below float64's resolution


class Poisson(Distribution):
    """P(k) = rate^k exp(-rate) / k! on k = 0, 1, ...; rate may be 0."""

    arg_constraints = {"rate": constraints.nonnegative}
    support = constraints.nonnegative_integer

    def __init__(self, rate, validate_args: bool | None = None):
        (self.rate,) = broadcast_all(rate)
        batch_shape = self.rate.size()  # () when the parameter is a number
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.rate

    @property
    def mode(self) -> Tensor:
        return self.rate.floor()

    @property
    def variance(self) -> Tensor:
        return self.rate

    def sample(self, sample_shape=()) -> Tensor:
        shape = tuple(self._extended_shape(sample_shape))
        with no_grad():
            rate = self.rate.detach().expand(shape).to(float64).reshape(-1)
            return _poisson(rate).reshape(shape).to(self.rate.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        rate, value = broadcast_all(self.rate, value)
        return ops.xlogy(value, rate) - rate - ops.lgamma(value + 1)


def _poisson(rate: Tensor) -> Tensor:
    """Poisson draws for a flat float64 tensor of rates: inversion below _INVERSION_BELOW,
    Hormann's transformed rejection (PTRS, as numpy) above, redrawing only rejected ones."""
    result = ops.where(rate == rate, 0.0, float("nan"))
    small = (rate < _INVERSION_BELOW) & (rate > 0)
    if bool(small.any()):
        result[small] = _poisson_inversion(rate[small])
    large = rate >= _INVERSION_BELOW
    if bool(large.any()):
        result[large] = _poisson_ptrs(rate[large])
    return result


def _poisson_inversion(rate: Tensor) -> Tensor:
    u = rand(size=(rate.numel(),), dtype=float64, device=rate.device)
    k = ops.full_like(rate, 0.0)
    pmf = ops.exp(-rate)
    cdf = pmf
    searching = u > cdf
    for _ in range(_MAX_INVERSION_STEPS):
        if not bool(searching.any()):
            break
        k = k + searching.to(float64)
        pmf = ops.where(searching, pmf * rate / ops.where(k > 0, k, 1.0), pmf)
        cdf = ops.where(searching, cdf + pmf, cdf)
        searching = searching & (u > cdf)
    return k


def _poisson_ptrs(rate: Tensor) -> Tensor:
    # Hormann, "The transformed rejection method for generating Poisson random variables"
    # (1993), with numpy's constants
    sqrt_rate, log_rate = ops.sqrt(rate), ops.log(rate)
    b = 0.931 + 2.53 * sqrt_rate
    a = -0.059 + 0.02483 * b
    log_inv_alpha = ops.log(1.1239 + 1.1328 / (b - 3.4))
    v_r = 0.9277 - 3.6224 / (b - 2)
    result = ops.full_like(rate, 0.0)
    pending = arange(rate.numel(), device=rate.device)
    while pending.numel() > 0:
        n = pending.numel()
        lam, ap, bp = rate[pending], a[pending], b[pending]
        u = rand(size=(n,), dtype=float64, device=rate.device) - 0.5
        v = rand(size=(n,), dtype=float64, device=rate.device)
        us = 0.5 - u.abs()
        k = ops.floor((2 * ap / us + bp) * u + lam + 0.43)
        quick = (us >= 0.07) & (v <= v_r[pending])
        possible = (k >= 0) & ~((us < 0.013) & (v > us))
        safe_k = ops.where(k >= 0, k, 0.0)
        log_ratio = (ops.log(v) + log_inv_alpha[pending] - ops.log(ap / (us * us) + bp))
        exact = log_ratio <= -lam + safe_k * log_rate[pending] - ops.lgamma(safe_k + 1)
        accept = quick | (possible & exact)
        result[pending[accept]] = k[accept]
        pending = pending[~accept]
    return result


