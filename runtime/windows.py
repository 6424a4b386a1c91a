"""The native window kernels (codegen/llvm/windows.py, codegen/llvm/columns.py), the
one-function passes of codegen/llvm/unary.py, and training batch norm's per-channel kernels
(codegen/llvm/norm.py), as functions on numpy arrays.

Each kernel is compiled once per dtype and kernel size (im2col and col2im: per dtype and
geometry) through the kernel cache, so later processes load it from disk, and runs its rows
on the native pool when the work is large enough to share. Callers ask `available(...)`
first and keep their numpy path for every other case: another device, dtype, layout, or
llvmlite missing.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from .native import CHUNKS_PER_THREAD, PARALLEL_MIN_ELEMENTS, _pool, data_pointer, thread_count

_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_kernels: dict = {}
_ARGV: dict = {}  # argv length -> its ctypes array type (argv_type)
_lock = threading.Lock()
_broken = None  # True: no llvmlite here, numpy paths only (None: not looked yet)
_FLOAT_CHARS = (np.dtype(np.float32).char, np.dtype(np.float64).char)
_FLOAT_NAMES = {np.dtype(np.float32).char: "float32", np.dtype(np.float64).char: "float64"}


def llvmlite_present() -> bool:
    """Whether llvmlite is installed (native kernels can be built here)."""
    global _broken
    if _broken is None:
        try:
            import llvmlite.binding  # noqa: F401
        except ImportError:
            _broken = True
        else:
            _broken = False
    return not _broken


def available(*arrays) -> bool:
    """Whether the native kernels can take these arrays: CPU, float32/float64 in the
    machine's byte order, contiguous."""
    # dtype.char, not dtype.name: numpy computes the name in Python (~1 us a call)
    return llvmlite_present() and all(
        a.__class__ is np.ndarray and a.dtype.char in _FLOAT_CHARS and a.dtype.isnative
        and a.flags.c_contiguous for a in arrays)


def dtype_name(a: np.ndarray) -> str:
    """a.dtype.name, looked up by its char for the float dtypes (numpy computes the name in
    Python, ~1 us a call)."""
    return _FLOAT_NAMES.get(a.dtype.char) or a.dtype.name


def load_task(name: str, make_ir):
    """(the task as a ctypes function, its address, its library) for the kernel `name`,
    compiled from make_ir() on first use (through the kernel cache)."""
    entry = _kernels.get(name)
    if entry is None:
        with _lock:
            entry = _kernels.get(name)
            if entry is None:
                from ..codegen.llvm.cache import default_cache

                library = default_cache().load_generated(name, make_ir)
                # the library is kept with its functions: its code lives as long as it does
                # (a kernel cache that is replaced would otherwise free code still called)
                entry = _kernels[name] = (library.function(name, _SIGNATURE),
                                          library.address(name), library)
    return entry


def argv_type(n: int):
    """The ctypes array type of n int64 argv words, made once per length: a ctypes type per
    call is slow, and garbage only the collector frees."""
    made = _ARGV.get(n)
    if made is None:
        made = _ARGV[n] = ctypes.c_int64 * n
    return made


def run_task(name: str, make_ir, words: list, rows: int, work: int) -> None:
    """Run the pool task `name` (compiled from make_ir() once) over rows [0, rows), on the
    native pool when `work` (elements) is worth sharing. words: argv's 64-bit words."""
    entry = _kernels.get(name)
    function, address, _ = entry if entry is not None else load_task(name, make_ir)
    argv = argv_type(len(words))(*words)
    run = _pool.parallel_for() if work >= PARALLEL_MIN_ELEMENTS and rows >= 2 else None
    if run is None:
        function(argv, 0, rows)
    else:
        run(address, argv, rows, min(rows, thread_count() * CHUNKS_PER_THREAD))


