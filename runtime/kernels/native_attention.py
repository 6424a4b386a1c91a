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

import math
import struct

import numpy as np

from .. import blas
from ..native import CHUNKS_PER_THREAD, _pool, data_pointer, thread_count
from ..packed_gemm import small_gemm
from ..threads import before_blas, blas_single_threaded
from ..windows import argv_type, llvmlite_present, load_task

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


def _double_word(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


def _contiguous_strides(shape: tuple, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.insert(0, step)
        step *= max(n, 1)
    return tuple(strides)


def _offsets(shape: tuple, strides: tuple, itemsize: int, batch: tuple) -> np.ndarray:
    """The element offset of each item's matrix in an array of this shape and strides (its
    batch dims aligned to `batch` from the right, broadcast dims at offset 0), flat int64."""
    own = shape[:-2]
    offsets = np.zeros(batch, dtype=np.int64)
    for d, n in enumerate(own):
        if n != 1:
            steps = np.arange(n, dtype=np.int64) * (strides[d] // itemsize)
            offsets += steps.reshape((n,) + (1,) * (len(own) - 1 - d))
    return offsets.ravel()


def _readable(strides: tuple, itemsize: int) -> bool:
    """Whether the kernels read an array in place: strides of whole elements, none negative."""
    return all(s >= 0 and s % itemsize == 0 for s in strides)


class _Operand:
    """How the kernels read one input: converted first (a contiguous copy in `dtype`) or in
    place; its items' offsets and, for a matrix, its leading dim, for a mask its row and
    column strides (0 where it broadcasts)."""

    def __init__(self, a: np.ndarray, batch: tuple, dtype, matrix: bool,
                 bool_as_is: bool = False):
        shape, strides, itemsize = a.shape, a.strides, dtype.itemsize
        convert = a.dtype != dtype and not (bool_as_is and a.dtype == np.bool_)
        if matrix:
            rows, cols = shape[-2:]
            dense = cols == 1 or strides[-1] == itemsize
            ld = strides[-2] // itemsize if rows > 1 else cols
            convert = convert or not (dense and _readable(strides, itemsize) and ld >= cols)
        else:
            convert = convert or not _readable(strides, a.itemsize)
        self.dtype = dtype if convert else None
        if convert:
            itemsize = dtype.itemsize
            strides = _contiguous_strides(shape, itemsize)
        elif not matrix:
            itemsize = a.itemsize
        self.offsets = _offsets(shape, strides, itemsize, batch)
        if matrix:
            self.ld = strides[-2] // itemsize if shape[-2] > 1 else shape[-1]
        else:
            rank = len(batch) + 2
            full_shape = (1,) * (rank - len(shape)) + shape
            full_strides = (0,) * (rank - len(strides)) + strides
            self.rows = full_strides[-2] // itemsize if full_shape[-2] != 1 else 0
            self.cols = full_strides[-1] // itemsize if full_shape[-1] != 1 else 0

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return a if self.dtype is None else np.ascontiguousarray(a, dtype=self.dtype)


def _meta(a) -> tuple | None:
    return None if a is None else (a.__class__, a.shape, a.strides, a.dtype.char)


class _Layout:
    """What the shapes, strides and dtypes of one call's operands decide (kept per key, so a
    training loop's calls only fill in pointers): whether the kernels apply, the kernel, how
    each operand is read, the output shapes, and the argv words that do not change."""

    def __init__(self, direction: str, q, k, v, attn_mask, keep, out, grad_out, scale,
                 causal: bool, dropout_p: float):
        self.applies = False
        buffers = 1 if direction == "forward" else 2
        masks = [m for m in (attn_mask, keep) if m is not None]
        dtype = _FLOATS.get(q.dtype)
        arrays = (q, k, v, *masks) + (() if out is None else (out, grad_out))
        if (dtype is None or any(a.__class__ is not np.ndarray for a in arrays)
                or any(a.dtype != q.dtype for a in (k, v) + (() if out is None else
                                                            (out, grad_out)))
                or not llvmlite_present()):
            return
        # the products: ember's small GEMM (packed_gemm.small_gemm), else BLAS's
        gemm_address, bits = small_gemm(q.dtype), 64
        if gemm_address is None:
            gemm = blas.gemm()
            if gemm is None:
                return
            gemm_address = gemm.sgemm if dtype == "float32" else gemm.dgemm
            bits = gemm.int_bits
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2],
                                    *(m.shape[:-2] for m in masks))
        items = math.prod(batch)
        length, source, e, ev = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
        if 0 in (items, length, source, e, ev):
            return
        if out is not None and out.shape != batch + (length, ev):
            return
        from ...codegen.llvm.attention import VECTOR_BYTES, backward_ir, forward_ir, kernel_name

        row_bytes = -(-source * q.itemsize // VECTOR_BYTES) * VECTOR_BYTES  # padded scores
        block = min(length, MAX_BLOCK, SCRATCH_BYTES // (buffers * row_bytes))
        if block < 1:
            return
        blocks = -(-length // block)
        ct = q.dtype
        self.q, self.k, self.v = (_Operand(a, batch, ct, True) for a in (q, k, v))
        self.mask = None if attn_mask is None else _Operand(attn_mask, batch, ct, False,
                                                            bool_as_is=True)
        # the keep mask is read in the compute dtype (a bool one as 0.0 / 1.0)
        self.keep = None if keep is None else _Operand(keep, batch, ct, False)
        mask_kind = None if attn_mask is None else (
            "bool" if attn_mask.dtype == np.bool_ else "float")
        if scale is None:
            scale = 1.0 / math.sqrt(e)
        dropout = keep is not None
        none = np.zeros(1, np.int64)  # the offsets table of an absent mask (never read)
        self.words = [
            0, 0, 0, 0, 0, 0, 0, gemm_address,
            data_pointer(self.q.offsets), data_pointer(self.k.offsets),
            data_pointer(self.v.offsets),
            data_pointer(none if self.mask is None else self.mask.offsets),
            data_pointer(none if self.keep is None else self.keep.offsets),
            length, source, e, ev, self.q.ld, self.k.ld, self.v.ld,
            0 if self.mask is None else self.mask.rows,
            0 if self.mask is None else self.mask.cols,
            0 if self.keep is None else self.keep.rows,
            0 if self.keep is None else self.keep.cols,
            block, blocks, _double_word(scale),
            _double_word(1.0 / (1.0 - dropout_p) if dropout else 1.0),
        ]
        self.none = none
        self.batch, self.length, self.source, self.e, self.ev = batch, length, source, e, ev
        self.ct = ct
        make_ir = forward_ir if direction == "forward" else backward_ir
        name = kernel_name(direction, dtype, causal, mask_kind, dropout, bits)
        self.function, self.address, self.library = load_task(
            name, lambda: make_ir(dtype, causal, mask_kind, dropout, bits))
        self.units = items * blocks if direction == "forward" else items
        self.scores = items * length * source
        if out is not None:
            self.out = _Operand(out, batch, ct, True)
            self.grad_out = _Operand(np.broadcast_to(grad_out, out.shape), batch, ct, True)
        self.applies = True

    def pointers(self, words: list, q, k, v, attn_mask, keep) -> list:
        """The inputs as the kernels read them (converted where the layout says), their
        pointers set in words; returns the arrays that must live while words are used."""
        q, k, v = self.q(q), self.k(k), self.v(v)
        words[0], words[1], words[2] = data_pointer(q), data_pointer(k), data_pointer(v)
        held = [q, k, v]
        if self.mask is not None:
            attn_mask = self.mask(attn_mask)
            words[5] = data_pointer(attn_mask)
            held.append(attn_mask)
        if self.keep is not None:
            keep = self.keep(keep)
            words[6] = data_pointer(keep)
            held.append(keep)
        return held

    def run(self, words: list) -> None:
        argv = argv_type(len(words))(*words)
        units = self.units
        run = _pool.parallel_for() if self.scores >= PARALLEL_MIN_SCORES and units >= 2 else None
        if run is None:
            before_blas()
            self.function(argv, 0, units)
        else:
            # each thread's GEMMs are one item's: small, and on one BLAS thread each
            blas_single_threaded()
            run(self.address, argv, units, min(units, thread_count() * CHUNKS_PER_THREAD))


_LAYOUTS: dict = {}  # key of a call's operands -> its _Layout
_LAYOUTS_MAX = 256


def _layout(key: tuple, *args) -> _Layout:
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        layout = _LAYOUTS[key] = _Layout(*args)
    return layout


def forward(q, k, v, attn_mask, keep, scale, causal: bool, dropout_p: float):
    """(out, logsumexp) over the broadcast batch, or None where the kernels do not apply."""
    key = ("forward", _meta(q), _meta(k), _meta(v), _meta(attn_mask), _meta(keep), scale,
           causal, dropout_p)
    layout = _layout(key, "forward", q, k, v, attn_mask, keep, None, None, scale, causal,
                     dropout_p)
    if not layout.applies:
        return None
    words = layout.words[:]
    held = layout.pointers(words, q, k, v, attn_mask, keep)
    out = np.empty(layout.batch + (layout.length, layout.ev), dtype=layout.ct)
    lse = np.empty(layout.batch + (layout.length,), dtype=layout.ct)
    words[3], words[4] = data_pointer(out), data_pointer(lse)
    layout.run(words)
    del held
    return out, lse


def backward(q, k, v, out, lse, grad_out, grad_lse, attn_mask, keep, scale, causal: bool,
             dropout_p: float):
    """(dq, dk, dv) over the broadcast batch (the caller sums them to the inputs' shapes),
    or None where the kernels do not apply."""
    key = ("backward", _meta(q), _meta(k), _meta(v), _meta(attn_mask), _meta(keep),
           _meta(out), _meta(grad_out), scale, causal, dropout_p)
    layout = _layout(key, "backward", q, k, v, attn_mask, keep, out, grad_out, scale, causal,
                     dropout_p)
    if not layout.applies:
        return None
    words = layout.words[:]
    held = layout.pointers(words, q, k, v, attn_mask, keep)
    ct, batch, length = layout.ct, layout.batch, layout.length
    out = layout.out(out)
    if grad_out.shape != out.shape:
        grad_out = np.broadcast_to(grad_out, out.shape)
    grad_out = layout.grad_out(grad_out)
    rows = batch + (length,)
    lse, grad_lse = (np.ascontiguousarray(a if a.shape == rows else np.broadcast_to(a, rows),
                                          dtype=ct)
                     for a in (lse, grad_lse))
    dq = np.empty(batch + (length, layout.e), dtype=ct)
    dk = np.empty(batch + (layout.source, layout.e), dtype=ct)
    dv = np.empty(batch + (layout.source, layout.ev), dtype=ct)
    words[3], words[4] = data_pointer(out), data_pointer(lse)
    words += [data_pointer(grad_out), data_pointer(layout.grad_out.offsets), layout.grad_out.ld,
              data_pointer(layout.out.offsets), layout.out.ld, data_pointer(grad_lse),
              data_pointer(dq), data_pointer(dk), data_pointer(dv)]
    layout.run(words)
    del held
    return dq, dk, dv
