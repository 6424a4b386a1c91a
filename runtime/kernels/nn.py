"""Extern kernels: matmul and linear, through the array module's BLAS."""

from __future__ import annotations

from . import random_ops  # noqa: F401  (registers bernoulli)
from .registry import kernel


@kernel("matmul")
def _matmul(xp, a, b):
    return xp.matmul(a, b)


@kernel("linear")
def _linear(xp, x, w, b=None):
    # BLAS takes the transposed weight as a flag: no copy of w.T is made
    out = xp.matmul(x, w.T)
    if b is not None:
        if out.ndim:
            out += b  # in place: the product is a fresh array
        else:
            out = out + b
    return out
