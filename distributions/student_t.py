"""StudentT(df, loc, scale): heavy-tailed location-scale family, sampled as
Normal / sqrt(Chi2 / df)."""

from __future__ import annotations

import math

from .._tensor import Tensor, ops
from . import constraints
from .distribution import Distribution
from .gamma import Chi2
from .utils import broadcast_all, standard_normal

__all__ = ["StudentT"]


class StudentT(Distribution):
    """Student's t with df degrees of freedom, shifted by loc and scaled by scale."""

    arg_constraints = {"df": constraints.positive, "loc": constraints.real,
                       "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, df, loc=0.0, scale=1.0, validate_args: bool | None = None):
        self.df, self.loc, self.scale = broadcast_all(df, loc, scale)
        self._chi2 = Chi2(self.df)
        super().__init__(self.df.size(), validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return ops.where(self.df > 1, self.loc, float("nan"))

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        above_two = self.df > 2
        df = ops.where(above_two, self.df, 3.0)  # keeps the unused branch finite for grads
        finite = self.scale.pow(2) * df / (df - 2)
        return ops.where(above_two, finite, ops.where(self.df > 1, float("inf"), float("nan")))

    def rsample(self, sample_shape=()) -> Tensor:
        """loc + scale * X / sqrt(Z / df), X ~ N(0, 1), Z ~ Chi2(df): differentiable in all
        three parameters."""
        shape = self._extended_shape(sample_shape)
        x = standard_normal(shape, dtype=self.df.dtype, device=self.df.device)
        z = self._chi2.rsample(sample_shape)
        return self.loc + self.scale * (x * ops.rsqrt(z / self.df))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        y = (value - self.loc) / self.scale
        normalizer = (self.scale.log() + 0.5 * self.df.log() + 0.5 * math.log(math.pi)
                      + ops.lgamma(0.5 * self.df) - ops.lgamma(0.5 * (self.df + 1.0)))
        return -0.5 * (self.df + 1.0) * ops.log1p(y**2.0 / self.df) - normalizer

    def entropy(self) -> Tensor:
        log_beta = (ops.lgamma(0.5 * self.df) + math.lgamma(0.5)
                    - ops.lgamma(0.5 * (self.df + 1)))
        return (self.scale.log()
                + 0.5 * (self.df + 1)
                * (ops.digamma(0.5 * (self.df + 1)) - ops.digamma(0.5 * self.df))
                + 0.5 * self.df.log() + log_beta)
