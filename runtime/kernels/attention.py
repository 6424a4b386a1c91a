"""Fused attention: softmax(q @ k^T * scale + mask) @ v, blocked over the keys.

The forward walks the keys a block at a time with an online softmax (a running max and sum
per query row, FlashAttention's recurrence), so at most one (..., L, BLOCK) block of scores
exists at a time; it also returns each row's logsumexp, from which the backward recomputes a
block's probabilities (FlashAttention-2: D = rowsum(grad_out * out), dS = P * (dP - D)).
The leading (batch, head) dims go to the array module's batched matmul in one call per block:
no Python loop over them. Under causal masking query i attends keys 0..i (top-left aligned,
as PyTorch), so a key block starting at j0 meets only the rows from j0 on: the rows above it
are skipped, and only the block on the diagonal needs its triangle masked.

On numpy, float32 and float64 operands run on the native kernels instead
(native_attention.py: codegen/llvm/attention.py's tasks on the native pool, masks and
dropout included); the numpy code here serves the other cases (cupy, half precision, empty
dims, rows of keys past the native kernels' stack scratch) and is their reference in tests.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import threads
from ..threads import before_blas
from . import native_attention
from .registry import kernel

# float32/float64 numpy arrays run on the native kernels (native_attention.py) where they
# apply; this module's numpy code is their reference, and tests turn this off to check it
NATIVE = True
BLOCK = 128  # keys per block: a (B*H, L, 128) float32 block of scores at L=1024, B*H=32 is 16 MB


def _compute_dtype(dtype):
    # half precision computes in float32, as the row statistics are kept
    return np.float64 if dtype == np.float64 else np.float32


def _batch_shape(*arrays) -> tuple:
    return np.broadcast_shapes(*(a.shape[:-2] for a in arrays))


def _rows_cols(m, r0, j0, j1):
    """The part of a (..., L or 1, S or 1) mask over rows r0: and keys j0:j1."""
    rows = slice(r0, None) if m.shape[-2] != 1 else slice(None)
    cols = slice(j0, j1) if m.shape[-1] != 1 else slice(None)
    return m[..., rows, cols]


class _Blocks:
    """The masked, scaled scores of each key block, shared by the forward and the backward."""

    def __init__(self, xp, q, k, attn_mask, causal, scale, ct):
        self.xp, self.k, self.causal, self.ct = xp, k, causal, ct
        self.mask = attn_mask
        self.length, self.source = q.shape[-2], k.shape[-2]
        if scale is None:
            scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
        self.scale = scale
        # the scale goes on the queries (L x E numbers), broadcast to the full batch so that
        # each block of scores has it and can be updated in place
        self.qs = q * ct(scale)

    def spans(self):
        """(r0, j0, j1) of each key block with rows that attend it: rows r0: and keys j0:j1."""
        for j0 in range(0, self.source, BLOCK):
            r0 = j0 if self.causal else 0
            if r0 >= self.length:
                return
            yield r0, j0, min(j0 + BLOCK, self.source)

    def scores(self, qs_rows, r0, j0, j1):
        """The block's scores, masked (-inf where a key is not attended), in a fresh array."""
        xp = self.xp
        s = xp.matmul(qs_rows, self.k[..., j0:j1, :].swapaxes(-1, -2))
        if self.causal:
            diagonal = min(j1 - j0, self.length - r0)  # the rows of the block's triangle
            s[..., :diagonal, :] += self.triangle()[:diagonal, : j1 - j0]
        m = self.mask
        if m is not None:
            part = _rows_cols(m, r0, j0, j1)
            if m.dtype == np.bool_:
                s = xp.where(part, s, self.ct(-np.inf))
            elif np.broadcast_shapes(s.shape, part.shape) == s.shape:
                s += part
            else:
                s = s + part
        return s

    def triangle(self):
        """-inf above the diagonal of a (BLOCK, BLOCK) block, 0 elsewhere."""
        xp = self.xp
        device = -1 if xp is np else xp.cuda.runtime.getDevice()
        key = (xp.__name__, device, self.ct, BLOCK)
        found = _TRIANGLES.get(key)
        if found is None:
            above = xp.triu(xp.ones((BLOCK, BLOCK), dtype=bool), 1)
            found = _TRIANGLES[key] = xp.where(above, self.ct(-np.inf), self.ct(0))
        return found


