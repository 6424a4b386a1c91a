"""Special functions as whole-array numpy: the eager kernels' path where the native ones
(runtime/windows.py) cannot run (llvmlite missing). They evaluate the polynomials the inline
math functions use (codegen/coefficients.py), in float64, so both paths stay within an ulp
of math.erf; narrower inputs are rounded once at the end. Never a Python call per element (a
math.erf per element took ~80 ms on 1M floats; this ~20 ms, the native kernel ~1 ms)."""

from __future__ import annotations

import numpy as np

from ...codegen.coefficients import ERF_FAR, ERF_FAR_P, ERF_FAR_T0, ERF_NEAR, ERF_SATURATE

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
    near = a * _horner(a * a, ERF_NEAR[width])
    near += a
    c = np.minimum(a, ERF_SATURATE[width])  # NaN stays NaN; +inf saturates to erf = 1
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
    np.subtract(1.0, far, out=far)
    out = np.where(a < 1.0, near, far)
    np.copysign(out, x, out=out)
    return np.where(np.isnan(x), x, out)
