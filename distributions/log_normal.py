"""LogNormal(loc, scale): exp of a Normal(loc, scale), written out in closed form."""

from __future__ import annotations

from .._tensor import Tensor, ops
from . import constraints
from .distribution import Distribution
from .normal import Normal
from .utils import broadcast_all

__all__ = ["LogNormal"]


class LogNormal(Distribution):
    """The distribution of exp(X), X ~ Normal(loc, scale); loc and scale are X's."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, loc, scale, validate_args: bool | None = None):
        self.loc, self.scale = broadcast_all(loc, scale)
        batch_shape = self.loc.size()  # () when every parameter is a number
        self.base_dist = Normal(self.loc, self.scale, validate_args=validate_args)
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return ops.exp(self.loc + self.scale.pow(2) / 2)

    @property
    def mode(self) -> Tensor:
        return ops.exp(self.loc - self.scale.pow(2))

    @property
    def variance(self) -> Tensor:
        scale_sq = self.scale.pow(2)
        return ops.expm1(scale_sq) * ops.exp(2 * self.loc + scale_sq)

    def rsample(self, sample_shape=()) -> Tensor:
        return ops.exp(self.base_dist.rsample(sample_shape))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_value = ops.log(value)
        return self.base_dist.log_prob(log_value) - log_value

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.base_dist.cdf(ops.log(value))

    def icdf(self, value: Tensor) -> Tensor:
        return ops.exp(self.base_dist.icdf(value))

    def entropy(self) -> Tensor:
        return self.base_dist.entropy() + self.loc
