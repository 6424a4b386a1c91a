"""Categorical(probs | logits): one of K categories per batch entry."""

from __future__ import annotations

from .._tensor import Tensor, ops
from .._tensor.factories import arange, full
from ..errors import value_error
from ..ir.dtype_info import finfo
from ..ir.dtypes import int64
from . import constraints
from .distribution import Distribution
from .utils import as_size, check_probs_or_logits, lazy_property, logits_to_probs, probs_to_logits

__all__ = ["Categorical"]


def _at_least_1d(param, name: str) -> None:
    if not isinstance(param, Tensor):
        raise value_error(f"`{name}` must be an ember.Tensor, got {type(param).__name__}")
    if param.dim() < 1:
        raise value_error(
            f"`{name}` parameter must be at least one-dimensional, got shape "
            f"{tuple(param.shape)}"
        )


class Categorical(Distribution):
    """Category i in {0, ..., K-1} with probability probs[..., i]: probs are normalized over
    the last dim, logits are normalized to logits - logsumexp(logits)."""

    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}
    has_enumerate_support = True

    def __init__(self, probs=None, logits=None, validate_args: bool | None = None):
        check_probs_or_logits(probs, logits)
        if probs is not None:
            _at_least_1d(probs, "probs")
            self.probs = probs / probs.sum(-1, keepdim=True)
            self._param = self.probs
        else:
            _at_least_1d(logits, "logits")
            self.logits = logits - logits.logsumexp(-1, keepdim=True)
            self._param = self.logits
        self._num_events = self._param.shape[-1]
        batch_shape = tuple(self._param.shape)[:-1]
        super().__init__(batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self._num_events - 1)

    @lazy_property
    def logits(self) -> Tensor:
        return probs_to_logits(self.probs)

    @lazy_property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits)

    @property
    def param_shape(self):
        return self._param.size()

    @property
    def mean(self) -> Tensor:
        return full(tuple(self._extended_shape()), float("nan"), dtype=self.probs.dtype,
                    device=self.probs.device)

    @property
    def mode(self) -> Tensor:
        return self.probs.argmax(-1)

    @property
    def variance(self) -> Tensor:
        return full(tuple(self._extended_shape()), float("nan"), dtype=self.probs.dtype,
                    device=self.probs.device)

    def sample(self, sample_shape=()) -> Tensor:
        """Category indices (int64) of shape sample_shape + batch_shape."""
        sample_shape = as_size(sample_shape)
        probs_2d = self.probs.detach().reshape(-1, self._num_events)
        samples_2d = ops.multinomial(probs_2d, sample_shape.numel(), True).T
        return samples_2d.reshape(tuple(self._extended_shape(sample_shape)))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value = value.long().unsqueeze(-1)
        value, log_pmf = ops.broadcast_tensors(value, self.logits)
        return log_pmf.gather(-1, value[..., :1]).squeeze(-1)

    def entropy(self) -> Tensor:
        logits = self.logits.clamp(min=finfo(self.logits.dtype).min)
        return -(logits * self.probs).sum(-1)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        values = arange(self._num_events, dtype=int64, device=self._param.device)
        values = values.view((-1,) + (1,) * len(self._batch_shape))
        if expand:
            values = values.expand((-1,) + tuple(self._batch_shape))
        return values
