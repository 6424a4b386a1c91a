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
  (784, 256): 0.84x). Up to 1.5 MiB of packed b this one was as fast or faster, two
  threads, hot and after a flush of the caches ((128, 768) @ (768, 512): 0.85-0.96x BLAS's
  time, either layout; (512, 512) @ (512, 768): 0.88-0.92x; a weight gradient
  (128, 768)^T @ (768, 512), nanoGPT's at batch 12: 0.93-0.96x); at 2 MiB it was slower
  ((512, 1024)^T @ (1024, 512): 1.3x).

The step's GEMMs (GPT: (512, 128) @ (128, 512) and the like, both layouts of each operand)
ran 8-20% faster than OpenBLAS on one core, and at two threads as fast as PyTorch's MKL or
within ~10% of it (benchmarks/pool.py, this file's figures in the session notes).
"""

from __future__ import annotations

import threading

import numpy as np

from .blas import NO_TRANS, TRANS
from .native import _pool, data_pointer
from .windows import argv_type, load_task

ENABLED = True  # False leaves every product to BLAS, as before (for comparisons)
MIN_WORK = 1 << 21
MIN_ROWS = 16
MIN_COLUMNS = 64
MAX_DEPTH = 512
MAX_DEPTH_WIDE = 1024
PACKED_MAX_BYTES = 3 << 19  # 1.5 MiB
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
    return line_address(buffer)


def line_address(buffer: np.ndarray) -> int:
    """The first address on a cache line (64 bytes) in buffer, which has 64 bytes to spare."""
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
    if not ENABLED or a.ndim != 2 or b.ndim != 2:
        return None
    run = _pool.parallel_for()
    threads = 1 if run is None else _pool.threads()
    # a step's ~50 GEMMs come in a few layouts: the plan of each is made once. Its checks
    # and arithmetic in Python took ~15 us of each call inside a GPT step (the interpreter's
    # code and data no longer in cache after the GEMM before), ~1.4 ms of the step
    # (the limits below are in the key: tests set them, and a plan made under others stays)
    key = (a.shape, a.strides, b.shape, b.strides, a.dtype, b.dtype, bias is None,
           colsum is None, rowsum is None, threads, MIN_WORK, MIN_ROWS, MIN_COLUMNS,
           MAX_DEPTH, MAX_DEPTH_WIDE, PACKED_MAX_BYTES, SUB_BYTES, id(_found))
    plan = _plans.get(key, _plans)
    if plan is _plans:
        plan = _plan(a, b, bias is not None, colsum is not None, rowsum is not None, threads)
        if len(_plans) >= PLANS_MAX:
            _plans.clear()
        _plans[key] = plan
    if plan is None or not (a.flags.aligned and b.flags.aligned):
        return None
    (function, task, units, packed_bytes, m, n, k, sam, sak, sbk, sbn, group, parts, sub,
     region) = plan
    if bias is not None and (bias.shape != (n,) or bias.dtype != a.dtype
                             or not bias.flags.c_contiguous or not bias.flags.aligned):
        return None
    if not (_sums_into(colsum, n, a.dtype) and _sums_into(rowsum, m, a.dtype)):
        return None
    out = np.empty((m, n), a.dtype)
    argv = argv_type(19)(data_pointer(a), sam, sak, data_pointer(b), sbk, sbn,
                         _packed_buffer(packed_bytes), data_pointer(out), n, m, n, k,
                         0 if bias is None else data_pointer(bias), group, parts, sub, region,
                         0 if colsum is None else data_pointer(colsum),
                         0 if rowsum is None else data_pointer(rowsum))
    if run is None or units < 2:
        function(argv, 0, units)
    else:
        run(task, argv, units, units)
    return out


_plans: dict = {}  # product's key -> its plan, or None: refused
PLANS_MAX = 512  # plans kept (the table starts again past this many)


def _plan(a: np.ndarray, b: np.ndarray, bias: bool, colsum: bool, rowsum: bool,
          threads: int) -> tuple | None:
    """How product runs a @ b of these shapes, strides and dtypes on `threads` threads: (the
    task's function, its address, units, the packed buffer's bytes, m, n, k, a's and b's
    element strides, and the task's group, parts, sub and region words); None where the
    packed GEMM does not apply."""
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
    if strides_a is None or strides_b is None:
        return None
    sam, sak = strides_a
    if sak != 1 and sam != 1:
        return None  # neither a's rows nor its columns are contiguous
    if rowsum and sak == 1:
        return None  # the row-major copy of A's slices adds nothing up
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
    sub = max(1, min(group, SUB_BYTES // (k * nr * a.itemsize)))
    sbk, sbn = strides_b
    return (function, task, units, units * region * a.itemsize, m, n, k, sam, sak, sbk, sbn,
            group, parts, sub, region)


BATCHED_POOL_WORK = 1 << 16  # multiply-adds of the whole stack from which the pool shares it


def _stack_strides(x: np.ndarray, batch: tuple, inner: int) -> tuple[int, int] | None:
    """(outer, inner) strides (elements) of x's matrices broadcast to the stack `batch`, seen
    as (count // inner, inner) matrices (0: one matrix repeated), or None where its batch dims
    do not collapse so."""
    lead = x.ndim - 2
    strides = [0] * (len(batch) - lead) + [0 if size == 1 else stride for size, stride
                                           in zip(x.shape[:lead], x.strides[:lead])]
    out = [0, 0]
    span = 1  # matrices of the stack inside the dim at hand
    for size, step in zip(reversed(batch), reversed(strides)):
        if size == 1:
            continue
        if step < 0 or step % x.itemsize:
            return None
        step //= x.itemsize
        level, within = (1, span) if span < inner else (0, span // inner)
        if level and span * size > inner:
            return None  # a dim across the two levels
        if within == 1:
            out[level] = step
        elif step != out[level] * within:
            return None
        span *= size
    return out[0], out[1]


def _matrix_layout(x: np.ndarray) -> tuple[int, int] | None:
    """(cblas's trans flag, leading dimension: the stride of the other dim, as it is, 0 for a
    broadcast one) of x's matrices, or None where neither of their dims is contiguous."""
    rows, cols = x.shape[-2:]
    s_row, s_col = x.strides[-2:]
    item = x.itemsize
    if s_row < 0 or s_col < 0 or s_row % item or s_col % item:
        return None
    if s_col == item or cols == 1:
        return NO_TRANS, s_row // item if rows > 1 else 0
    if s_row == item or rows == 1:
        return TRANS, s_col // item if cols > 1 else 0
    return None


def batched(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """a @ b for stacks of matrices (an operand of 3 dims or more, their batch dims
    broadcast) as a fresh C-contiguous array, through a kernel specialized to the matrices'
    shape and layouts (codegen/llvm/bmm.py), the stack shared by the pool's threads in
    contiguous runs (a thread reads the matrices a producer split the same way wrote on its
    own core). numpy's matmul ran a (32, 4, 16, 16) @ (32, 4, 16, 16) as 128 BLAS calls (66
    us inside a training step against PyTorch's bmm's 25). None where it does not apply:
    2-D operands, other dtypes, shapes bmm.fits refuses, batch dims that do not collapse to
    one stride, matrices with neither dim contiguous. What a call's shapes, strides and dtype
    decide is planned once (_bmm_plan: ~20 us of Python against the kernel's 13)."""
    if not ENABLED or a.__class__ is not np.ndarray or b.__class__ is not np.ndarray:
        return None
    key = (a.shape, a.strides, b.shape, b.strides, a.dtype, b.dtype)
    plan = _BMM_PLANS.get(key, _BMM_PLANS)
    if plan is _BMM_PLANS:
        plan = _bmm_plan(a, b)
        if len(_BMM_PLANS) < 4096:
            _BMM_PLANS[key] = plan
    if plan is None or not (a.flags.aligned and b.flags.aligned):
        return None
    function, address, out_shape, count, (outer_a, inner_a, lda, outer_b, inner_b, ldb,
                                          stride_c, ldc, inner), shared = plan
    out = np.empty(out_shape, a.dtype)
    argv = argv_type(12)(data_pointer(a), outer_a, inner_a, lda, data_pointer(b), outer_b,
                         inner_b, ldb, data_pointer(out), stride_c, ldc, inner)
    run = _pool.parallel_for() if shared else None
    if run is None:
        function(argv, 0, count)
    else:
        run(address, argv, count, min(count, _pool.threads()))
    return out


_BMM_PLANS: dict = {}  # (shapes, strides, dtypes) -> _bmm_plan's answer


def _bmm_plan(a: np.ndarray, b: np.ndarray):
    """(the kernel's function and address, C's shape, the number of matrices, argv's words
    but the pointers, whether the pool shares it) for a @ b, or None where batched does not
    apply."""
    if a.ndim < 2 or b.ndim < 2 or (a.ndim == 2 and b.ndim == 2):
        return None
    from ..codegen.llvm.bmm import bmm_ir, bmm_name, fits

    m, k = a.shape[-2:]
    n = b.shape[-1]
    if b.shape[-2] != k or a.dtype != b.dtype or a.dtype.char not in "fd":
        return None
    dtype = a.dtype.name
    if not fits(dtype, m, n, k) or not a.dtype.isnative:
        return None
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return None
    count = 1
    for size in batch:
        count *= size
    if count < 2:
        return None
    inner = batch[-1] if batch else 1  # the innermost batch dim is the stack's inner level
    stride_a, stride_b = _stack_strides(a, batch, inner), _stack_strides(b, batch, inner)
    if (stride_a is None or stride_b is None) and len(batch) > 1:
        inner = count  # one level: batch dims that collapse whole
        stride_a, stride_b = _stack_strides(a, batch, inner), _stack_strides(b, batch, inner)
    layout_a, layout_b = _matrix_layout(a), _matrix_layout(b)
    if stride_a is None or stride_b is None or layout_a is None or layout_b is None:
        return None
    trans_a, trans_b = layout_a[0] == TRANS, layout_b[0] == TRANS
    name = bmm_name(dtype, m, n, k, trans_a, trans_b)
    function, address, _ = load_task(name, lambda: bmm_ir(dtype, m, n, k, trans_a, trans_b))
    words = (*stride_a, layout_a[1], *stride_b, layout_b[1], m * n, n, inner)
    return (function, address, (*batch, m, n), count, words,
            count * m * n * k >= BATCHED_POOL_WORK)
