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


class SPECIAL:
    """The constants of the special functions (erfc, erfinv, lgamma, digamma, trigamma), one
    set for the inline IR (llvm/mathlib.py) and the whole-array numpy forms
    (runtime/kernels/special.py), which compute the same things by the same steps."""

    SQRT_PI = 1.7724538509055160273
    TWO_OVER_SQRT_PI = 1.1283791670955125739
    HALF_LOG_2PI = 0.91893853320467274178
    LOG_PI = 1.1447298858494001741
    # erfc(a), a >= 1: erf's far polynomial (fitted for erf's absolute error) is within 5 ulp
    # of erfc up to ERFC_MID_FROM; from there to ERFC_FRACTION_FROM exp(-a^2) times ERFC_MID,
    # exp(a^2) erfc(a) as a polynomial in a - ERFC_MID_CENTER (mpmath's chebyfit, 19 terms,
    # 1.4e-19 absolute; within 3.6 ulp in double); past that exp(-a^2) / (sqrt(pi) K(a)),
    # K(a) = a + (1/2) / (a + 1 / (a + (3/2) / (a + ...))) to ERFC_TERMS terms (within 4 ulp
    # from 3 on, against mpmath)
    ERFC_MID_FROM = 1.5
    ERFC_MID_CENTER = 2.25
    ERFC_MID = (0.23108725873039188, -0.08848650280874916, 0.03199262741070626,
                -0.011002060756439735, 0.0036189953543580102, -0.0011437284836634967,
                0.00034853542204785887, -0.00010272108101899408, 2.9353247329964907e-05,
                -8.150284306867367e-06, 2.203022246197225e-06, -5.806286124148284e-07,
                1.4943175590236855e-07, -3.761448653298436e-08, 9.26421813251652e-09,
                -2.2142217950010853e-09, 5.244423079267356e-10, -1.4104897974664246e-10,
                3.2046329099911795e-11)
    ERFC_FRACTION_FROM = 3.0
    ERFC_TERMS = 30
    # erfinv: Giles, "Approximating the erfinv function" (GPU Computing Gems, 2010): single
    # precision polynomials in w = -log(1 - y^2) - 2.5 (w < 5) and sqrt(w) - 3 (w >= 5),
    # lowest order first; a Halley step makes them double precision up to w = 16
    ERFINV_CENTRAL = (1.50140941, 0.246640727, -0.00417768164, -0.00125372503,
                      0.00021858087, -4.39150654e-06, -3.5233877e-06, 3.43273939e-07,
                      2.81022636e-08)
    ERFINV_TAIL = (2.83297682, 1.00167406, 0.00943887047, -0.0076224613, 0.00573950773,
                   -0.00367342844, 0.00134934322, 0.000100950558, -0.000200214257)
    ERFINV_FAR_W = 16.0
    # lgamma: Lanczos' approximation, g = 7, 9 terms (Godfrey's coefficients), for z >= 1/2
    # below this |x| lgamma(x) is -log|x| to double precision (Gamma(x) = 1/x - euler + ...)
    LGAMMA_TINY = 2.0 ** -60
    LANCZOS_G = 7.0
    LANCZOS = (0.99999999999980993, 676.5203681218851, -1259.1392167224028,
               771.32342877765313, -176.61502916214059, 12.507343278686905,
               -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7)
    # digamma and trigamma raise their argument to SHIFT_TO (trigamma: SHIFT_TO + 2) by their
    # recurrences, then sum asymptotic series whose last kept terms are below 1e-17 there
    SHIFT_TO = 10.0
    # B_2k / (2k), k = 1..8: psi(x) ~ log x - 1/(2x) - sum B_2k / (2k x^2k)
    DIGAMMA_SERIES = (1.0 / 12, -1.0 / 120, 1.0 / 252, -1.0 / 240, 1.0 / 132, -691.0 / 32760,
                      1.0 / 12, -3617.0 / 8160)
    # B_2, B_4, ..., B_18
    BERNOULLI = (1.0 / 6, -1.0 / 30, 1.0 / 42, -1.0 / 30, 5.0 / 66, -691.0 / 2730, 7.0 / 6,
                 -3617.0 / 510, 43867.0 / 798)
