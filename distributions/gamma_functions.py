"""The Gamma distribution's numerics: the regularized lower incomplete gamma P(a, x) with its
derivative in a, the Marsaglia-Tsang sampler drawing from ember's generator, and the implicit
reparameterization gradient of a standard-gamma sample in its concentration."""

from __future__ import annotations

import math

from .._tensor import Tensor, ops
from .._tensor.factories import arange, full, rand, randn
from ..autograd import grad_mode
from ..autograd.function import Function
from ..errors import not_implemented_error, runtime_error
from ..ir.dtype_info import finfo
from ..ir.dtypes import float64

__all__ = ["gammainc", "standard_gamma"]

_EPS = 2.3e-16  # series and continued fraction stop once a step changes the sum below this
_TINY = 1e-300  # keeps the modified Lentz recurrences off zero denominators


def _max_iterations(a: Tensor) -> int:
    # both expansions need O(sqrt(a)) terms where x is near a, their slowest region
    largest = float(a.max()) if a.numel() else 1.0
    return int(200 + 20 * math.sqrt(max(largest, 1.0)))


def _series(a: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """S = sum_n x^n / ((a+1)...(a+n)) and dS/da, so that P = x^a e^-x / Gamma(a+1) * S
    (Numerical Recipes' gser, carried with its derivative); converges fast for x < a + 1."""
    term, dterm = ops.full_like(x, 1.0), ops.full_like(x, 0.0)
    total, dtotal = ops.full_like(x, 1.0), ops.full_like(x, 0.0)
    done = x != x  # sticky: a converged element may still wobble by an ulp
    for n in range(1, _max_iterations(a)):
        ratio = x / (a + n)
        dterm = (dterm - term / (a + n)) * ratio
        term = term * ratio
        total, dtotal = total + term, dtotal + dterm
        done = done | ((term <= _EPS * total) & (dterm.abs() <= _EPS * dtotal.abs() + _TINY))
        if bool(done.all()):
            return total, dtotal
    raise runtime_error(f"the incomplete gamma series did not converge for a up to {a.max()}")


def _continued_fraction(a: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """h and dh/da with Q = 1 - P = x^a e^-x / Gamma(a) * h, by Legendre's continued fraction
    (Numerical Recipes' gcf, modified Lentz, each quantity carried with its derivative in a);
    converges fast for x >= a + 1."""
    b, db = x + 1 - a, -ops.full_like(x, 1.0)
    c, dc = ops.full_like(x, 1 / _TINY), ops.full_like(x, 0.0)
    d = 1 / b
    dd = -db * d * d
    h, dh = d, dd
    done = x != x  # sticky: a converged element may still wobble by an ulp
    for i in range(1, _max_iterations(a)):
        an, dan = -i * (i - a), i
        b = b + 2
        denominator = an * d + b
        ddenominator = dan * d + an * dd + db
        d = 1 / denominator
        dd = -ddenominator * d * d
        c_new = b + an / c
        dc = db + (dan * c - an * dc) / (c * c)
        c = c_new
        step = d * c
        dstep = dd * c + d * dc
        dh_new = dh * step + h * dstep
        dh_change, dh = (dh_new - dh).abs(), dh_new
        h = h * step
        done = done | (((step - 1).abs() <= _EPS) & (dh_change <= _EPS * (dh.abs() + h.abs())))
        if bool(done.all()):
            return h, dh
    raise runtime_error(
        f"the incomplete gamma continued fraction did not converge for a up to {a.max()}"
    )


def _gammainc_and_grad(a: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """P(a, x) and dP/da, elementwise, float64, off the tape (a > 0, x >= 0)."""
    use_series = x < a + 1
    safe_x = ops.where(x > 0, x, 1.0)
    log_x = ops.log(safe_x)
    p = ops.full_like(x, 0.0)
    dp = ops.full_like(x, 0.0)
    if bool(use_series.any()):
        a_s, x_s = a[use_series], safe_x[use_series]
        total, dtotal = _series(a_s, x_s)
        prefactor = ops.exp(a_s * log_x[use_series] - x_s - ops.lgamma(a_s + 1))
        p[use_series] = prefactor * total
        dp[use_series] = prefactor * (total * (log_x[use_series] - ops.digamma(a_s + 1))
                                      + dtotal)
    use_fraction = ~use_series
    if bool(use_fraction.any()):
        a_f, x_f = a[use_fraction], x[use_fraction]
        finite = ops.isfinite(x_f)
        x_cf = ops.where(finite, x_f, a_f + 2)
        h, dh = _continued_fraction(a_f, x_cf)
        log_xf = ops.log(x_cf)
        prefactor = ops.exp(a_f * log_xf - x_cf - ops.lgamma(a_f))
        q = prefactor * h
        dq = prefactor * (h * (log_xf - ops.digamma(a_f)) + dh)
        p[use_fraction] = ops.where(finite, 1 - q, 1.0)
        dp[use_fraction] = ops.where(finite, -dq, 0.0)
    zero = x == 0
    p, dp = ops.where(zero, 0.0, p), ops.where(zero, 0.0, dp)
    invalid = (a <= 0) | (x < 0) | ~(a == a) | ~(x == x)
    nan = float("nan")
    return ops.where(invalid, nan, p), ops.where(invalid, nan, dp)


class _GammaInc(Function):
    """P(a, x) with its first derivatives in a and x."""

    @staticmethod
    def forward(ctx, a: Tensor, x: Tensor) -> Tensor:
        shape = tuple(a.shape)
        a64, x64 = a.detach().to(float64).reshape(-1), x.detach().to(float64).reshape(-1)
        p, dp_da = _gammainc_and_grad(a64, x64)
        safe_x = ops.where(x64 > 0, x64, 1.0)
        density = ops.exp((a64 - 1) * ops.log(safe_x) - safe_x - ops.lgamma(a64))
        density = ops.where(x64 > 0, density, ops.where(a64 == 1, 1.0, 0.0))
        ctx.save_for_backward(a, x, dp_da.reshape(shape).to(a.dtype),
                              density.reshape(shape).to(x.dtype))
        return p.reshape(shape).to(a.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, x, dp_da, dp_dx = ctx.saved_tensors
        if grad_mode.state.enabled:  # create_graph: these derivatives must not be differentiated
            dp_da = _FirstDerivativeOnly.apply(a, x, dp_da, "gammainc")
            dp_dx = _FirstDerivativeOnly.apply(a, x, dp_dx, "gammainc")
        return grad * dp_da, grad * dp_dx


def gammainc(a: Tensor, x: Tensor) -> Tensor:
    """The regularized lower incomplete gamma function P(a, x), a and x broadcast together;
    differentiable in both (torch's gammainc has no derivative in a)."""
    a, x = ops.broadcast_tensors(a, x)
    return _GammaInc.apply(a.contiguous(), x.contiguous())


class _FirstDerivativeOnly(Function):
    """derivative, unchanged, as a function of the inputs it was computed from; differentiating
    it raises, so a second derivative is refused instead of coming out silently zero."""

    @staticmethod
    def forward(ctx, *args):
        *_, derivative, what = args
        ctx.what = what
        return derivative

    @staticmethod
    def backward(ctx, grad: Tensor):
        raise not_implemented_error(
            f"the second derivative of {ctx.what} is not implemented; as in torch, only first "
            "derivatives are available"
        )


def _marsaglia_tsang(concentration: Tensor) -> Tensor:
    """Standard-gamma draws (float64) for a flat float64 tensor of concentrations: Marsaglia
    and Tsang's squeeze-free rejection, each round redrawing only the rejected elements, with
    Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1."""
    boosted = concentration < 1
    a = ops.where(boosted, concentration + 1, concentration)
    d = a - 1 / 3
    c = 1 / ops.sqrt(9 * d)
    log_result = ops.full_like(a, 0.0)
    pending = arange(a.numel(), device=a.device)
    while pending.numel() > 0:
        dp, cp = d[pending], c[pending]
        z = randn(size=(pending.numel(),), dtype=float64, device=a.device)
        u = rand(size=(pending.numel(),), dtype=float64, device=a.device)
        v = (1 + cp * z) ** 3
        positive = v > 0
        log_v = ops.log(ops.where(positive, v, 1.0))
        accept = positive & (ops.log(u) < 0.5 * z * z + dp - dp * v + dp * log_v)
        log_result[pending[accept]] = (ops.log(dp) + log_v)[accept]
        pending = pending[~accept]
    n_boosted = int(boosted.sum())
    if n_boosted:
        u = rand(size=(n_boosted,), dtype=float64, device=a.device)
        log_result[boosted] = log_result[boosted] + ops.log(u) / concentration[boosted]
    return ops.exp(log_result)


def _standard_gamma_grad(concentration: Tensor, sample: Tensor) -> Tensor:
    """dx/da of a Gamma(a, 1) sample x at fixed CDF value: -(dP(a, x)/da) / p(x; a), float64.

    The density ratio is folded into each expansion's prefactor (x / a for the series, x for
    the continued fraction), so the gradient stays finite where p(x) underflows."""
    a, x = concentration, sample
    grad = ops.full_like(x, 0.0)
    use_series = x < a + 1
    if bool(use_series.any()):
        a_s, x_s = a[use_series], x[use_series]
        total, dtotal = _series(a_s, x_s)
        grad[use_series] = -(x_s / a_s) * (total * (ops.log(x_s) - ops.digamma(a_s + 1))
                                          + dtotal)
    use_fraction = ~use_series
    if bool(use_fraction.any()):
        a_f, x_f = a[use_fraction], x[use_fraction]
        h, dh = _continued_fraction(a_f, x_f)
        grad[use_fraction] = x_f * (h * (ops.log(x_f) - ops.digamma(a_f)) + dh)
    return grad


class _StandardGamma(Function):
    """A Gamma(concentration, 1) sample, differentiable in concentration by implicit
    reparameterization; NaN where the concentration is not positive (as torch)."""

    @staticmethod
    def forward(ctx, concentration: Tensor) -> Tensor:
        shape, dtype = tuple(concentration.shape), concentration.dtype
        a = concentration.detach().to(float64).reshape(-1)
        invalid = ~(a > 0)  # a rejection loop would never end for these
        a = ops.where(invalid, 1.0, a)
        x = _marsaglia_tsang(a).clamp(min=finfo(dtype).tiny)
        if ctx.needs_input_grad[0]:
            dx_da = ops.where(invalid, float("nan"), _standard_gamma_grad(a, x))
            ctx.save_for_backward(concentration, dx_da.reshape(shape).to(dtype))
        return ops.where(invalid, float("nan"), x).reshape(shape).to(dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        concentration, dx_da = ctx.saved_tensors
        if grad_mode.state.enabled:  # create_graph: dx_da must not be differentiated
            dx_da = _FirstDerivativeOnly.apply(concentration, dx_da, "Gamma.rsample")
        return grad * dx_da


def standard_gamma(concentration: Tensor) -> Tensor:
    """Gamma(concentration, 1) draws of concentration's shape, from ember's generator."""
    if concentration.numel() == 0:
        return full(tuple(concentration.shape), 0.0, dtype=concentration.dtype,
                    device=concentration.device)
    return _StandardGamma.apply(concentration.contiguous())
