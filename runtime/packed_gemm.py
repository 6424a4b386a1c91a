"""ember's own GEMM for the eager products of a training step (codegen/llvm/gemm.py says how
and why): C = a @ b, plus a bias row, on the native pool.

`product(a, b, bias=None)` takes 2-D float32/float64 operands: `a` with a unit stride along
one of its dims, `b` with any non-negative strides. It returns None, and the caller keeps its
BLAS path, for every other case and for the shapes where BLAS does as well or better (on the
2-core Xeon, one thread and two, against numpy's OpenBLAS):

- fewer than MIN_WORK multiply-adds: (64, 64) @ (64, 64) took 12.9 us here, 5.4 in BLAS,
  whose small-matrix kernels pack nothing; from (128, 128) @ (128, 128) on this is faster;
- fewer than MIN_ROWS rows or MIN_COLUMNS columns: a (1, 512) @ (512, 512) packed all of b
  for one row of C (103 us against 13), and a 16-wide C wastes half of every panel;
- a packed b past PACKED_MAX_BYTES, or a depth past MAX_DEPTH (past MAX_DEPTH_WIDE where C
  is at least as wide as tall): the tiles copy a's rows again for every few panels whose
  packed slice stays in L2 (SUB_BYTES), and a C taller than wide has each thread pack all of
  b; BLAS's blocking wins there ((700, 800) @ (800, 200): 1.09x BLAS's time; (128, 784) @
  (784, 256): 0.84x).

The step's GEMMs (GPT: (512, 128) @ (128, 512) and the like, both layouts of each operand)
ran 8-20% faster than OpenBLAS on one core, and at two threads as fast as PyTorch's MKL or
within ~10% of it (benchmarks/pool.py, this file's figures in the session notes).
"""

from __future__ import annotations

import threading

import numpy as np

from .native import _pool, data_pointer
from .windows import argv_type, load_task

ENABLED = True  # False leaves every product to BLAS, as before (for comparisons)
MIN_WORK = 1 << 21
MIN_ROWS = 16
MIN_COLUMNS = 64
MAX_DEPTH = 512
MAX_DEPTH_WIDE = 1024
PACKED_MAX_BYTES = 1 << 20
SUB_BYTES = 1 << 19  # a unit's panels go this many packed bytes at a time (in L2)
_local = threading.local()  # each calling thread's buffer for the packed b
_found: dict = {}  # dtype char -> _task(its name), None: not on this CPU


def _task(dtype: str):
    """(the task's function, its address, rows per tile, columns per panel), compiled on
    first use; None on a CPU without AVX-512: the tiles are sized for its 32 registers of 64
    bytes, and with half as many LLVM would spill them."""
    from ..codegen.llvm.gemm import MR, gemm_ir, panel_width, task_name
    from ..codegen.llvm.target import features

    if "+avx512f" not in features().split(","):
        return None
    function, address, _ = load_task(task_name(dtype), lambda: gemm_ir(dtype))
    return function, address, MR, panel_width(dtype)


def small_gemm(dtype: np.dtype) -> int | None:
    """The address of the small GEMM beside the task (codegen/llvm/gemm.py's _emit_small:
    cblas's row-major ?gemm with int64 sizes) for float32 or float64, or None where the task
    is not built (no AVX-512, or ENABLED off): the attention kernels' products."""
    if not ENABLED:
        return None
    found = _found.get(dtype.char, _found)
    if found is _found:
        found = _found[dtype.char] = _task(dtype.name)
    if found is None:
        return None
    from ..codegen.llvm.gemm import small_name, task_name

    return load_task(task_name(dtype.name), None)[2].address(small_name(dtype.name))