def max_pool_tiled(x: np.ndarray, kh: int, kw: int, g: np.ndarray | None = None) -> np.ndarray:
    """Max pooling of x (..., H, W) over kh x kw windows that tile it (H % kh == W % kw == 0):
    the pooled values, or, given the output's gradient g, the input's gradient."""
    from ..codegen.llvm.windows import max_pool_ir, max_pool_name

    *lead, h, w = x.shape
    oh, ow = h // kh, w // kw
    rows = int(np.prod(lead, dtype=np.int64)) * oh
    mode = "fwd" if g is None else "bwd"
    dtype = dtype_name(x)
    out = np.empty((*lead, oh, ow), x.dtype) if g is None else np.zeros(x.shape, x.dtype)
    name = max_pool_name(mode, dtype, kh, kw)
    run_task(name, lambda: max_pool_ir(mode, dtype, kh, kw),
         [data_pointer(x), data_pointer(out), 0 if g is None else data_pointer(g), w, ow],
         rows, x.size)
    return out


# the widest output row max_pool_backward_planes takes: the kernel keeps a row's winners on
# the stack (8 bytes each; a pool worker's stack is the C default)
MAX_POOL_ROW = 4096


def max_pool_backward_planes(padded: np.ndarray, g: np.ndarray, geometry: tuple) -> np.ndarray:
    """The gradient of max pooling (any windows: geometry = kh, kw, stride_h, stride_w,
    dilation_h, dilation_w) with respect to `padded` (..., HP, WP), the input padded with
    -inf: each of g's (..., OH, OW) values added at its window's winner. OW is at most
    MAX_POOL_ROW."""
    from ..codegen.llvm.windows import max_pool_planes_ir, max_pool_planes_name

    *lead, hp, wp = padded.shape
    oh, ow = g.shape[-2:]
    planes = int(np.prod(lead, dtype=np.int64))
    dtype = dtype_name(padded)
    out = np.zeros(padded.shape, padded.dtype)
    kh, kw = geometry[:2]
    run_task(max_pool_planes_name(dtype, geometry), lambda: max_pool_planes_ir(dtype, geometry),
             [data_pointer(padded), data_pointer(out), data_pointer(g), hp, wp, oh, ow],
             planes, g.size * kh * kw)
    return out


def depthwise_forward(padded: np.ndarray, w: np.ndarray, out_hw: tuple,
                      geometry: tuple) -> np.ndarray:
    """Depthwise convolution (codegen/llvm/depthwise.py) of `padded` (N, C, HP, WP), the input
    padded with zeros, by w (C, kh*kw, contiguous, of its dtype): (N, C, OH, OW). geometry:
    kh, kw, stride_h, stride_w, dilation_h, dilation_w."""
    from ..codegen.llvm.depthwise import depthwise_forward_ir, depthwise_name

    n, c, hp, wp = padded.shape
    oh, ow = out_hw
    out = np.empty((n, c, oh, ow), padded.dtype)
    dtype = dtype_name(padded)
    run_task(depthwise_name("fwd", dtype, geometry),
             lambda: depthwise_forward_ir(dtype, geometry),
             [data_pointer(padded), data_pointer(w), data_pointer(out), c, hp, wp, oh, ow],
             n * c, out.size * geometry[0] * geometry[1])
    return out


def depthwise_weight_grad(padded: np.ndarray, g: np.ndarray, geometry: tuple) -> np.ndarray:
    """The filter's gradient (C, kh*kw) of a depthwise convolution of `padded` (N, C, HP, WP)
    whose output's gradient is g (N, C, OH, OW, contiguous, of its dtype; N, OH, OW > 0)."""
    from ..codegen.llvm.depthwise import depthwise_name, depthwise_weight_grad_ir

    n, c, hp, wp = padded.shape
    oh, ow = g.shape[-2:]
    taps = geometry[0] * geometry[1]
    gw = np.empty((c, taps), padded.dtype)
    dtype = dtype_name(padded)
    run_task(depthwise_name("wgrad", dtype, geometry),
             lambda: depthwise_weight_grad_ir(dtype, geometry),
             [data_pointer(padded), data_pointer(g), data_pointer(gw), c, n, hp, wp, oh, ow],
             c, g.size * taps)
    return gw


def _columns_task(kind, make_ir, x_shape, cols, kernel_hw, stride, padding, dilation,
                  out_hw, per_image, x, work):
    from ..codegen.llvm.columns import kernel_name

    n, c, h, w = x_shape
    (kh, kw), (oh, ow) = kernel_hw, out_hw
    plane = oh * ow
    sn, sk = (c * kh * kw * plane, plane) if per_image else (plane, n * plane)
    geometry = (c, h, w, kh, kw, oh, ow, *stride, *padding, *dilation)
    dtype = dtype_name(x)
    run_task(kernel_name(kind, dtype, geometry, per_image),
             lambda: make_ir(dtype, geometry, per_image),
             [data_pointer(x), data_pointer(cols), sn, sk, n], n * c, work)


