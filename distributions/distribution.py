"""Distribution: the base class every distribution derives from, with torch's shapes
(sample_shape + batch_shape + event_shape) and its argument and sample validation."""

from __future__ import annotations

import warnings

from .._tensor import Tensor
from .._tensor.tensor import Size
from ..autograd.grad_mode import no_grad
from ..errors import not_implemented_error, value_error
from . import constraints
from .utils import as_size, lazy_property

__all__ = ["Distribution"]


class Distribution:
    """A batch of probability distributions of batch_shape, each over events of event_shape.

    Arguments are checked against `arg_constraints` at construction, and values against
    `support` in log_prob and cdf, unless validate_args=False (or the default is switched
    off with `Distribution.set_default_validate_args(False)`, or Python runs with -O)."""

    has_rsample = False
    has_enumerate_support = False
    _validate_args = __debug__

    @staticmethod
    def set_default_validate_args(value: bool) -> None:
        """Switch argument validation on or off for distributions built afterwards."""
        if value not in (True, False):
            raise value_error(f"set_default_validate_args expects True or False, got {value!r}")
        Distribution._validate_args = value

    def __init__(self, batch_shape=(), event_shape=(), validate_args: bool | None = None):
        self._batch_shape = Size(batch_shape)
        self._event_shape = Size(event_shape)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            self._check_arguments()
        super().__init__()

    def _check_arguments(self) -> None:
        try:
            arg_constraints = self.arg_constraints
        except NotImplementedError:
            warnings.warn(
                f"{self.__class__} does not define `arg_constraints`. Please set "
                "`arg_constraints = {}` or initialize the distribution with "
                "`validate_args=False` to turn off validation.",
                stacklevel=3,
            )
            return
        for param, constraint in arg_constraints.items():
            if constraints.is_dependent(constraint):
                continue
            if param not in self.__dict__ and isinstance(
                getattr(type(self), param, None), lazy_property
            ):
                continue  # computed from the parameter that was given, which is checked
            value = getattr(self, param)
            if not bool(constraint.check(value).all()):
                raise value_error(
                    f"Expected parameter {param} ({type(value).__name__} of shape "
                    f"{tuple(value.shape)}) of distribution {self!r} to satisfy the "
                    f"constraint {constraint!r}, but found invalid values:\n{value}"
                )

    @property
    def batch_shape(self) -> Size:
        """The shape over which parameters are batched."""
        return self._batch_shape

    @property
    def event_shape(self) -> Size:
        """The shape of one sample, without batching."""
        return self._event_shape

    @property
    def arg_constraints(self) -> dict:
        """Parameter name -> the Constraint it must satisfy."""
        raise NotImplementedError

    @property
    def support(self):
        """The Constraint every sample satisfies."""
        raise NotImplementedError

    @property
    def mean(self) -> Tensor:
        raise not_implemented_error(f"{self.__class__.__name__} does not implement mean")

    @property
    def mode(self) -> Tensor:
        raise not_implemented_error(f"{self.__class__.__name__} does not implement mode")

    @property
    def variance(self) -> Tensor:
        raise not_implemented_error(f"{self.__class__.__name__} does not implement variance")

    @property
    def stddev(self) -> Tensor:
        return self.variance.sqrt()

    def sample(self, sample_shape=Size()) -> Tensor:
        """A sample of shape sample_shape + batch_shape + event_shape, off the tape."""
        with no_grad():
            return self.rsample(sample_shape)

    def rsample(self, sample_shape=Size()) -> Tensor:
        """A reparameterized sample: gradients flow from it to the parameters."""
        raise not_implemented_error(
            f"{self.__class__.__name__} has no reparameterized sampler (rsample); "
            "use sample(), which is not differentiable"
        )

    def log_prob(self, value: Tensor) -> Tensor:
        raise not_implemented_error(f"{self.__class__.__name__} does not implement log_prob")

    def cdf(self, value: Tensor) -> Tensor:
        raise not_implemented_error(f"{self.__class__.__name__} does not implement cdf")

    def icdf(self, value: Tensor) -> Tensor:
        raise not_implemented_error(f"{self.__class__.__name__} does not implement icdf")

    def enumerate_support(self, expand: bool = True) -> Tensor:
        raise not_implemented_error(
            f"{self.__class__.__name__} does not implement enumerate_support"
        )

    def entropy(self) -> Tensor:
        raise not_implemented_error(f"{self.__class__.__name__} does not implement entropy")

    def perplexity(self) -> Tensor:
        """exp(entropy)."""
        return self.entropy().exp()

    def _extended_shape(self, sample_shape=Size()) -> Size:
        return Size(tuple(as_size(sample_shape)) + tuple(self._batch_shape)
                    + tuple(self._event_shape))

    def _validate_sample(self, value) -> None:
        """Raise unless value is a tensor whose shape broadcasts with batch_shape + event_shape
        and whose entries lie in the support."""
        if not isinstance(value, Tensor):
            raise value_error(
                f"The value argument to log_prob must be a Tensor, got {type(value).__name__}"
            )
        actual = tuple(value.shape)
        event = tuple(self._event_shape)
        if actual[len(actual) - len(event):] != event:
            raise value_error(
                f"The right-most size of value must match event_shape: {value.shape} vs "
                f"{self._event_shape}."
            )
        expected = tuple(self._batch_shape) + event
        for i, j in zip(reversed(actual), reversed(expected)):
            if i != 1 and j != 1 and i != j:
                raise value_error(
                    f"Value is not broadcastable with batch_shape+event_shape: {Size(actual)} "
                    f"vs {Size(expected)}."
                )
        try:
            support = self.support
        except NotImplementedError:
            warnings.warn(
                f"{self.__class__} does not define `support` to enable sample validation. "
                "Please initialize the distribution with `validate_args=False` to turn off "
                "validation.",
                stacklevel=3,
            )
            return
        if not bool(support.check(value).all()):
            raise value_error(
                f"Expected value argument ({type(value).__name__} of shape {actual}) to be "
                f"within the support ({support!r}) of the distribution {self!r}, but found "
                f"invalid values:\n{value}"
            )

    def __repr__(self) -> str:
        try:
            names = [k for k in self.arg_constraints if k in self.__dict__]
        except NotImplementedError:
            names = []
        shown = []
        for name in names:
            value = self.__dict__[name]
            shown.append(f"{name}: {value if value.numel() == 1 else value.size()}")
        return f"{self.__class__.__name__}({', '.join(shown)})"
