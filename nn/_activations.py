"""Activation functions and the softmax family of ember.nn.functional, from primitives.

Where a formula has a branch that can overflow (exp in softplus, elu, logsigmoid), the input
is clamped or the max subtracted first, so that neither the value nor the gradient of the
branch that a `where` discards can become inf or NaN.
"""

from __future__ import annotations

import math
import warnings

from .._tensor import Tensor, composites
from .._tensor import ops as E
from .._tensor.factories import full
from .._tensor.inplace import apply_inplace
from ..errors import runtime_error, value_error
from ..ir.dtypes import FLOAT, bool_, get_default_dtype
from ..ir.dtypes import dtype as DType


def _maybe_inplace(input: Tensor, fn, inplace: bool, saves_input: bool = True) -> Tensor:
    """fn(input), written into input when inplace. saves_input=False: fn's backward never
    reads input (apply_inplace then skips its copy)."""
    return apply_inplace(input, fn, saves_input) if inplace else fn(input)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0) elementwise; the gradient at 0 is 0."""
    if isinstance(input, Tensor) and input.dtype is bool_:
        raise runtime_error("Boolean inputs not supported for relu")
    return _maybe_inplace(input, E.relu, inplace, saves_input=False)  # relu keeps its output


def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    """x clamped to [min_val, max_val]; the gradient is 0 at and beyond the bounds."""
    if min_val > max_val:
        raise value_error("min_val cannot be greater than max_val")

    def fn(x):
        inside = E.logical_and(E.gt(x, min_val), E.lt(x, max_val))
        return E.where(inside, x, E.clamp(x.detach(), min_val, max_val))

    return _maybe_inplace(input, fn, inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6) elementwise."""
    return hardtanh(input, 0.0, 6.0, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x where x > 0, else negative_slope * x."""

    def fn(x):
        # x times a 1-or-slope scale (x * 1 is x, so the values are where(x > 0, x, slope * x)
        # exactly): its backward is one product with the saved scale, PyTorch's rule (g where
        # x > 0, else slope * g), where a where() of x would take two wheres, a product and a sum
        positive = E.gt(x, 0)
        if x.dtype.category == FLOAT and x.dtype is not get_default_dtype():
            # the scale in x's dtype, the slope not rounded through the default dtype
            one = full((), 1.0, dtype=x.dtype, device=x.device)
            return E.mul(x, E.where(positive, one, negative_slope))
        return E.mul(x, E.where(positive, 1.0, negative_slope))

    # the product's backward reads the scale alone (x is the factor that needs a gradient)
    return _maybe_inplace(input, fn, inplace, saves_input=False)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, else alpha * (exp(x) - 1)."""

    def fn(x):
        # expm1 sees only x <= 0, so the discarded branch cannot overflow into a NaN gradient
        return E.where(E.gt(x, 0), x, E.mul(E.expm1(E.clamp(x, max=0)), alpha))

    return _maybe_inplace(input, fn, inplace)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, else alpha * (exp(x / alpha) - 1)."""
    if alpha == 0:
        raise runtime_error("ZeroDivisionError: celu's alpha must not be 0")

    def fn(x):
        # as in elu, expm1 sees only x <= 0, so the discarded branch cannot overflow
        return E.where(E.gt(x, 0), x, E.mul(E.expm1(E.div(E.clamp(x, max=0), alpha)), alpha))

    return _maybe_inplace(input, fn, inplace)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalizing constants."""
    return _maybe_inplace(input, lambda x: E.mul(elu(x, _SELU_ALPHA), _SELU_SCALE), inplace)


def _gelu_exact(input: Tensor) -> Tensor:
    return E.mul(E.mul(input, 0.5), E.add(E.erf(E.mul(input, 1.0 / math.sqrt(2.0))), 1))


def _gelu_tanh(input: Tensor) -> Tensor:
    inner = E.mul(
        E.add(input, E.mul(E.mul(E.mul(input, input), input), 0.044715)),
        math.sqrt(2.0 / math.pi),
    )
    return E.mul(E.mul(input, 0.5), E.add(E.tanh(inner), 1))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) with the exact normal CDF, or its tanh approximation. A large eager call is
    one compiled kernel forward and one backward (_tensor/composites.py)."""
    if approximate == "none":
        return _GELU(input) if _GELU.wants(input) else _gelu_exact(input)
    if approximate == "tanh":
        return _GELU_TANH(input) if _GELU_TANH.wants(input) else _gelu_tanh(input)
    raise runtime_error(f"approximate argument must be either none or tanh, got {approximate!r}")


_GELU = composites.Composite("gelu", _gelu_exact)
_GELU_TANH = composites.Composite("gelu_tanh", _gelu_tanh)


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x)) elementwise."""
    return E.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent, elementwise."""
    return E.tanh(input)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x) (also known as swish)."""
    return _maybe_inplace(input, lambda x: E.mul(x, E.sigmoid(x)), inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold."""
    z = E.mul(input, beta)
    # clamping keeps exp finite on the discarded linear branch (and its gradient NaN-free)
    smooth = E.div(E.log1p(E.exp(E.clamp(z, max=threshold))), beta)
    return E.where(E.gt(z, threshold), input, smooth)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)), computed as min(x, 0) - log1p(exp(-|x|)): finite for every x."""
    return E.sub(E.minimum(input, 0), E.log1p(E.exp(E.neg(E.abs(input)))))


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6."""
    return _maybe_inplace(input, lambda x: E.div(hardtanh(E.add(x, 3), 0.0, 6.0), 6), inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6."""
    return _maybe_inplace(
        input, lambda x: E.div(E.mul(x, hardtanh(E.add(x, 3), 0.0, 6.0)), 6), inplace
    )


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    return _maybe_inplace(input, lambda x: E.mul(x, E.tanh(softplus(x))), inplace)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return E.div(input, E.add(E.abs(input), 1))


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """leaky_relu with a learned slope: one for all channels, or one per channel (dim 1)."""
    slope = weight
    if weight.numel() != 1:
        channel_dim = 1 if input.ndim >= 2 else 0
        channels = input.shape[channel_dim] if input.ndim else 1
        if weight.ndim != 1 or weight.shape[0] != channels:
            raise runtime_error(
                f"Mismatch of parameter numbers and input channel size. Found parameter "
                f"numbers = {weight.numel()} and channel size = {channels}."
            )
        slope = E.reshape(weight, (channels,) + (1,) * (input.ndim - channel_dim - 1))
    elif weight.ndim:
        slope = E.reshape(weight, ())
    return E.where(E.gt(input, 0), input, E.mul(input, slope))


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b), where a and b are the two halves of input along dim."""
    if input.ndim == 0:
        raise runtime_error("glu does not support scalars because halving size must be even")
    size = input.shape[dim]
    if size % 2:
        raise runtime_error(f"Halving dimension must be even, but dimension {dim} is size {size}")
    a, b = E.chunk(input, 2, dim)
    return E.mul(a, E.sigmoid(b))


# the tensor ops themselves, without their numpy-keyword wrappers (F.softmax takes dim=)
_softmax = E.softmax.__wrapped__
_log_softmax = E.log_softmax.__wrapped__


def _softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
        "dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: DType | str | None = None
) -> Tensor:
    """exp(x) / sum(exp(x)) along dim, with the max subtracted first."""
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim, _stacklevel)
    return _softmax(input, dim, dtype)


def softmin(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: DType | str | None = None
) -> Tensor:
    """softmax(-x) along dim."""
    if dim is None:
        dim = _softmax_dim("softmin", input.ndim, _stacklevel)
    if dtype is not None:
        input = E.cast(input, dtype)
    return softmax(E.neg(input), dim)


def log_softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: DType | str | None = None
) -> Tensor:
    """x - logsumexp(x) along dim: (x - max) - log(sum(exp(x - max))), finite for finite x."""
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim, _stacklevel)
    return _log_softmax(input, dim, dtype)