_TRIANGLES: dict = {}  # (array module, device, dtype, block) -> the causal block's additive mask


def _masks(rest, mask, dropout_p):
    rest = list(rest)
    attn_mask = rest.pop(0) if mask else None
    keep = rest.pop(0) if dropout_p > 0 else None
    return attn_mask, keep


def _kept(xp, p, keep, r0, j0, j1, dropout_p, ct):
    """p with the block's dropped weights zeroed and the kept ones scaled by 1 / (1 - p)."""
    if keep is None:
        return p
    return p * (_rows_cols(keep, r0, j0, j1).astype(ct, copy=False) * ct(1.0 / (1 - dropout_p)))


def _row_max(xp, s):
    # argmax and a gather: about 3x faster than numpy's max over short rows (64 to 128 keys);
    # the same value, NaN included
    return xp.take_along_axis(s, s.argmax(-1)[..., None], -1)[..., 0]


@kernel("attention")
def _attention(xp, q, k, v, *rest, scale, causal, mask, dropout_p):
    attn_mask, keep = _masks(rest, mask, dropout_p)
    if xp is np and NATIVE:
        found = native_attention.forward(q, k, v, attn_mask, keep, scale, causal, dropout_p)
        if found is not None:
            return found
    dtype, ct = q.dtype, _compute_dtype(q.dtype)
    if xp is np:
        before_blas()
    q, k, v = (a.astype(ct, copy=False) for a in (q, k, v))
    if attn_mask is not None and attn_mask.dtype != np.bool_:
        attn_mask = attn_mask.astype(ct, copy=False)
    batch = _batch_shape(q, k, v, *(m for m in (attn_mask, keep) if m is not None))
    length = q.shape[-2]
    q = xp.broadcast_to(q, batch + q.shape[-2:])
    blocks = _Blocks(xp, q, k, attn_mask, causal, scale, ct)
    if _one_block(blocks, attn_mask, keep):
        out, lse = _by_halves(xp, lambda qs, k, v: _attention_one_block(xp, blocks, qs, k, v),
                              (blocks.qs, k, v), batch, blocks)
        return out.astype(dtype, copy=False), lse
    acc = xp.zeros(batch + (length, v.shape[-1]), dtype=ct)
    row_max = xp.full(batch + (length,), -np.inf, dtype=ct)
    row_sum = xp.zeros(batch + (length,), dtype=ct)
    for r0, j0, j1 in blocks.spans():
        s = blocks.scores(blocks.qs[..., r0:, :], r0, j0, j1)
        first = j0 == 0  # no key seen yet: nothing to rescale
        new_max = _row_max(xp, s) if first else xp.maximum(row_max[..., r0:], _row_max(xp, s))
        # without a mask every row attends a key of the first block (causal: key 0); with
        # one, a row that attends no key yet keeps -inf as its max: exp against 0 gives 0
        ref = new_max if attn_mask is None else xp.where(new_max == -np.inf, ct(0), new_max)
        s -= ref[..., None]
        p = xp.exp(s, out=s)
        values = xp.matmul(_kept(xp, p, keep, r0, j0, j1, dropout_p, ct), v[..., j0:j1, :])
        if first:
            row_sum[...] = p.sum(-1)
            acc[...] = values
        else:
            rescale = xp.exp(row_max[..., r0:] - ref)
            row_sum[..., r0:] = row_sum[..., r0:] * rescale + p.sum(-1)
            rows = acc[..., r0:, :]
            rows *= rescale[..., None]
            rows += values
        row_max[..., r0:] = new_max
        del s, p, values  # before the next block's scores: one block at a time
    if attn_mask is None and k.shape[-2]:
        acc /= row_sum[..., None]
        lse = row_max + xp.log(row_sum)
    else:
        # rows that attend no key: zeros (acc is 0 there), and logsumexp -inf
        attended = row_sum > 0
        acc /= xp.where(attended, row_sum, ct(1))[..., None]
        lse = xp.where(attended, row_max + xp.log(xp.where(attended, row_sum, ct(1))),
                       ct(-np.inf))
    return acc.astype(dtype, copy=False), lse


