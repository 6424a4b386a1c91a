"""Special functions as whole-array numpy: the eager kernels' path where the native ones
(runtime/windows.py) cannot run (llvmlite missing), and the float64 stragglers of erfinv's
native kernel. erf evaluates the polynomials the inline math functions use
(codegen/coefficients.py), in float64, so both paths stay within an ulp of math.erf; erfc,
erfinv, lgamma, digamma and polygamma follow the steps of their inline forms
(codegen/llvm/mathlib.py: the same constants, coefficients.SPECIAL), over blocks of the input
in float64, rounded once at the end. Never a Python call per element (a math.erf per element
took ~80 ms on 1M floats; this ~20 ms, the native kernel ~1 ms)."""

from __future__ import annotations

import math

import numpy as np

from ...codegen.coefficients import (
    ERF_FAR,
    ERF_FAR_P,
    ERF_FAR_T0,
    ERF_NEAR,
    ERF_SATURATE,
    SPECIAL,
)

_SQRT_PI, _TWO_OVER_SQRT_PI = SPECIAL.SQRT_PI, SPECIAL.TWO_OVER_SQRT_PI
_ERFINV_CENTRAL, _ERFINV_TAIL = SPECIAL.ERFINV_CENTRAL, SPECIAL.ERFINV_TAIL
_LANCZOS, _LANCZOS_G = SPECIAL.LANCZOS, SPECIAL.LANCZOS_G
_HALF_LOG_2PI, _LOG_PI = SPECIAL.HALF_LOG_2PI, SPECIAL.LOG_PI
_SHIFT_TO, _DIGAMMA_SERIES, _BERNOULLI = (SPECIAL.SHIFT_TO, SPECIAL.DIGAMMA_SERIES,
                                          SPECIAL.BERNOULLI)
# erfinv's lanes past w = -log(1 - y^2) of this are refined by Newton steps on log erfc, as
# many as this
_ERFINV_FAR_W = SPECIAL.ERFINV_FAR_W
_LOG_NEWTON_STEPS = 4
_LGAMMA_TINY = SPECIAL.LGAMMA_TINY

# Veltkamp's splitter for float64: a = hi + lo with 26-bit halves, whose products are exact
_SPLIT = float(2**27 + 1)