def _packed_buffer(nbytes: int) -> int:
    """The address of this thread's buffer of at least nbytes, on a cache line (64 bytes);
    the pool's workers write their units' panels into the caller's buffer."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None or buffer.nbytes < nbytes + 64:
        buffer = _local.buffer = np.empty(max(nbytes + 64, 1 << 16), np.uint8)
    address = data_pointer(buffer)
    return address + (-address) % 64


def _sums_into(out: np.ndarray | None, size: int, dtype) -> bool:
    """Whether out is None or an array the kernel may store `size` sums of `dtype` into."""
    return out is None or (out.shape == (size,) and out.dtype == dtype
                           and out.flags.c_contiguous and out.flags.aligned
                           and out.flags.writeable)


def _element_strides(x: np.ndarray) -> tuple[int, int] | None:
    item = x.itemsize
    s0, s1 = x.strides
    if s0 < 0 or s1 < 0 or s0 % item or s1 % item:
        return None
    return s0 // item, s1 // item


def product(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None,
            colsum: np.ndarray | None = None,
            rowsum: np.ndarray | None = None) -> np.ndarray | None:
    """a @ b (+ bias, a row added to every row of the product) as a fresh C-contiguous
    array, with ember's packed GEMM; None where it does not apply. With colsum (a contiguous
    array of b's dtype and b.shape[1] numbers), b.sum(0) is stored there too; with rowsum
    (a.shape[0] numbers, for an `a` whose columns are contiguous: a transposed matrix),
    a.sum(1)."""
    # the sizes first: they refuse a small product (an eager script's many) soonest
    if not ENABLED or a.ndim != 2 or b.ndim != 2:
        return None
    m, k = a.shape
    n = b.shape[1]
    if (m < MIN_ROWS or n < MIN_COLUMNS or m * n * k < MIN_WORK or k != b.shape[0]
            or k > (MAX_DEPTH_WIDE if n >= m else MAX_DEPTH)):
        return None
    if a.dtype != b.dtype or a.dtype.char not in "fd" or not a.dtype.isnative:
        return None
    found = _found.get(a.dtype.char, _found)
    if found is _found:
        found = _found[a.dtype.char] = _task(a.dtype.name)
    if found is None:
        return None
    function, task, rows, nr = found
    panels = -(-n // nr)
    if panels * nr * k * a.itemsize > PACKED_MAX_BYTES:
        return None
    strides_a, strides_b = _element_strides(a), _element_strides(b)
    if strides_a is None or strides_b is None or not (a.flags.aligned and b.flags.aligned):
        return None
    sam, sak = strides_a
    if sak != 1:
        if sam != 1:
            return None  # neither a's rows nor its columns are contiguous
    sbk, sbn = strides_b
    if bias is not None and (bias.shape != (n,) or bias.dtype != a.dtype
                             or not bias.flags.c_contiguous or not bias.flags.aligned):
        return None
    if not (_sums_into(colsum, n, a.dtype) and _sums_into(rowsum, m, a.dtype)):
        return None
    if rowsum is not None and sak == 1:
        return None  # the row-major copy of A's slices adds nothing up
    out = np.empty((m, n), a.dtype)
    run = _pool.parallel_for()
    threads = 1 if run is None else _pool.threads()
    # each unit packs its panels itself, so a thread reads only panels it packed, from its
    # own cache (panels another core had just written came across at ~100 us a GEMM). The
    # threads share C's columns (a group of panels each, a's rows copied by each) where C is
    # wider than tall, else its rows (b packed by each)
    if n >= m:
        group = -(-panels // min(panels, threads))
        groups = -(-panels // group)
        parts = max(1, threads // groups)
    else:
        group, groups, parts = panels, 1, threads
    units = groups * parts
    region = k * group * nr  # elements of one unit's panels
    packed = _packed_buffer(units * region * a.itemsize)
    sub = max(1, min(group, SUB_BYTES // (k * nr * a.itemsize)))
    argv = argv_type(19)(data_pointer(a), sam, sak, data_pointer(b), sbk, sbn, packed,
                         data_pointer(out), n, m, n, k,
                         0 if bias is None else data_pointer(bias), group, parts, sub, region,
                         0 if colsum is None else data_pointer(colsum),
                         0 if rowsum is None else data_pointer(rowsum))
    if run is None or units < 2:
        function(argv, 0, units)
    else:
        run(task, argv, units, units)
    return out
