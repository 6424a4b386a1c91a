"""Extern kernels: matmul and linear, through the array module's BLAS."""

from __future__ import annotations

import numpy as np

from .. import blas, packed_gemm, pool_gemm
from ..native import data_pointer
from ..threads import before_blas
from . import random_ops  # noqa: F401  (registers bernoulli)
from .registry import KERNELS, kernel

# up to this many multiply-adds OpenBLAS runs a GEMM on the calling thread alone (its
# SMP_THRESHOLD_MIN x GEMM_MULTITHREAD_THRESHOLD, 65536 x 4), and ember's GEMMs refuse it (their
# MIN_WORK is 8x this): such a product goes straight to numpy, without the thread budget's
# setting (an (8, 16) @ (16, 16) with autograd took 6.4 us, 0.8 of them in those checks)
ONE_THREAD_WORK = 1 << 18


def _one_thread(rows_by_depth: int, columns: int) -> bool:
    """Whether a product of this size is one OpenBLAS runs on the calling thread alone."""
    return rows_by_depth * columns <= ONE_THREAD_WORK


def _product(xp, a, b):
    """a @ b; a stack of matrices times one matrix is one GEMM over the stacked rows. numpy
    runs (..., m, k) @ (k, n) as one small GEMM per matrix of the stack: a linear layer on
    (16, 64, 64) took 264 us that way and 62 us as (1024, 64) @ (64, 192)."""
    if xp is np and a.ndim == 2 and b.ndim == 2 and _one_thread(a.size, b.shape[1]):
        return np.matmul(a, b)
    if a.ndim > 2 and b.ndim == 2 and a.shape[-1] and a.size:
        lead = a.shape[:-1]
        return _product(xp, a.reshape(-1, a.shape[-1]), b).reshape(*lead, b.shape[-1])
    if xp is np and (a.ndim > 2 or b.ndim > 2):
        out = packed_gemm.batched(a, b)  # a stack of small products, None: numpy's matmul
        if out is not None:
            return out
    if xp is np:
        out = packed_gemm.product(a, b)  # ember's own GEMM, None: BLAS does as well
        if out is not None:
            return out
        out = pool_gemm.product(a, b)  # one BLAS call per pool thread, None: not shared
        if out is not None:
            return out
        before_blas()  # BLAS's threads from the one budget (runtime/threads.py)
    return xp.matmul(a, b)


@kernel("matmul")
def _matmul(xp, a, b):
    return _product(xp, a, b)


def matmul_with_column_sum(xp, a, b):
    """(a @ b, b.sum(0)) for matrices: one packed GEMM that sums B's columns as it packs
    them, where it takes the product; else the two kernels."""
    return _with_sum(xp, a, b, b, 0)


def matmul_with_row_sum(xp, a, b):
    """(a @ b, a.sum(1)) for matrices, a transposed (dY^T): one packed GEMM that sums A's
    rows as it copies them, where it takes the product; else the two kernels."""
    return _with_sum(xp, a, b, a, 1)


def _with_sum(xp, a, b, summed, dim):
    if xp is np and a.dtype in _BLAS_DTYPES and a.dtype == b.dtype:
        total = np.empty(summed.shape[1 - dim], a.dtype)
        sums = {"colsum": total} if dim == 0 else {"rowsum": total}
        product = packed_gemm.product(a, b, **sums)
        if product is not None:
            return product, total
    return KERNELS["matmul"](xp, a, b), KERNELS["sum"](xp, summed, (dim,), False)


@kernel("linear_backward_weight")
def _linear_backward_weight(xp, g, x):
    """(g^T @ x, g.sum(0)): the rows of A = g^T are g's columns (matmul_with_row_sum)."""
    return matmul_with_row_sum(xp, g.T, x)


_BLAS_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def _linear_with_bias(x, w, b):
    """x @ w.T + b without a pass of its own for the bias: ember's packed GEMM adds it as it
    stores its tiles; where that does not apply, one BLAS call adds the product onto the
    output filled with the broadcast bias (beta = 1). numpy's matmul makes OpenBLAS zero a
    fresh output first (beta = 0) and `out += b` reads and writes it once more: two passes
    over an output that, inside a training step, is rarely in cache. None where neither
    applies."""
    if (x.ndim < 2 or x.dtype != w.dtype or x.dtype != b.dtype or b.ndim != 1 or not x.size
            or not w.size):
        return None
    rows = x.reshape(-1, x.shape[-1])
    out = packed_gemm.product(rows, w.T, bias=b)  # the bias added as each tile is stored
    if out is not None:
        return out.reshape(*x.shape[:-1], w.shape[0])
    name = _BLAS_DTYPES.get(x.dtype)
    gemm = None if name is None else blas.cblas_gemm(name)
    if gemm is None:
        return None
    (m, k), n = rows.shape, w.shape[0]
    if max(m, n, k) >= 2 ** (blas.gemm().int_bits - 1):
        return None
    x_layout = blas.layout(rows)
    if x_layout is None:
        rows = np.ascontiguousarray(rows)
        x_layout = (blas.NO_TRANS, k)
    w_layout = blas.layout(w.T)
    if w_layout is None:
        w = np.ascontiguousarray(w)
        w_layout = blas.layout(w.T)
    out = np.empty((m, n), x.dtype)
    out[...] = b
    if pool_gemm.product(rows, w.T, onto=out) is not None:  # one BLAS call per pool thread
        return out.reshape(*x.shape[:-1], n)
    before_blas()
    gemm(blas.ROW_MAJOR, x_layout[0], w_layout[0], m, n, k, 1.0, data_pointer(rows),
         x_layout[1], data_pointer(w), w_layout[1], 1.0, data_pointer(out), n)
    return out.reshape(*x.shape[:-1], n)


@kernel("linear")
def _linear(xp, x, w, b=None):
    # (a product OpenBLAS runs on one thread is numpy's, with its bias added after: the one
    # BLAS call of _linear_with_bias costs more than it saves there)
    if b is not None and xp is np and not _one_thread(x.size, w.shape[0]):
        out = _linear_with_bias(x, w, b)
        if out is not None:
            return out
    # BLAS takes the transposed weight as a flag: no copy of w.T is made
    out = _product(xp, x, w.T)
    if b is not None:
        if out.ndim:
            out += b  # in place: the product is a fresh array
        else:
            out = out + b
    return out