def _sum_to(a, shape):
    """a summed over the leading dims that broadcasting added and the dims where shape is 1."""
    lead = a.ndim - len(shape)
    if lead:
        a = a.sum(tuple(range(lead)))
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, a.shape)) if n == 1 and m != 1)
    return a.sum(axes, keepdims=True) if axes else a


@kernel("attention_backward")
def _attention_backward(xp, q, k, v, out, lse, grad_out, grad_lse, *rest, scale, causal, mask,
                        dropout_p):
    attn_mask, keep = _masks(rest, mask, dropout_p)
    dtypes = (q.dtype, k.dtype, v.dtype)
    shapes = (q.shape, k.shape, v.shape)
    if xp is np and NATIVE:
        found = native_attention.backward(q, k, v, out, lse, grad_out, grad_lse, attn_mask,
                                          keep, scale, causal, dropout_p)
        if found is not None:
            return tuple(_sum_to(g, shape).astype(dtype, copy=False)
                         for g, shape, dtype in zip(found, shapes, dtypes))
    ct = _compute_dtype(q.dtype)
    if xp is np:
        before_blas()
    q, k, v, out, grad_out = (a.astype(ct, copy=False) for a in (q, k, v, out, grad_out))
    if attn_mask is not None and attn_mask.dtype != np.bool_:
        attn_mask = attn_mask.astype(ct, copy=False)
    batch = out.shape[:-2]
    length, source = q.shape[-2], k.shape[-2]
    q = xp.broadcast_to(q, batch + q.shape[-2:])
    grad_out = xp.broadcast_to(grad_out, out.shape)
    blocks = _Blocks(xp, q, k, attn_mask, causal, scale, ct)
    # the gradient of the logsumexp output adds P * grad_lse to dS: the same as taking it
    # off D (a dot product per row: einsum, ~4x numpy's sum over rows of 32 to 128)
    delta = xp.einsum("...i,...i->...", grad_out, out) - grad_lse.astype(ct, copy=False)
    if _one_block(blocks, attn_mask, keep):
        grads = _by_halves(
            xp, lambda *arrays: _attention_backward_one_block(xp, blocks, *arrays),
            (blocks.qs, k, v, grad_out, lse, delta), batch, blocks)
        return tuple(_sum_to(g, shape).astype(dtype, copy=False)
                     for g, shape, dtype in zip(grads, shapes, dtypes))
    # a row that attends no key (lse -inf) has P = exp(s - inf) = 0, never nan
    lse = lse.astype(ct, copy=False)
    if attn_mask is not None:
        lse = xp.where(lse == -np.inf, ct(np.inf), lse)
    dqs = xp.zeros(batch + (length, q.shape[-1]), dtype=ct)
    dk = xp.zeros(batch + (source, k.shape[-1]), dtype=ct)
    dv = xp.zeros(batch + (source, v.shape[-1]), dtype=ct)
    for r0, j0, j1 in blocks.spans():
        qs = blocks.qs[..., r0:, :]
        g = grad_out[..., r0:, :]
        s = blocks.scores(qs, r0, j0, j1)
        s -= lse[..., r0:, None]
        p = xp.exp(s, out=s)
        dropped = _kept(xp, p, keep, r0, j0, j1, dropout_p, ct)
        dv[..., j0:j1, :] = xp.matmul(dropped.swapaxes(-1, -2), g)
        dp = xp.matmul(g, v[..., j0:j1, :].swapaxes(-1, -2))
        if keep is not None:
            dp = _kept(xp, dp, keep, r0, j0, j1, dropout_p, ct)
        dp -= delta[..., r0:, None]
        ds = xp.multiply(p, dp, out=dp)
        dqs[..., r0:, :] += xp.matmul(ds, k[..., j0:j1, :])
        dk[..., j0:j1, :] = xp.matmul(ds.swapaxes(-1, -2), qs)
        del s, p, dropped, dp, ds  # before the next block's scores
    dqs *= ct(blocks.scale)
    return tuple(_sum_to(g, shape).astype(dtype, copy=False)
                 for g, shape, dtype in zip((dqs, dk, dv), shapes, dtypes))


