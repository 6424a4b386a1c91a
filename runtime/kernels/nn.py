"""Extern kernels: matmul and linear, through the array module's BLAS."""

from __future__ import annotations

import numpy as np

from .. import pool_gemm
from ..threads import before_blas
from . import random_ops  # noqa: F401  (registers bernoulli)
from .registry import kernel


def _product(xp, a, b):
    """a @ b; a stack of matrices times one matrix is one GEMM over the stacked rows. numpy
    runs (..., m, k) @ (k, n) as one small GEMM per matrix of the stack: a linear layer on
    (16, 64, 64) took 264 us that way and 62 us as (1024, 64) @ (64, 192)."""
    if a.ndim > 2 and b.ndim == 2 and a.shape[-1] and a.size:
        lead = a.shape[:-1]
        return _product(xp, a.reshape(-1, a.shape[-1]), b).reshape(*lead, b.shape[-1])
    if xp is np:
        out = pool_gemm.product(a, b)  # one BLAS call per pool thread, None: not shared
        if out is not None:
            return out
        before_blas()  # BLAS's threads from the one budget (runtime/threads.py)
    return xp.matmul(a, b)


@kernel("matmul")
def _matmul(xp, a, b):
    return _product(xp, a, b)


@kernel("linear")
def _linear(xp, x, w, b=None):
    # BLAS takes the transposed weight as a flag: no copy of w.T is made
    out = _product(xp, x, w.T)
    if b is not None:
        if out.ndim:
            out += b  # in place: the product is a fresh array
        else:
            out = out + b
    return out
