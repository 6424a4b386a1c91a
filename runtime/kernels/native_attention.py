"""The native attention kernels (codegen/llvm/attention.py) as functions on numpy arrays.

`forward` and `backward` return None where they do not apply, and the caller (attention.py)
keeps its numpy path then: another array module, float16/bfloat16, an empty dim, no BLAS
GEMM found in the process (runtime/blas.py), llvmlite missing, or keys so many that one row
of scores per buffer does not fit the stack scratch (SCRATCH_BYTES).

Operands are read in place through an int64 table of each item's offset and a leading dim
(a view such as a (B, H, T, E) transpose of a (B, T, H, E) projection, or a broadcast batch
dim, costs no copy); only an operand whose last dim is strided is copied first. The outputs
span the full batch (the backward's gradients of a broadcast input are summed after). The
kernels run their items (the forward: its blocks of query rows) on the native pool when the
work is worth sharing, each GEMM then on one BLAS thread; otherwise on this thread, the
GEMMs on BLAS's threads (threads.py's budget).
"""

from __future__ import annotations

import ctypes
import math
import struct

import numpy as np

from .. import blas
from ..native import CHUNKS_PER_THREAD, _pool, data_pointer, thread_count
from ..threads import before_blas, blas_single_threaded
from ..windows import llvmlite_present, load_task

# bytes of stack scratch per task (one or two buffers of block x S scores): the inference
# entry's attention keeps its scores on the stack within the same bound (STACK_COLUMNS_MAX)
SCRATCH_BYTES = 1 << 19
# query rows per block at most: under causal masking a block computes the scores above the
# diagonal within it, so smaller blocks waste less; 64 rows keep the GEMMs efficient
MAX_BLOCK = 64
# scores (items x L x S) from which the work is shared with the pool: below it, waking the
# second thread costs about what it saves
PARALLEL_MIN_SCORES = 1 << 16

_FLOATS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_OFFSETS: dict = {}  # (shape, strides, itemsize, batch) -> int64 offsets of each item
_OFFSETS_MAX = 512