# -- one block of keys: no running max, no rescaling, no accumulators --------------------------

# scores per call from which the two halves of the batch run on two threads (numpy drops the
# GIL in its products and ufuncs); below it the second thread's start costs more than it saves
SPLIT_MIN_SCORES = 1 << 16


def _one_block(blocks: _Blocks, attn_mask, keep) -> bool:
    """Whether the keys fit one block and nothing is masked beyond causality: then the scores
    are one product, their softmax one pass, and the blocked recurrence only costs copies
    (the GPT of benchmarks/models.py: 64 keys per head, about 2x faster fwd + bwd)."""
    return (attn_mask is None and keep is None and 0 < blocks.source <= BLOCK
            and blocks.length > 0)


def _transposed(xp, a):
    """a's last two dims swapped, contiguous: numpy's batched product with a contiguous right
    operand ran 61 us against 82 us through the transposed view, the copy included
    ((32, 64, 32) @ (32, 32, 64) float32)."""
    return xp.ascontiguousarray(a.swapaxes(-1, -2))


def _one_block_scores(xp, blocks: _Blocks, qs, k):
    s = xp.matmul(qs, _transposed(xp, k))
    if blocks.causal:
        diagonal = min(blocks.source, blocks.length)
        s[..., :diagonal, :] += blocks.triangle()[:diagonal, : blocks.source]
    return s


def _attention_one_block(xp, blocks: _Blocks, qs, k, v):
    """(softmax(scores) @ v, logsumexp of each row) of a single block of keys."""
    s = _one_block_scores(xp, blocks, qs, k)
    # every row attends key 0 (causal or not): its max is finite
    row_max = _row_max(xp, s)
    s -= row_max[..., None]
    p = xp.exp(s, out=s)
    # the row sums as a product with ones: a GEMV, ~5x numpy's sum over rows this short
    row_sum = xp.matmul(p, xp.ones(p.shape[-1], dtype=p.dtype))
    out = xp.matmul(p, v)
    out /= row_sum[..., None]
    return out, row_max + xp.log(row_sum)


def _attention_backward_one_block(xp, blocks: _Blocks, qs, k, v, grad_out, lse, delta):
    """(dq, dk, dv) of a single block of keys, over the broadcast batch (summed by the
    caller): P recomputed from the logsumexp, dS = P * (dP - D)."""
    ct = blocks.ct
    s = _one_block_scores(xp, blocks, qs, k)
    s -= lse.astype(ct, copy=False)[..., None]
    p = xp.exp(s, out=s)
    dv = xp.matmul(p.swapaxes(-1, -2), grad_out)
    dp = xp.matmul(grad_out, _transposed(xp, v))
    dp -= delta[..., None]
    ds = xp.multiply(p, dp, out=dp)
    dq = xp.matmul(ds, k)
    dq *= ct(blocks.scale)
    dk = xp.matmul(ds.swapaxes(-1, -2), qs)
    return dq, dk, dv


def _by_halves(xp, fn, arrays, batch: tuple, blocks: _Blocks):
    """fn(*arrays), or, when two threads are free (runtime/threads.py) and the work is large
    enough, fn over each half of the leading batch dim, one half on a pool thread: the
    results joined. Every array must span the whole batch (no broadcast leading dim)."""
    scores = math.prod(batch) * blocks.length * blocks.source
    if (xp is not np or not batch or batch[0] < 2 or scores < SPLIT_MIN_SCORES
            or any(a.shape[: len(batch)] != batch for a in arrays) or threads.threads() < 2):
        return fn(*arrays)
    half = batch[0] // 2
    future = _helper().submit(fn, *(a[:half] for a in arrays))
    try:
        second = fn(*(a[half:] for a in arrays))
    finally:
        first = future.result()
    return tuple(xp.concatenate([a, b]) for a, b in zip(first, second))


_helpers: dict = {}  # pid -> the one helper thread (a forked child starts its own)


def _helper() -> ThreadPoolExecutor:
    pid = os.getpid()
    executor = _helpers.get(pid)
    if executor is None:
        executor = _helpers[pid] = ThreadPoolExecutor(1, thread_name_prefix="ember-attention")
    return executor
