"""Binomial(total_count, probs | logits): the number of successes in total_count coin flips."""

from __future__ import annotations

from .._tensor import Tensor, ops
from .._tensor.factories import arange, rand
from ..autograd.grad_mode import no_grad
from ..errors import not_implemented_error
from ..ir.dtypes import float64
from . import constraints
from .distribution import Distribution
from .gamma_functions import standard_gamma
from .utils import (
    BinaryProbs,
    broadcast_all,
    check_probs_or_logits,
)

__all__ = ["Binomial"]

_DIRECT_MAX = 64  # counts up to this are sampled as sums of Bernoulli draws


def _clamp_by_zero(x: Tensor) -> Tensor:
    # max(x, 0) whose gradient at 0 is 1/2, as torch's
    return (x.clamp(min=0) + x - x.clamp(max=0)) / 2


class Binomial(BinaryProbs, Distribution):
    """P(k) = C(n, k) p^k (1 - p)^(n - k) on k = 0, ..., n, n = total_count and
    p = probs (or sigmoid(logits)); total_count broadcasts with the probability parameter."""

    arg_constraints = {
        "total_count": constraints.nonnegative_integer,
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }
    has_enumerate_support = True

    def __init__(self, total_count=1, probs=None, logits=None,
                 validate_args: bool | None = None):
        check_probs_or_logits(probs, logits)
        if probs is not None:
            self.total_count, self.probs = broadcast_all(total_count, probs)
            self._param = self.probs
        else:
            self.total_count, self.logits = broadcast_all(total_count, logits)
            self._param = self.logits
        self.total_count = self.total_count.to(self._param)
        super().__init__(self._param.size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.total_count)

    @property
    def mean(self) -> Tensor:
        return self.total_count * self.probs

    @property
    def mode(self) -> Tensor:
        return ((self.total_count + 1) * self.probs).floor().clamp(max=self.total_count)

    @property
    def variance(self) -> Tensor:
        return self.total_count * self.probs * (1 - self.probs)

    def sample(self, sample_shape=()) -> Tensor:
        """Exact draws from ember's generator: Bernoulli sums for counts up to _DIRECT_MAX,
        larger counts first reduced by splitting at Beta-distributed order statistics."""
        shape = tuple(self._extended_shape(sample_shape))
        with no_grad():
            count = self.total_count.detach().expand(shape).to(float64).reshape(-1)
            probs = self.probs.detach().expand(shape).to(float64).reshape(-1)
            return _binomial(count, probs).reshape(shape).to(self._param.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        if isinstance(value, Tensor) and value.dtype != self._param.dtype:
            value = value.to(self._param.dtype)
        n, logits = self.total_count, self.logits
        log_factorial_n = ops.lgamma(n + 1)
        log_factorial_k = ops.lgamma(value + 1)
        log_factorial_nmk = ops.lgamma(n - value + 1)
        # k log p + (n - k) log(1 - p) = k logit - n log(1 + e^logit)
        #                              = k logit - n max(logit, 0) - n log1p(e^-|logit|)
        normalizer = (n * _clamp_by_zero(logits) + n * ops.log1p(ops.exp(-logits.abs()))
                      - log_factorial_n)
        return value * logits - log_factorial_k - log_factorial_nmk - normalizer

    def entropy(self) -> Tensor:
        self._homogeneous_count("entropy")
        log_prob = self.log_prob(self.enumerate_support(False))
        return -(ops.exp(log_prob) * log_prob).sum(0)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        total_count = self._homogeneous_count("enumerate_support")
        values = arange(1 + total_count, dtype=self._param.dtype, device=self._param.device)
        values = values.view((-1,) + (1,) * len(self._batch_shape))
        if expand:
            values = values.expand((-1,) + tuple(self._batch_shape))
        return values

    def _homogeneous_count(self, method: str) -> int:
        total_count = int(self.total_count.max())
        if not float(self.total_count.min()) == total_count:
            raise not_implemented_error(
                f"Inhomogeneous total count not supported by `{method}`."
            )
        return total_count


def _binomial(count: Tensor, probs: Tensor) -> Tensor:
    """Binomial draws for flat float64 counts and probabilities.

    While a count n exceeds _DIRECT_MAX, the a-th smallest (a = n // 2 + 1) of n uniforms,
    X ~ Beta(a, n + 1 - a), is drawn: if X < p, at least a of the n flips succeed and the
    other n - a are uniform on (X, 1), succeeding with probability (p - X) / (1 - X);
    otherwise at most a - 1 do, uniform on (0, X), succeeding with probability p / X
    (Devroye, Non-Uniform Random Variate Generation, X.4.3). Each step halves the count,
    and the rest are sums of Bernoulli draws; every step is exact."""
    result = ops.where((count == count) & (probs == probs), 0.0, float("nan"))
    count = ops.where(result == 0, count.round(), 0.0)  # fresh tensors, updated in place
    probs = ops.where(result == 0, probs, 0.0)
    while True:
        large = count > _DIRECT_MAX
        if not bool(large.any()):
            break
        n, p = count[large], probs[large]
        a = ops.floor(n / 2) + 1
        ga, gb = standard_gamma(a), standard_gamma(n + 1 - a)
        x = ga / (ga + gb)
        below = x < p
        result[large] = result[large] + ops.where(below, a, 0.0)
        count[large] = ops.where(below, n - a, a - 1)
        probs[large] = ops.where(below, (p - x) / (1 - x), p / x).clamp(min=0.0, max=1.0)
    width = int(count.max()) if count.numel() > 0 else 0
    if width > 0:
        u = rand(size=(count.numel(), width), dtype=float64, device=count.device)
        trials = arange(width, dtype=float64, device=count.device) < count.unsqueeze(-1)
        successes = (u < probs.unsqueeze(-1)) & trials
        result = result + successes.to(float64).sum(-1)
    return result
