"""GEMMs shared by the native pool as independent single-threaded BLAS calls, one block of
C's rows (or columns) per thread (codegen/llvm/pool_gemm.py says why: OpenBLAS's own
threading of the step-sized GEMMs gained 1.5-1.65x from a second core, this ~1.9x).

`product(a, b)` takes the 2-D float32/float64 products whose operands BLAS reads in place
(one unit stride each) and that are large enough to share; `product(a, b, onto=c)` adds the
product onto c (BLAS's beta = 1: linear's bias epilogue, runtime/kernels/nn.py). Both return
None for every other case, and the caller keeps its own path.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import blas, threads
from .native import _pool, data_pointer
from .windows import load_task

# below this many multiply-adds (~30 us on one core) a second thread gains less than its
# start costs; a step's smallest GEMM, (512, 128) @ (128, 128), is 8.4M
MIN_WORK = 1 << 21
# C is cut at multiples of this many rows (columns): OpenBLAS's SkylakeX sgemm kernel works
# on 16 rows at a time, so an odd cut leaves a thread a partial block
UNIT = 16
_ARGV = ctypes.c_int64 * 15


# dtype char -> (cblas GEMM address, the pool task's address, the bound of cblas's ints)
_tasks: dict = {}


def _task(char: str) -> tuple[int, int, int] | None:
    """The cblas GEMM and the pool task for a dtype, compiled on first use; None where numpy's
    BLAS has no checked cblas GEMM (runtime/blas.py)."""
    found = blas.gemm()
    if found is None:
        return None
    dtype = np.dtype(char).name
    address = found.sgemm if dtype == "float32" else found.dgemm
    from ..codegen.llvm.pool_gemm import gemm_task_ir, gemm_task_name

    int_bits = found.int_bits
    _, task, _ = load_task(gemm_task_name(dtype, int_bits),
                           lambda: gemm_task_ir(dtype, int_bits))
    _tasks[char] = (address, task, 2 ** (int_bits - 1))
    return _tasks[char]


def product(a: np.ndarray, b: np.ndarray, onto: np.ndarray | None = None) -> np.ndarray | None:
    """a @ b on the pool's threads, each a single-threaded GEMM of its block of C; with
    `onto` (a C-contiguous (m, n) array of their dtype), the product added onto it in place.
    None where this does not apply (then OpenBLAS's own threading, or one thread, does it)."""
    if a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or a.dtype.char not in "fd":
        return None
    m, k = a.shape
    n = b.shape[1]
    if k != b.shape[0] or m * n * k < MIN_WORK or min(m, n, k) < 2:
        return None
    if not (a.flags.aligned and b.flags.aligned):
        return None
    if onto is not None and (onto.shape != (m, n) or onto.dtype != a.dtype
                             or not onto.flags.c_contiguous or not onto.flags.aligned):
        return None
    layout_a, layout_b = blas.layout(a), blas.layout(b)
    if layout_a is None or layout_b is None:
        return None
    run = _pool.parallel_for()
    if run is None:
        return None
    axis = 1 if n > m else 0
    units = -(-(n if axis else m) // UNIT)
    workers = min(units, _pool.threads())
    if workers < 2:
        return None
    found = _tasks.get(a.dtype.char)
    if found is None:
        found = _task(a.dtype.char)
        if found is None:
            return None
    address, task, bound = found
    if max(m, n, k, layout_a[1], layout_b[1]) >= bound:
        return None
    out = np.empty((m, n), a.dtype) if onto is None else onto
    transposed_a, transposed_b = layout_a[0] == blas.TRANS, layout_b[0] == blas.TRANS
    argv = _ARGV(address, transposed_a, transposed_b, axis, m, n, k,
                 data_pointer(a), layout_a[1], data_pointer(b), layout_b[1],
                 data_pointer(out), n, UNIT, onto is not None)
    threads.blas_single_threaded()
    run(task, argv, units, workers)
    return out