def im2col(x: np.ndarray, kernel_hw, stride, padding, dilation, out_hw,
           per_image: bool) -> np.ndarray:
    """The columns of a channels-first x (N, C, H, W): (N, C*KH*KW, OH*OW) per_image, else
    (C*KH*KW, N*OH*OW) (codegen/llvm/columns.py); zeros where a tap falls in the padding."""
    from ..codegen.llvm.columns import im2col_ir, im2col_rows_fit, im2col_rows_ir

    n, c = x.shape[:2]
    depth = c * kernel_hw[0] * kernel_hw[1]
    plane = out_hw[0] * out_hw[1]
    cols = np.empty((n, depth, plane) if per_image else (depth, n * plane), dtype=x.dtype)
    geometry = (*x.shape[1:], *kernel_hw, *out_hw, *stride, *padding, *dilation)
    # small planes: each column row shuffled out of one x row and stored whole (columns.py)
    kind, make_ir = (("im2col_rows", im2col_rows_ir) if im2col_rows_fit(geometry)
                     else ("im2col", im2col_ir))
    _columns_task(kind, make_ir, x.shape, cols, kernel_hw, stride, padding, dilation,
                  out_hw, per_image, x, cols.size)
    return cols


def col2im(cols: np.ndarray, x_shape: tuple, kernel_hw, stride, padding, dilation, out_hw,
           per_image: bool) -> np.ndarray:
    """x (N, C, H, W): the sum of the columns (im2col's layout) where im2col read them."""
    from ..codegen.llvm.columns import col2im_ir, col2im_rows_ir, rows_fit

    x = np.empty(x_shape, dtype=cols.dtype)
    geometry = (*x_shape[1:], *kernel_hw, *out_hw, *stride, *padding, *dilation)
    # small planes: each x row summed in registers and stored once (columns.py)
    kind, make_ir = (("col2im_rows", col2im_rows_ir) if rows_fit(geometry)
                     else ("col2im", col2im_ir))
    _columns_task(kind, make_ir, x_shape, cols, kernel_hw, stride, padding, dilation,
                  out_hw, per_image, x, cols.size)
    return x


def unary_math(op: str, x: np.ndarray) -> np.ndarray:
    """op(x) for an inline math function (codegen/llvm/mathlib.py) over a float32/float64
    contiguous array (ask available(x) first), on the native pool when it is large."""
    from ..codegen.llvm.unary import unary_ir, unary_name

    out = np.empty_like(x)
    dtype = dtype_name(x)
    run_task(unary_name(op, dtype), lambda: unary_ir(op, dtype),
             [data_pointer(x), data_pointer(out)], x.size, x.size)
    return out


