"""Geometric(probs | logits): the number of failures before the first success."""

from __future__ import annotations

from .._tensor import Tensor, ops
from .._tensor.factories import rand
from ..autograd.grad_mode import no_grad
from ..errors import value_error
from ..ir.dtype_info import finfo
from ..nn.functional import softplus
from . import constraints
from .distribution import Distribution
from .utils import (
    BinaryProbs,
    broadcast_all,
    check_probs_or_logits,
)

__all__ = ["Geometric"]


class Geometric(BinaryProbs, Distribution):
    """P(k) = (1 - p)^k p on k = 0, 1, ..., p = probs (or sigmoid(logits)) in (0, 1]."""

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.nonnegative_integer

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
        if self._validate_args and probs is not None:
            valid = self.probs > 0
            if not bool(valid.all()):
                raise value_error(
                    f"Expected parameter probs ({type(self.probs).__name__} of shape "
                    f"{tuple(self.probs.shape)}) of distribution {self!r} to be positive but "
                    f"found invalid values:\n{self.probs[~valid]}"
                )

    @property
    def mean(self) -> Tensor:
        return 1.0 / self.probs - 1.0

    @property
    def mode(self) -> Tensor:
        return ops.full_like(self.probs, 0.0)

    @property
    def variance(self) -> Tensor:
        return (1.0 / self.probs - 1.0) / self.probs

    def sample(self, sample_shape=()) -> Tensor:
        """floor(log u / log(1 - p)), u ~ U[tiny, 1)."""
        shape = self._extended_shape(sample_shape)
        probs = self.probs
        with no_grad():
            u = rand(size=tuple(shape), dtype=probs.dtype, device=probs.device)
            u = u.clamp(min=finfo(probs.dtype).tiny)
            return (u.log() / ops.log1p(-probs)).floor()

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value, probs = broadcast_all(value, self.probs)
        # 0 * log(0) is 0 for the certain first success
        probs = ops.where((probs == 1) & (value == 0), 0.0, probs)
        return value * ops.log1p(-probs) + self.probs.log()

    def entropy(self) -> Tensor:
        logits, probs = self.logits, self.probs
        return (softplus(logits) - logits * probs) / probs
