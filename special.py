"""ember.special: PyTorch's torch.special namespace, the special functions by their scipy
names. Each is an ember op or a composite of ops (differentiable, traceable), eager on numpy
or cupy like every other; erfc, erfinv, lgamma (gammaln), digamma (psi) and polygamma are the
elementwise ops declared in ir/ops/elementwise.py."""

from __future__ import annotations

import math

from ._tensor import ops as E
from ._tensor.factories import as_tensor
from ._tensor.out_arg import write_out
from ._tensor.tensor import Tensor
from .errors import type_error, type_name

erf = E.erf
erfc = E.erfc
erfinv = E.erfinv
gammaln = E.lgamma
digamma = E.digamma
psi = E.digamma
polygamma = E.polygamma
multigammaln = E.mvlgamma
expit = E.sigmoid
logit = E.logit
sinc = E.sinc
xlogy = E.xlogy
exp2 = E.exp2
expm1 = E.expm1
log1p = E.log1p
round = E.round
logsumexp = E.logsumexp
softmax = E.softmax
log_softmax = E.log_softmax

_SQRT_HALF = math.sqrt(0.5)
_NDTRI_TAIL_BELOW = 1e-3
_NDTRI_NEWTON_STEPS = 4
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# below these log_ndtr sums its asymptotic series (five terms: within 1e-16 relative at
# -30, 1e-9 at -12, 1e-4 at -5): erfc(-x / sqrt(2)) underflows near -37.5 in float64, -14
# in float32, -5.4 in float16
_LOG_NDTR_SERIES_BELOW = {"float64": -30.0, "float32": -12.0}
_LOG_NDTR_HALF_BELOW = -5.0


def _tensor_arg(name: str, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise type_error(f"special.{name}(): argument 'input' must be Tensor, not "
                         f"{type_name(x)}")
    return x


def _out(name, result, out):
    return result if out is None else write_out(name, result, out)


def ndtr(input: Tensor, *, out=None) -> Tensor:
    """The standard normal's cumulative distribution, erfc(-x / sqrt(2)) / 2."""
    x = _tensor_arg("ndtr", input)
    return _out("ndtr", E.mul(E.erfc(E.mul(x, -_SQRT_HALF)), 0.5), out)


def ndtri(input: Tensor, *, out=None) -> Tensor:
    """The standard normal's quantile function: sqrt(2) erfinv(2p - 1), and below p = 1e-3
    (where 2p - 1 loses p's digits) Newton's steps on ndtr(x) = p from the tail's asymptotic
    x ~ -sqrt(2 log(1/p) - log(2 log(1/p)) - log(2 pi)), ndtr being erfc there, exact in
    relative terms."""
    p = _tensor_arg("ndtri", input)
    central = E.mul(E.erfinv(E.sub(E.mul(p, 2.0), 1.0)), math.sqrt(2.0))
    tail = E.logical_and(E.gt(p, 0), E.lt(p, _NDTRI_TAIL_BELOW))
    q = E.where(tail, p, _NDTRI_TAIL_BELOW)
    big = E.mul(E.log(q), -2.0)
    x = E.neg(E.sqrt(E.sub(E.sub(big, E.log(big)), math.log(2 * math.pi))))
    for _ in range(_NDTRI_NEWTON_STEPS):
        density = E.mul(E.exp(E.mul(E.mul(x, x), -0.5)), 1 / math.sqrt(2 * math.pi))
        x = E.sub(x, E.div(E.sub(ndtr(x), q), density))
    value = E.where(tail, x, central)
    outside = E.logical_or(E.lt(p, 0), E.gt(p, 1))  # (2p - 1 may round to -1 just below 0)
    return _out("ndtri", E.where(outside, math.nan, value), out)


def log_ndtr(input: Tensor, *, out=None) -> Tensor:
    """log(ndtr(x)) without the underflow or the rounding: log1p(-ndtr(-x)) above 0, below
    -30 (float64; -12 float32) the series
    -x^2/2 - log(-x) - log(2 pi)/2 + log(1 - 1/x^2 + 3/x^4 - 15/x^6 + 105/x^8 - 945/x^10)."""
    x = _tensor_arg("log_ndtr", input)
    below = _LOG_NDTR_SERIES_BELOW.get(x.dtype.name, _LOG_NDTR_HALF_BELOW)
    far = E.lt(x, below)
    near_x = E.where(far, 0.0, x)
    # above 0 ndtr(x) nears 1: log1p of minus its upper tail, erfc(x / sqrt(2)) / 2, keeps
    # the digits that log(ndtr(x)) rounds away (log_ndtr(10) = -7.6e-24)
    # (each branch is given values it is finite at, so that the other's gradient is 0, not
    # 0 * inf)
    positive = E.gt(near_x, 0)
    upper_x = E.where(positive, near_x, 1.0)
    lower_x = E.where(positive, 0.0, near_x)
    upper = E.log1p(E.neg(E.mul(E.erfc(E.mul(upper_x, _SQRT_HALF)), 0.5)))
    lower = E.log(E.mul(E.erfc(E.mul(lower_x, -_SQRT_HALF)), 0.5))
    near = E.where(positive, upper, lower)
    far_x = E.where(far, x, below)
    inv2 = E.reciprocal(E.mul(far_x, far_x))
    series = E.add(E.mul(inv2, -945.0), 105.0)
    for c in (-15.0, 3.0, -1.0, 1.0):
        series = E.add(E.mul(series, inv2), c)
    tail = E.sub(E.sub(E.mul(E.mul(far_x, far_x), -0.5), E.log(E.neg(far_x))), _HALF_LOG_2PI)
    return _out("log_ndtr", E.where(far, E.add(tail, E.log(series)), near), out)


def xlog1py(input, other, *, out=None) -> Tensor:
    """input * log1p(other), 0 where input is 0 (other NaN still gives NaN)."""
    x = input if isinstance(input, Tensor) else as_tensor(input)
    y = other if isinstance(other, Tensor) else as_tensor(other)
    product = E.mul(x, E.log1p(y))
    zero = E.logical_and(E.eq(x, 0), E.logical_not(E.isnan(y)))
    return _out("xlog1py", E.where(zero, 0.0, product), out)


def entr(input: Tensor, *, out=None) -> Tensor:
    """-x log(x) for x > 0, 0 at 0, -inf below 0, NaN for NaN."""
    x = _tensor_arg("entr", input)
    positive = E.gt(x, 0)
    value = E.neg(E.mul(x, E.log(E.where(positive, x, 1.0))))
    value = E.where(positive, value, 0.0)
    value = E.where(E.lt(x, 0), -math.inf, value)
    return _out("entr", E.where(E.isnan(x), x, value), out)


__all__ = [
    "digamma", "entr", "erf", "erfc", "erfinv", "exp2", "expit", "expm1", "gammaln", "log1p",
    "log_ndtr", "log_softmax", "logit", "logsumexp", "multigammaln", "ndtr", "ndtri",
    "polygamma", "psi", "round", "sinc", "softmax", "xlog1py", "xlogy",
]
