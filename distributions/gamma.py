"""Gamma(concentration, rate) and Chi2(df) = Gamma(df / 2, 1 / 2), with a reparameterized
sampler (exact in rate, implicit in concentration; see gamma_functions)."""

from __future__ import annotations

from .._tensor import Tensor, ops
from .._tensor.factories import tensor
from ..ir.dtype_info import finfo
from . import constraints
from .distribution import Distribution
from .gamma_functions import gammainc, standard_gamma
from .utils import broadcast_all

__all__ = ["Chi2", "Gamma"]


class Gamma(Distribution):
    """Density rate^a x^(a-1) exp(-rate x) / Gamma(a) on x >= 0, a = concentration."""

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, concentration, rate, validate_args: bool | None = None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        batch_shape = self.concentration.size()  # () when every parameter is a number
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.concentration / self.rate

    @property
    def mode(self) -> Tensor:
        return ((self.concentration - 1) / self.rate).clamp(min=0)

    @property
    def variance(self) -> Tensor:
        return self.concentration / self.rate.pow(2)

    def rsample(self, sample_shape=()) -> Tensor:
        """standard_gamma(concentration) / rate, clamped (off the tape) to the dtype's
        smallest normal number as torch does."""
        shape = tuple(self._extended_shape(sample_shape))
        value = standard_gamma(self.concentration.expand(shape)) / self.rate.expand(shape)
        floor = value.detach().clamp(min=finfo(value.dtype).tiny)
        return value + (floor - value.detach())

    def log_prob(self, value) -> Tensor:
        if not isinstance(value, Tensor):
            value = tensor(value, dtype=self.rate.dtype, device=self.rate.device)
        if self._validate_args:
            self._validate_sample(value)
        return (ops.xlogy(self.concentration, self.rate)
                + ops.xlogy(self.concentration - 1, value)
                - self.rate * value
                - ops.lgamma(self.concentration))

    def cdf(self, value: Tensor) -> Tensor:
        """The regularized lower incomplete gamma P(concentration, rate * value)."""
        if self._validate_args:
            self._validate_sample(value)
        return gammainc(self.concentration, self.rate * value)

    def entropy(self) -> Tensor:
        return (self.concentration - ops.log(self.rate) + ops.lgamma(self.concentration)
                + (1.0 - self.concentration) * ops.digamma(self.concentration))


class Chi2(Gamma):
    """The chi-squared distribution with df degrees of freedom: Gamma(df / 2, 1 / 2)."""

    arg_constraints = {"df": constraints.positive}

    def __init__(self, df, validate_args: bool | None = None):
        super().__init__(0.5 * df, 0.5, validate_args=validate_args)

    @property
    def df(self) -> Tensor:
        return self.concentration * 2
