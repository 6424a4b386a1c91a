"""Bernoulli(probs | logits): one coin flip per batch entry."""

from __future__ import annotations

from .._tensor import Tensor, ops
from .._tensor.factories import arange
from ..autograd.grad_mode import no_grad
from ..nn.functional import softplus
from . import constraints
from .distribution import Distribution
from .utils import (
    BinaryProbs,
    broadcast_all,
    check_probs_or_logits,
)

__all__ = ["Bernoulli"]


class Bernoulli(BinaryProbs, Distribution):
    """Takes 1 with probability probs (or sigmoid(logits)) and 0 otherwise."""

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.boolean
    has_enumerate_support = True

    def __init__(self, probs=None, logits=None, validate_args: bool | None = None):
        check_probs_or_logits(probs, logits)
        if probs is not None:
            (self.probs,) = broadcast_all(probs)
            self._param = self.probs
        else:
            (self.logits,) = broadcast_all(logits)
            self._param = self.logits
        # () when the parameter is a number
        super().__init__(self._param.size(), validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def mode(self) -> Tensor:
        mode = (self.probs >= 0.5).to(self.probs)
        return ops.where(self.probs == 0.5, float("nan"), mode)

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape=()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        with no_grad():
            return ops.bernoulli(self.probs.expand(tuple(shape)))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        if value.dtype != logits.dtype:
            value = value.to(logits.dtype)
        # -binary_cross_entropy_with_logits, each softplus weighted by its own outcome
        return -(value * softplus(-logits) + (1 - value) * softplus(logits))

    def entropy(self) -> Tensor:
        probs = self.probs
        return probs * softplus(-self.logits) + (1 - probs) * softplus(self.logits)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        values = arange(2, dtype=self._param.dtype, device=self._param.device)
        values = values.view((-1,) + (1,) * len(self._batch_shape))
        if expand:
            values = values.expand((-1,) + tuple(self._batch_shape))
        return values
