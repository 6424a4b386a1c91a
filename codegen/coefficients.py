"""Polynomial fits shared by the inline math functions (llvm/mathlib.py) and the numpy kernels
that compute the same functions where no native kernel runs (runtime/kernels/special.py), so
both give the same results. Tables are keyed by the float width in bits (32 or 64); how the
fits were made is in mathlib's docstring. No llvmlite here: the numpy side needs none."""

from __future__ import annotations

# erf(a) = a + a*F(a^2) on a < 1.
ERF_NEAR = {
    32: (
        0.12837917,
        -0.37612626,
        0.11283579,
        -0.026853355,
        0.005187201,
        -0.0007998475,
        7.810084e-05,
    ),
    64: (
        0.12837916709551256,
        -0.37612638903183376,
        0.11283791670939435,
        -0.026866170642465423,
        0.005223977601465048,
        -0.0008548325729553169,
        0.00012055288149953772,
        -1.4924616565387992e-05,
        1.6446037472075479e-06,
        -1.6198498314837423e-07,
        1.3679263870362002e-08,
        -7.723646635993011e-10,
    ),
}
# erfc(a) = exp(-a^2) * g(a) on 1 <= a <= 4 (float32: g is a polynomial in a - 2.5) or
# 1 <= a <= 6 (float64: a polynomial in 1/(1 + a*5/16) - ERF_FAR_T0, which converges faster
# than one in a).
ERF_FAR = {
    32: (
        0.21080765,
        -0.07434233,
        0.024912369,
        -0.008137342,
        0.0023018727,
        -0.0006507714,
        0.00055698014,
        0.00023209173,
        0.00010816652,
    ),
    64: (
        0.20592300643061173,
        0.7390291560504999,
        1.1949815796965058,
        1.568464045919274,
        1.626132907333509,
        1.2497078042635188,
        0.5915217778772491,
        0.014644419848341595,
        -0.1976263746002946,
        -0.09850511077358164,
        0.07387637111052522,
        0.018059751945670742,
    ),
}
ERF_FAR_T0 = 0.5548654244306418
ERF_FAR_P = 0.3125
# Past these, erf rounds to 1.
ERF_SATURATE = {32: 4.0, 64: 6.0}