def _double_word(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


def _offsets(a: np.ndarray, batch: tuple) -> np.ndarray:
    """The element offset of each item's matrix in a (its batch dims aligned to `batch`
    from the right, broadcast dims at offset 0), as a flat int64 array."""
    key = (a.shape, a.strides, a.itemsize, batch)
    found = _OFFSETS.get(key)
    if found is not None:
        return found
    own = a.shape[:-2]
    offsets = np.zeros(batch, dtype=np.int64)
    for d, n in enumerate(own):
        if n != 1:
            steps = np.arange(n, dtype=np.int64) * (a.strides[d] // a.itemsize)
            offsets += steps.reshape((n,) + (1,) * (len(own) - 1 - d))
    offsets = offsets.ravel()
    if len(_OFFSETS) >= _OFFSETS_MAX:
        _OFFSETS.clear()
    _OFFSETS[key] = offsets
    return offsets


def _readable(a: np.ndarray) -> bool:
    """Whether the kernels read a in place: strides of whole elements, none negative."""
    return all(s >= 0 and s % a.itemsize == 0 for s in a.strides)


def _matrix(a: np.ndarray, batch: tuple):
    """(array, offsets, leading dim) of a matrix operand (..., rows, cols), read in place
    where its rows are unit-strided and do not overlap, else from a contiguous copy."""
    rows, cols = a.shape[-2:]
    dense = cols == 1 or a.strides[-1] == a.itemsize
    ld = a.strides[-2] // a.itemsize if rows > 1 else cols
    if not (dense and _readable(a) and ld >= cols):
        a = np.ascontiguousarray(a)
        ld = cols
    return a, _offsets(a, batch), ld


def _mask(m: np.ndarray, batch: tuple, dtype):
    """(array, offsets, row stride, col stride) of a mask broadcast to (*batch, L, S): bool
    as is, else in the compute dtype."""
    if m.dtype != np.bool_ and m.dtype != dtype:
        m = m.astype(dtype)
    if not _readable(m):
        m = np.ascontiguousarray(m)
    rank = len(batch) + 2
    shape = (1,) * (rank - m.ndim) + m.shape
    strides = (0,) * (rank - m.ndim) + m.strides
    rows = strides[-2] // m.itemsize if shape[-2] != 1 else 0
    cols = strides[-1] // m.itemsize if shape[-1] != 1 else 0
    return m, _offsets(m, batch), rows, cols


def _plan(q, k, v, masks, buffers: int):
    """(dtype name, batch, items, L, S, E, Ev, block, blocks) where the native kernels take
    these operands, else None."""
    dtype = _FLOATS.get(q.dtype)
    if (dtype is None or any(a.__class__ is not np.ndarray for a in (q, k, v, *masks))
            or k.dtype != q.dtype or v.dtype != q.dtype or blas.gemm() is None
            or not llvmlite_present()):
        return None
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2],
                                *(m.shape[:-2] for m in masks))
    items = math.prod(batch)
    length, source, e, ev = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    if 0 in (items, length, source, e, ev):
        return None
    from ...codegen.llvm.attention import VECTOR_BYTES

    padded = -(-source * q.itemsize // VECTOR_BYTES) * VECTOR_BYTES  # a row of scores, in bytes
    block = min(length, MAX_BLOCK, SCRATCH_BYTES // (buffers * padded))
    if block < 1:
        return None
    return dtype, batch, items, length, source, e, ev, block, -(-length // block)


def _words(plan, q, k, v, attn_mask, keep, scale, dropout_p):
    """The forward's argv words (codegen/llvm/attention.py: FORWARD_WORDS), and the arrays
    that must live while they are used."""
    dtype, batch, items, length, source, e, ev, block, blocks = plan
    ct = q.dtype
    (q, q_at, ldq), (k, k_at, ldk), (v, v_at, ldv) = (_matrix(a, batch) for a in (q, k, v))
    none = (None, None, 0, 0)
    mask, mask_at, mask_rows, mask_cols = none if attn_mask is None else _mask(
        attn_mask, batch, ct)
    kept, keep_at, keep_rows, keep_cols = none if keep is None else _mask(
        keep.astype(ct, copy=False), batch, ct)
    if scale is None:
        scale = 1.0 / math.sqrt(e)
    gemm = blas.gemm()
    arrays = [q, k, v, mask, kept, q_at, k_at, v_at, mask_at, keep_at]

    def pointer(a):
        return 0 if a is None else data_pointer(a)

    words = [pointer(q), pointer(k), pointer(v), 0, 0, pointer(mask), pointer(kept),
             gemm.sgemm if dtype == "float32" else gemm.dgemm, pointer(q_at), pointer(k_at),
             pointer(v_at), pointer(mask_at), pointer(keep_at), length, source, e, ev, ldq,
             ldk, ldv, mask_rows, mask_cols, keep_rows, keep_cols, block, blocks,
             _double_word(scale), _double_word(1.0 / (1.0 - dropout_p) if keep is not None
                                                 else 1.0)]
    return words, arrays


def _run(name: str, make_ir, words: list, units: int, scores: int) -> None:
    function, address, _ = load_task(name, make_ir)
    argv = (ctypes.c_int64 * len(words))(*words)
    run = _pool.parallel_for() if scores >= PARALLEL_MIN_SCORES and units >= 2 else None
    if run is None:
        before_blas()
        function(argv, 0, units)
    else:
        # each thread's GEMMs are one item's: small, and on one BLAS thread each
        blas_single_threaded()
        run(address, argv, units, min(units, thread_count() * CHUNKS_PER_THREAD))


def _kinds(plan, attn_mask, keep):
    mask = None if attn_mask is None else ("bool" if attn_mask.dtype == np.bool_ else "float")
    return plan[0], mask, keep is not None, blas.gemm().int_bits


def forward(q, k, v, attn_mask, keep, scale, causal: bool, dropout_p: float):
    """(out, logsumexp) over the broadcast batch, or None where the kernels do not apply."""
    masks = [m for m in (attn_mask, keep) if m is not None]
    plan = _plan(q, k, v, masks, 1)
    if plan is None:
        return None
    from ...codegen.llvm.attention import forward_ir, kernel_name

    dtype, batch, items, length, source, e, ev, block, blocks = plan
    words, arrays = _words(plan, q, k, v, attn_mask, keep, scale, dropout_p)
    out = np.empty(batch + (length, ev), dtype=q.dtype)
    lse = np.empty(batch + (length,), dtype=q.dtype)
    words[3], words[4] = data_pointer(out), data_pointer(lse)
    dtype, mask, dropout, bits = _kinds(plan, attn_mask, keep)
    _run(kernel_name("forward", dtype, causal, mask, dropout, bits),
         lambda: forward_ir(dtype, causal, mask, dropout, bits), words, items * blocks,
         items * length * source)
    del arrays
    return out, lse


def backward(q, k, v, out, lse, grad_out, grad_lse, attn_mask, keep, scale, causal: bool,
             dropout_p: float):
    """(dq, dk, dv) over the broadcast batch (the caller sums them to the inputs' shapes),
    or None where the kernels do not apply."""
    masks = [m for m in (attn_mask, keep) if m is not None]
    plan = _plan(q, k, v, masks, 2)
    if plan is None or out.dtype != q.dtype or grad_out.dtype != q.dtype:
        return None
    from ...codegen.llvm.attention import backward_ir, kernel_name

    dtype, batch, items, length, source, e, ev, block, blocks = plan
    if out.shape != batch + (length, ev):
        return None
    words, arrays = _words(plan, q, k, v, attn_mask, keep, scale, dropout_p)
    ct = q.dtype
    out, out_at, ldo = _matrix(out, batch)
    grad_out, grad_at, ldg = _matrix(np.broadcast_to(grad_out, batch + (length, ev)), batch)
    rows = batch + (length,)
    lse = np.ascontiguousarray(np.broadcast_to(lse.astype(ct, copy=False), rows))
    grad_lse = np.ascontiguousarray(np.broadcast_to(grad_lse.astype(ct, copy=False), rows))
    dq = np.empty(batch + (length, e), dtype=ct)
    dk = np.empty(batch + (source, e), dtype=ct)
    dv = np.empty(batch + (source, ev), dtype=ct)
    words[3], words[4] = data_pointer(out), data_pointer(lse)
    words += [data_pointer(grad_out), data_pointer(grad_at), ldg, data_pointer(out_at), ldo,
              data_pointer(grad_lse), data_pointer(dq), data_pointer(dk), data_pointer(dv)]
    dtype, mask, dropout, bits = _kinds(plan, attn_mask, keep)
    _run(kernel_name("backward", dtype, causal, mask, dropout, bits),
         lambda: backward_ir(dtype, causal, mask, dropout, bits), words, items,
         items * length * source)
    del arrays
    return dq, dk, dv