def binary(op: str, x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """x op y (op: numpy's add, subtract, multiply or true_divide) for contiguous arrays of one
    float dtype (ask available(x, y) first), on the native pool when large
    (codegen/llvm/binary.py): two arrays of one shape, or an array and a 0-d array (the
    scalar every element reads, on either side). out None: a fresh array; out x: in place
    into x (an array), which must not share memory with y (the task reads y[i] after writing
    x[j] for j < i)."""
    from ..codegen.llvm.binary import binary_ir, binary_name

    dtype = dtype_name(x)
    if x.ndim and not y.ndim:
        form, array = "right", x
    elif y.ndim and not x.ndim:
        form, array = "left", y
    else:
        form, array = "arrays", x
    words = [data_pointer(x), data_pointer(y)]
    if out is x:
        form = "into" if form == "arrays" else "right_into"
    else:
        out = np.empty_like(array)
        words.append(data_pointer(out))
    run_task(binary_name(op, dtype, form), lambda: binary_ir(op, dtype, form), words,
             array.size, array.size)
    return out


def select(cond: np.ndarray, a: np.ndarray, b: np.ndarray,
           shape: tuple | None = None) -> np.ndarray:
    """where(cond, a, b) in one pass (codegen/llvm/select.py), for a contiguous bool cond and
    sides of one float dtype that are each a contiguous array of the output's shape or a 0-d
    array (ask available(...) of the arrays first). The output's shape is cond's, or `shape`,
    over whose trailing dims cond repeats: cond's shape, leading 1s aside, is shape's
    trailing dims (an attention's causal mask over the scores)."""
    from ..codegen.llvm.select import select_ir, select_name

    dtype = dtype_name(a)
    a_one, b_one = a.ndim == 0, b.ndim == 0
    shape = cond.shape if shape is None else shape
    out = np.empty(shape, a.dtype)
    words = [data_pointer(cond), data_pointer(a), data_pointer(b), data_pointer(out)]
    repeated = out.size != cond.size
    if repeated:
        words.append(cond.size)
        rows = out.size // cond.size if cond.size else 0
    else:
        rows = cond.size
    run_task(select_name(dtype, a_one, b_one, repeated),
             lambda: select_ir(dtype, a_one, b_one, repeated), words, rows, out.size)
    return out


INDEX_ADD_SHARED_WIDTH = 4096  # columns from which index_add_rows shares them


def index_add_rows(out: np.ndarray, index: np.ndarray, src: np.ndarray) -> None:
    """out[index[i]] += src[i] in place, rows in order, for out (rows, ...) and src (n, ...)
    of one float dtype, both contiguous (ask available(out, src) first); index holds n
    in-range row numbers (codegen/llvm/scatter.py)."""
    from ..codegen.llvm.scatter import index_add_rows_ir, index_add_rows_name

    n = index.size
    width = src.size // n if n else 0
    index = np.ascontiguousarray(index, dtype=np.int64)
    dtype = dtype_name(out)
    # the pool's threads share the columns, a chunk each: narrower rows than this put two
    # threads' chunks in one cache line of every row, which went back and forth between the
    # cores (512 rows of 128: 57 us on the pool, 10 on one thread)
    work = src.size if width >= INDEX_ADD_SHARED_WIDTH else 0
    run_task(index_add_rows_name(dtype), lambda: index_add_rows_ir(dtype),
             [data_pointer(out), data_pointer(src), data_pointer(index), n, width], width,
             work)


def batch_norm_train(x: np.ndarray, weight, bias, eps: float):
    """Training batch norm of a contiguous x (N, C, *) with (C,) weight and bias of its dtype
    (ask available(...) first): (out, mean, invstd, squares), squares the per-channel sums of
    squared deviations (codegen/llvm/norm.py)."""
    from ..codegen.llvm.norm import batch_norm_ir, batch_norm_name

    n, c = x.shape[:2]
    plane = x.size // (n * c)
    out = np.empty_like(x)
    mean, invstd, squares = (np.empty(c, x.dtype) for _ in range(3))
    dtype = dtype_name(x)
    eps_bits = int(np.array(eps, np.float64).view(np.int64))
    run_task(batch_norm_name("forward", dtype), lambda: batch_norm_ir("forward", dtype),
             [data_pointer(x), data_pointer(out), data_pointer(weight), data_pointer(bias),
              data_pointer(mean), data_pointer(invstd), data_pointer(squares), n, c, plane,
              eps_bits], c, x.size)
    return out, mean, invstd, squares


def batch_norm_train_backward(g: np.ndarray, x: np.ndarray, weight, mean, invstd):
    """The gradients (of x, weight, bias) of training batch norm, all arrays contiguous and
    of one float dtype (ask available(...) first; codegen/llvm/norm.py)."""
    from ..codegen.llvm.norm import batch_norm_ir, batch_norm_name

    n, c = x.shape[:2]
    plane = x.size // (n * c)
    gx = np.empty_like(x)
    g_weight, g_bias = np.empty(c, x.dtype), np.empty(c, x.dtype)
    dtype = dtype_name(x)
    run_task(batch_norm_name("backward", dtype), lambda: batch_norm_ir("backward", dtype),
             [data_pointer(g), data_pointer(x), data_pointer(weight), data_pointer(mean),
              data_pointer(invstd), data_pointer(gx), data_pointer(g_weight),
              data_pointer(g_bias), n, c, plane], c, x.size)
    return gx, g_weight, g_bias
