"""The native window kernels (codegen/llvm/windows.py), and the one-function passes of
codegen/llvm/unary.py, as functions on numpy arrays.

Each kernel is compiled once per dtype and kernel size (through the kernel cache, so later
processes load it from disk) and runs its rows on the native pool when the work is large
enough to share. Callers ask `available(...)` first and keep their numpy path for every other
case: another device, dtype, layout, or llvmlite missing.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from .native import CHUNKS_PER_THREAD, PARALLEL_MIN_ELEMENTS, _pool, data_pointer, thread_count

_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_kernels: dict = {}
_ARGV = [ctypes.c_int64 * n for n in range(16)]  # argv array types by length
_lock = threading.Lock()
_broken = None  # True: no llvmlite here, numpy paths only (None: not looked yet)


def available(*arrays) -> bool:
    """Whether the native kernels can take these arrays: CPU, float32/float64, contiguous."""
    global _broken
    if _broken is None:
        try:
            import llvmlite.binding  # noqa: F401
        except ImportError:
            _broken = True
        else:
            _broken = False
    return not _broken and all(
        a.__class__ is np.ndarray and a.dtype.name in ("float32", "float64")
        and a.flags.c_contiguous for a in arrays)


def _kernel(name: str, make_ir):
    """(the task as a ctypes function, its address, its library) for the kernel `name`."""
    entry = _kernels.get(name)
    if entry is None:
        with _lock:
            entry = _kernels.get(name)
            if entry is None:
                from ..codegen.llvm.cache import default_cache

                library = default_cache().load(make_ir())
                # the library is kept with its functions: its code lives as long as it does
                # (a kernel cache that is replaced would otherwise free code still called)
                entry = _kernels[name] = (library.function(name, _SIGNATURE),
                                          library.address(name), library)
    return entry


def run_task(name: str, make_ir, words: list, rows: int, work: int) -> None:
    """Run the pool task `name` (compiled from make_ir() once) over rows [0, rows), on the
    native pool when `work` (elements) is worth sharing. words: argv's 64-bit words."""
    entry = _kernels.get(name)
    function, address, _ = entry if entry is not None else _kernel(name, make_ir)
    argv = _ARGV[len(words)](*words)
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
    dtype = x.dtype.name
    out = np.empty((*lead, oh, ow), x.dtype) if g is None else np.zeros(x.shape, x.dtype)
    name = max_pool_name(mode, dtype, kh, kw)
    run_task(name, lambda: max_pool_ir(mode, dtype, kh, kw),
         [data_pointer(x), data_pointer(out), 0 if g is None else data_pointer(g), w, ow],
         rows, x.size)
    return out


def col2im(cols: np.ndarray, padded_shape: tuple, stride, dilation) -> np.ndarray:
    """cols (N, OH, OW, KH, KW, C) added back where each tap read it, into a zeroed
    (N, HP, WP, C) array (channels last; the caller crops the padding)."""
    from ..codegen.llvm.windows import col2im_ir, col2im_name

    n, oh, ow, kh, kw, c = cols.shape
    out = np.zeros(padded_shape, dtype=cols.dtype)
    dtype = cols.dtype.name
    name = col2im_name(dtype, kh, kw)
    run_task(name, lambda: col2im_ir(dtype, kh, kw),
         [data_pointer(cols), data_pointer(out), oh, ow, padded_shape[1], padded_shape[2], c,
          stride[0], stride[1], dilation[0], dilation[1]],
         n, cols.size)
    return out


def im2col(x_nhwc: np.ndarray, kernel_hw, stride, padding, dilation, out_hw) -> np.ndarray:
    """The columns (N, OH, OW, KH, KW, C) of a channels-last input: every tap's C values, or
    zeros where the tap falls in the padding."""
    from ..codegen.llvm.windows import im2col_ir, im2col_name

    n, h, w, c = x_nhwc.shape
    kh, kw = kernel_hw
    oh, ow = out_hw
    out = np.empty((n, oh, ow, kh, kw, c), dtype=x_nhwc.dtype)
    dtype = x_nhwc.dtype.name
    run_task(im2col_name(dtype, kh, kw), lambda: im2col_ir(dtype, kh, kw),
             [data_pointer(x_nhwc), data_pointer(out), h, w, oh, ow, c, stride[0], stride[1],
              padding[0], padding[1], dilation[0], dilation[1]],
             n, out.size)
    return out


def unary_math(op: str, x: np.ndarray) -> np.ndarray:
    """op(x) for an inline math function (codegen/llvm/mathlib.py) over a float32/float64
    contiguous array (ask available(x) first), on the native pool when it is large."""
    from ..codegen.llvm.unary import unary_ir, unary_name

    out = np.empty_like(x)
    dtype = x.dtype.name
    run_task(unary_name(op, dtype), lambda: unary_ir(op, dtype),
             [data_pointer(x), data_pointer(out)], x.size, x.size)
    return out