def _horner(t: np.ndarray, coeffs) -> np.ndarray:
    """coeffs[0] + coeffs[1]*t + ... by Horner's rule, in place on one accumulator."""
    acc = np.full_like(t, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc *= t
        acc += c
    return acc


def _square_error(a: np.ndarray, square: np.ndarray) -> np.ndarray:
    """a*a - square exactly (square = a*a rounded): the fma(a, a, -square) of mathlib, by
    Dekker's product of Veltkamp halves (exact while a*_SPLIT does not overflow)."""
    p = a * _SPLIT
    hi = p - (p - a)
    lo = a - hi
    return ((hi * hi - square) + 2.0 * hi * lo) + lo * lo


# erf works through its input in blocks of this many elements, so that its ~60 passes over
# temporaries stay in the cache (one 1M-element pass each from memory took twice as long)
_BLOCK = 1 << 16


def erf(x: np.ndarray) -> np.ndarray:
    """erf(x) elementwise, in x's dtype, for a float array of any layout: mathlib's erf for
    x's width (float32's shorter polynomials for float32 and narrower), computed in float64."""
    width = 64 if x.dtype.itemsize >= 8 else 32
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    out = np.empty(flat.shape, np.float64)
    with np.errstate(all="ignore"):
        for start in range(0, flat.size, _BLOCK):
            stop = start + _BLOCK
            out[start:stop] = _erf_block(flat[start:stop], width)
    return out.reshape(x.shape).astype(x.dtype, copy=False)


def _erf_block(x: np.ndarray, width: int) -> np.ndarray:
    """mathlib's erf on float64 values: a + a*F(a^2) below 1; above, 1 - exp(-a^2) * g(a)
    with g a polynomial in a - 2.5 (float32's) or in 1 / (1 + a*5/16) (float64's)."""
    a = np.abs(x)
    near = _erf_near(a, width)
    # NaN stays NaN; +inf saturates to erf = 1
    far = _erfc_far(np.minimum(a, ERF_SATURATE[width]), width)
    np.subtract(1.0, far, out=far)
    out = np.where(a < 1.0, near, far)
    np.copysign(out, x, out=out)
    return np.where(np.isnan(x), x, out)


def _erf_near(a: np.ndarray, width: int = 64) -> np.ndarray:
    """erf(a) for 0 <= a < 1: a + a*F(a^2)."""
    near = a * _horner(a * a, ERF_NEAR[width])
    near += a
    return near


def _erfc_far(c: np.ndarray, width: int = 64) -> np.ndarray:
    """erfc(c) for 1 <= c <= ERF_SATURATE: exp(-c^2) * g(c), g erf's far polynomial in
    c - 2.5 (float32's) or in 1 / (1 + c*5/16) (float64's)."""
    square = c * c
    if width == 32:
        g = _horner(c - 2.5, ERF_FAR[32])  # c is a float32: c*c is exact in float64
    else:
        t = c * ERF_FAR_P
        t += 1.0
        np.reciprocal(t, out=t)
        t -= ERF_FAR_T0
        g = _horner(t, ERF_FAR[64])
        g -= g * _square_error(c, square)  # exp(-(square + lo)) = exp(-square) * (1 - lo)
    np.negative(square, out=square)
    far = np.exp(square)
    far *= g
    return far


def _blocked(fn, x: np.ndarray, *args) -> np.ndarray:
    """fn over x's values in float64, _BLOCK at a time (its passes over temporaries stay in
    the cache), rounded once to x's dtype at the end."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    out = np.empty(flat.shape, np.float64)
    with np.errstate(all="ignore"):
        for start in range(0, flat.size, _BLOCK):
            stop = start + _BLOCK
            out[start:stop] = fn(flat[start:stop], *args)
    return out.reshape(x.shape).astype(x.dtype, copy=False)


def erfc(x: np.ndarray) -> np.ndarray:
    """erfc(x) = 1 - erf(x) elementwise without the cancellation: 1 - erf(x) where |x| < 1,
    exp(-x^2) times erf's far polynomial up to 1.5 and times a fit of exp(x^2) erfc(x) up to
    3, a continued fraction past that (down to the smallest subnormal near 27), and
    2 - erfc(-x) for negative x (codegen/coefficients.py SPECIAL)."""
    return _blocked(_erfc_block, x)


def _exp_of_minus_square(a: np.ndarray) -> np.ndarray:
    """exp(-a^2) with a^2 = hi + lo exactly: exp(-hi) * (1 - lo)."""
    square = a * a
    return np.exp(-square) * (1.0 - _square_error(a, square))


def _erfc_fraction(a: np.ndarray) -> np.ndarray:
    """erfc(a) for a >= SPECIAL.ERFC_FRACTION_FROM by the continued fraction."""
    d = np.minimum(a, 30.0)  # erfc(27.3) already rounds to 0
    k = d.copy()
    for n in range(SPECIAL.ERFC_TERMS, 0, -1):
        k = d + (0.5 * n) / k
    return _exp_of_minus_square(d) / (_SQRT_PI * k)


def _erfc_block(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    # |x| < 1: erfc in (0.157, 1.843), no cancellation
    near = 1.0 - np.copysign(_erf_near(a), x)
    low = _erfc_far(np.clip(a, 1.0, SPECIAL.ERFC_MID_FROM))
    m = np.clip(a, SPECIAL.ERFC_MID_FROM, SPECIAL.ERFC_FRACTION_FROM)
    mid = _exp_of_minus_square(m) * _horner(m - SPECIAL.ERFC_MID_CENTER, SPECIAL.ERFC_MID)
    value = np.where(a < SPECIAL.ERFC_MID_FROM, low, mid)
    out = np.where(a < 1.0, near, np.where(x < 0, 2.0 - value, value))
    far = np.nonzero(a >= SPECIAL.ERFC_FRACTION_FROM)[0]  # the fraction's passes, only here
    if far.size:
        value = _erfc_fraction(a[far])
        out[far] = np.where(x[far] < 0, 2.0 - value, value)
    return np.where(np.isnan(x), x, out)


def erfinv(y: np.ndarray) -> np.ndarray:
    """erfinv(y) elementwise: x with erf(x) = y on (-1, 1), +-inf at +-1, NaN outside. Giles'
    polynomials give ~1e-7, and one Halley step on erf(x) - y (erfc(x) - (1 - |y|) where
    |y| > 1/2, whose 1 - |y| is exact) makes it double precision."""
    return _blocked(_erfinv_block, y)


def _erfinv_block(y: np.ndarray) -> np.ndarray:
    a = np.abs(y)
    w = -np.log((1.0 - a) * (1.0 + a))
    x = _horner(w - 2.5, _ERFINV_CENTRAL)
    tail = np.nonzero(w >= 5.0)[0]
    if tail.size:
        x[tail] = _horner(np.sqrt(w[tail]) - 3.0, _ERFINV_TAIL)
    x *= a  # erfinv(|y|) to ~1e-7
    x = np.where(np.isfinite(x), x, 0.0)
    # Halley on f(x) = erf(x) - a = -(erfc(x) - q): f'(x) = 2/sqrt(pi) exp(-x^2), f'' = -2x f'
    x = _halley(x, a)
    # past float32's range (w >= 16) Giles' tail is off by up to ~10%: there, from the
    # asymptotic erfc(x) ~ exp(-x^2) / (x sqrt(pi)), Newton steps on log erfc(x) = log q
    far = np.nonzero((w >= _ERFINV_FAR_W) & (a < 1.0))[0]
    if far.size:
        log_q = np.log1p(-a[far])
        big = -log_q
        x_far = np.sqrt(big - 0.5 * np.log(np.pi * big))
        for _ in range(_LOG_NEWTON_STEPS):
            tail = _erfc_block(x_far)
            x_far = x_far + (np.log(tail) - log_q) * tail / (
                _TWO_OVER_SQRT_PI * np.exp(-x_far * x_far))
        x[far] = x_far
    x = np.where(a == 1.0, np.inf, x)
    x = np.where(a > 1.0, np.nan, x)
    return np.copysign(x, y)


def _halley(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """One Halley step towards erf(x) = a: f = erf(x) - a, or -(erfc(x) - (1 - a)) where
    a > 1/2 (1 - a exact there); f' = 2/sqrt(pi) exp(-x^2), f'' = -2x f'. Where a <= 1/2,
    x <= erfinv(1/2) < 0.48: erf's near polynomial alone."""
    residual = np.empty_like(x)
    central = a <= 0.5
    inner, outer = np.nonzero(central)[0], np.nonzero(~central)[0]
    if inner.size:  # each side's function on its own values only
        residual[inner] = _erf_near(x[inner]) - a[inner]
    if outer.size:
        residual[outer] = (1.0 - a[outer]) - _erfc_block(x[outer])
    step = residual / (_TWO_OVER_SQRT_PI * np.exp(-x * x))
    return x - step / (1.0 + x * step)


def lgamma(x: np.ndarray) -> np.ndarray:
    """log|Gamma(x)| elementwise: Lanczos' sum for x >= 1/2, the reflection
    log(pi / |sin(pi x)|) - lgamma(1 - x) below (sin taken of x less its nearest integer,
    so large negative x keep their bits); +inf at the poles 0, -1, -2, ... and at +-inf.
    Relative error ~1e-15, absolute near the zeros at 1 and 2."""
    return _blocked(_lgamma_block, x)


def _lanczos_log_gamma(z: np.ndarray) -> np.ndarray:
    """lgamma(z) for z >= 1/2."""
    s = z - 1.0
    total = np.full_like(s, _LANCZOS[0])
    for i, c in enumerate(_LANCZOS[1:], start=1):
        total += c / (s + i)
    t = s + (_LANCZOS_G + 0.5)
    return _HALF_LOG_2PI + (s + 0.5) * np.log(t) - t + np.log(total)


def _lgamma_block(x: np.ndarray) -> np.ndarray:
    reflected = x < 0.5
    out = _lanczos_log_gamma(np.where(reflected, 1.0 - x, x))  # NaN stays NaN
    mirror = np.nonzero(reflected)[0]  # the reflection's sin and log on its values only
    if mirror.size:
        v = x[mirror]
        sine = np.abs(np.sin(np.pi * (v - np.round(v))))
        out[mirror] = _LOG_PI - np.log(sine) - out[mirror]
    # below 2^-60 lgamma(x) = -log|x| to double precision (the reflection's sin(pi x) of a
    # subnormal x has lost its digits)
    tiny = np.nonzero(np.abs(x) < _LGAMMA_TINY)[0]
    if tiny.size:
        out[tiny] = -np.log(np.abs(x[tiny]))
    out[np.isinf(x)] = np.inf
    return out


def digamma(x: np.ndarray) -> np.ndarray:
    """psi(x) = d/dx lgamma(x) elementwise: x raised to 10 by psi(x) = psi(x + 1) - 1/x, then
    the asymptotic series; psi(x) = psi(1 - x) - pi / tan(pi x) below 1/2. -inf at +0 and
    +inf at -0 (PyTorch's, the limits from either side), NaN at the negative integers and
    -inf, +inf at +inf."""
    return _blocked(_digamma_block, x)


def _digamma_positive(z: np.ndarray) -> np.ndarray:
    """psi(z) for z >= 1/2: below 10, psi(z + 10) - sum_{j<10} 1/(z + j), the sum as one
    quotient (the derivative of prod (z + j) over the product: two multiply-adds a term, one
    division, where ten divisions took over half a Python call per element)."""
    steps = int(_SHIFT_TO)
    low = z < _SHIFT_TO
    product = np.ones_like(z)
    derivative = np.zeros_like(z)
    for j in range(steps):
        term = z + j
        derivative *= term
        derivative += product
        product *= term
    shifted = np.where(low, z + steps, z)
    inv2 = 1.0 / (shifted * shifted)
    series = _horner(inv2, _DIGAMMA_SERIES) * inv2
    out = np.log(shifted) - 0.5 / shifted - series
    out -= np.where(low, derivative / product, 0.0)
    return out


def _digamma_block(x: np.ndarray) -> np.ndarray:
    reflected = x < 0.5
    z = np.where(reflected, 1.0 - x, x)
    z = np.where(np.isinf(z), 1.0, z)
    direct = _digamma_positive(z)
    r = x - np.round(x)
    out = np.where(reflected, direct - np.pi / np.tan(np.pi * r), direct)
    out = np.where((r == 0) & (x <= 0), np.nan, out)  # poles
    out = np.where(x == 0, np.where(np.signbit(x), np.inf, -np.inf), out)  # PyTorch's
    out = np.where(x == np.inf, np.inf, out)
    out = np.where(x == -np.inf, np.nan, out)
    return np.where(np.isnan(x), x, out)


def polygamma(n: int, x: np.ndarray) -> np.ndarray:
    """The n-th derivative of digamma, n >= 0, elementwise: (-1)^(n+1) n! zeta(n + 1, x),
    the Hurwitz zeta summed term by term while x + k < 10 + n, then by its asymptotic series;
    trigamma (n = 1) reflects negative x (psi1(x) = pi^2 / sin^2(pi x) - psi1(1 - x)), higher
    orders sum their terms from x up. +inf at the poles for odd n, NaN for even n (PyTorch's)."""
    if n == 0:
        return digamma(x)
    return _blocked(_polygamma_block, x, n)


def _hurwitz_zeta(s: int, q: np.ndarray) -> np.ndarray:
    """zeta(s, q) = sum over k >= 0 of 1 / (q + k)^s, for integer s >= 2 and q not a pole:
    the values below 10 + s take their first terms in turn (the same count for all of them,
    no masks: any count is exact), then the asymptotic series of the rest."""
    start = _SHIFT_TO + s
    total = np.zeros_like(q)
    a = q.copy()
    below = np.nonzero(q < start)[0]
    if below.size:
        head = q[below]
        partial = np.zeros_like(head)
        term = np.empty_like(head)
        for _ in range(int(np.ceil(start - head.min()))):  # in place: 4 passes a term
            np.power(head, s, out=term) if s > 2 else np.multiply(head, head, out=term)
            np.reciprocal(term, out=term)
            partial += term
            head += 1.0
        total[below] = partial
        a[below] = head
    # a^(1-s)/(s-1) + a^-s/2 + sum_j B_2j/(2j)! s(s+1)...(s+2j-2) a^(-s-2j+1), the sum by
    # Horner's rule in 1/a^2
    inv = 1.0 / a
    coefficients, rising, factorial = [], float(s), 2.0
    for j, b in enumerate(_BERNOULLI, start=1):
        coefficients.append(b / factorial * rising)
        rising *= (s + 2 * j - 1) * (s + 2 * j)
        factorial *= (2 * j + 1) * (2 * j + 2)
    inv2 = inv * inv
    series = _horner(inv2, coefficients)
    series *= inv
    series += 0.5
    series *= inv
    series += 1.0 / (s - 1)
    series *= inv ** (s - 1)
    return total + series


def _polygamma_block(x: np.ndarray, n: int) -> np.ndarray:
    sign = 1.0 if n % 2 else -1.0
    scale = sign * math.factorial(n)
    finite = np.where(np.isfinite(x), x, 1.0)
    r = finite - np.round(finite)
    pole = (r == 0) & (finite <= 0)
    q = np.where(pole, 1.0, finite)
    if n == 1:  # trigamma: the reflection keeps negative x short
        reflected = q < 0.5
        z = np.where(reflected, 1.0 - q, q)
        direct = _hurwitz_zeta(2, z)
        sine = np.sin(np.pi * np.where(reflected, r, 0.5))
        out = np.where(reflected, (np.pi * np.pi) / (sine * sine) - direct, direct)
    else:
        out = scale * _hurwitz_zeta(n + 1, q)
    out = np.where(pole, np.inf if n % 2 else np.nan, out)
    out = np.where(x == np.inf, 0.0, out)
    out = np.where(x == -np.inf, np.nan, out)
    return np.where(np.isnan(x), x, out)
