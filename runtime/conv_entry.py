"""Eager conv2d on the CPU through the native entry: one NativeGraph (runtime/graph_entry.py)
of a single conv2d node per geometry, built on the geometry's first call and kept.

The entry multiplies a convolution in LLVM register tiles (codegen/llvm/tiles.py) straight
from each image's columns, one image after another on the native pool's threads, where the
eager kernel writes the whole batch's columns and hands them to BLAS (runtime/kernels/conv.py):
on the 2-core Xeon the entry took 0.87 ms for the digits CNN's 64x32x3x3 layer at batch 64,
the eager kernel 1.6 ms. conv2d's eager kernel and the stride-1 input gradient (a convolution of
the output's gradient with the flipped weight) come here first; None means "not here" and the
caller keeps its own path (another dtype, empty tensors, EMBER_COMPILE=0 or
EMBER_NATIVE_ENTRY=0, no llvmlite or BLAS). The weight gradient comes here too: over planes of
at least 256 positions as a conv2d_backward_weight node (codegen/entry.py ConvWeightCall, the
images shared with the pool), else in the forms conv2d_weight_gradient describes.
"""

from __future__ import annotations

import threading

import numpy as np

from .._log import log
from . import windows

# geometries kept at once; past it, the oldest is dropped (rebuilt from the disk cache)
MAX_PROGRAMS = 256
_FLOATS = (np.dtype(np.float32).char, np.dtype(np.float64).char)
_programs: dict = {}  # (shapes, dtype, stride, padding, dilation) -> NativeGraph or None
_lock = threading.Lock()
_UNSET = object()


_switches = None  # (native_enabled, entry_enabled), imported on the first call


def _enabled() -> bool:
    global _switches
    if _switches is None:  # deferred: graph_entry imports the code generators
        from .compiled import native_enabled
        from .graph_entry import entry_enabled

        _switches = (native_enabled, entry_enabled)
    return _switches[0]() and _switches[1]()


def _build(key):
    """The one-node NativeGraph of the geometry `key`, or None where the entry refuses it."""
    from ..ir.dtypes import as_dtype
    from ..ir.graph import Graph
    from ..ir.types import TensorType
    from .graph_entry import NativeGraph, Unsupported

    op, x_shape, w_shape, dtype_char, stride, padding, dilation = key
    dtype = as_dtype(np.dtype(dtype_char))
    graph = Graph()
    x = graph.add_input(TensorType(x_shape, dtype), "x")
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": 1}
    if op == "conv2d":
        w = graph.add_input(TensorType(w_shape, dtype), "weight")
        node = graph.add_node("conv2d", (x, w), attrs)
    else:  # w_shape: the output gradient's, then the weight's
        g_shape, weight_shape = w_shape
        g = graph.add_input(TensorType(g_shape, dtype), "grad")
        node = graph.add_node(op, (x, g), {**attrs, "weight_shape": weight_shape})
    graph.set_outputs(node.outputs)
    try:
        return NativeGraph(graph, op)
    except Unsupported as why:
        log("kernels", f"{op} {x_shape} * {w_shape}: the eager kernel, not an entry: {why}")
        return None


def _program(key):
    """The entry of the geometry `key` (_build), made on its first call and kept."""
    program = _programs.get(key, _UNSET)
    if program is _UNSET:
        with _lock:
            program = _programs.get(key, _UNSET)
            if program is _UNSET:
                try:
                    program = _build(key)
                except ImportError:  # no llvmlite: the eager kernels only
                    program = None
                if len(_programs) >= MAX_PROGRAMS:
                    del _programs[next(iter(_programs))]
                _programs[key] = program
    return program


def _run(program, x, w):
    (out,) = program(np, [x, w])
    # an eager call's arrays are the caller's: kept by the entry, every geometry would hold
    # its last input alive (up to 4 MiB each)
    program.release_inputs()
    return out


def conv2d(x: np.ndarray, w: np.ndarray, stride: tuple, padding: tuple,
           dilation: tuple) -> np.ndarray | None:
    """conv2d(x, w) with groups 1 through its geometry's entry, or None where there is none
    (the caller then runs its own kernel)."""
    if (x.__class__ is not np.ndarray or w.__class__ is not np.ndarray or x.ndim != 4
            or w.ndim != 4 or x.dtype != w.dtype or x.dtype.char not in _FLOATS
            or x.size == 0 or w.size == 0):
        return None
    if not _enabled():  # read each call: a test or a user may switch compilation off
        return None
    program = _program(("conv2d", x.shape, w.shape, x.dtype.char, tuple(stride),
                        tuple(padding), tuple(dilation)))
    return None if program is None else _run(program, x, w)


def _weight_gradient_by_images(x, g, weight_shape, stride, padding, dilation):
    """The weight gradient as the entry's ConvWeightCall: each thread sums its part of the
    images, one image's columns and one GEMM (g_n @ columns_n^T) at a time, where the
    eager kernel writes the whole batch's columns for one GEMM. ResNet18's 64-channel 3x3
    layers over 32x32 images, batch 32 (EPYC, 2 threads): 14.8 ms by the batch's columns
    (75 MB of them, written to fresh pages each call). None where the entry refuses (small
    planes, no BLAS)."""
    if (g.__class__ is not np.ndarray or g.dtype != x.dtype or g.ndim != 4 or x.shape[0] < 2
            or g.shape[2] * g.shape[3] < _weight_min_plane()):
        return None
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g)
    program = _program(("conv2d_backward_weight", x.shape, (g.shape, tuple(weight_shape)),
                        x.dtype.char, tuple(stride), tuple(padding), tuple(dilation)))
    return None if program is None else _run(program, x, g)


def _weight_min_plane() -> int:
    from .graph_entry import WEIGHT_BY_IMAGES_MIN_PLANE

    return WEIGHT_BY_IMAGES_MIN_PLANE


def conv2d_weight_gradient(x: np.ndarray, g: np.ndarray, weight_shape: tuple, stride: tuple,
                           padding: tuple, dilation: tuple) -> np.ndarray | None:
    """The weight gradient of conv2d(x, w) with groups 1, given the output's gradient g, as a
    convolution the entry runs, or None where it would not gain (the caller's GEMM then).

    gw[o, c, i, j] = sum over n, oh, ow of g[n, o, oh, ow] * x[n, c, oh*s - p + i*d, ...]: a
    convolution of x with its channels as the batch and its images as the channels, x
    (C, N, H, W), by g's planes as the kernel, g (O, N, OH, OW), at stride d and dilation s,
    whose (C, O, KH', KW') result holds gw's taps in its first KH x KW. The entry's register
    tiles run along the result's positions, so it gains where those fill whole vectors (the
    4x4 kernels of a DCGAN: 0.19 ms against the GEMM's 0.31 at batch 16, 16 to 32
    channels), and only with g small enough to be held as the tiles' weight."""
    from ..codegen.llvm.entry import tiled_weight
    from ..codegen.llvm.tiles import columns_ld

    if x.__class__ is not np.ndarray or g.__class__ is not np.ndarray or x.ndim != 4:
        return None
    n, c, h, w = x.shape
    o, _, kh, kw = weight_shape
    oh, ow = g.shape[2:]
    taps = tuple((size + 2 * p - s * (out - 1) - 1) // d + 1
                 for size, p, s, out, d in zip((h, w), padding, stride, (oh, ow), dilation))
    plane = taps[0] * taps[1]
    dtype = windows.dtype_name(x)
    if dtype not in ("float32", "float64"):
        return None
    if columns_ld(plane, dtype) != plane or not tiled_weight(o, n * oh * ow, dtype):
        if not _enabled():
            return None
        by_images = _weight_gradient_by_images(x, g, weight_shape, stride, padding, dilation)
        if by_images is not None:
            return by_images
        return _weight_gradient_by_columns(x, g, weight_shape, stride, padding, dilation)
    by_channel = np.ascontiguousarray(x.transpose(1, 0, 2, 3))
    kernel = np.ascontiguousarray(g.transpose(1, 0, 2, 3))
    out = conv2d(by_channel, kernel, tuple(dilation), tuple(padding), tuple(stride))
    if out is None:
        return None
    return np.ascontiguousarray(out[:, :, :kh, :kw].transpose(1, 0, 2, 3))


def _weight_gradient_by_columns(x, g, weight_shape, stride, padding, dilation):
    """The weight gradient as one product in the entry's register tiles, where g's channels
    fill whole vectors (at most TILED_PLANE_MAX): gw's transpose (C*KH*KW, O) is the batch's
    columns of x (C*KH*KW, N*OH*OW) times g laid out (N*OH*OW, O), a pointwise convolution
    of that layout, as a one-row image, by the columns as its weight. The digits CNN's
    64x32x3x3 layer at batch 64: 1.3 ms against 1.7 for the columns' GEMM by OpenBLAS (one
    thread), whose packing of the long (288, 4096) operand the tiles skip. None where the
    channels do not fit (the caller's GEMM then)."""
    from ..codegen.llvm.entry import TILED_PLANE_MAX
    from ..codegen.llvm.tiles import columns_ld

    n, c, h, w = x.shape
    o, _, kh, kw = weight_shape
    oh, ow = g.shape[2:]
    if (o > TILED_PLANE_MAX or columns_ld(o, x.dtype.name) != o or g.dtype != x.dtype
            or g.shape[:2] != (n, o)):
        return None
    x = np.ascontiguousarray(x)
    if not windows.available(x):
        return None
    cols = windows.im2col(x, (kh, kw), tuple(stride), tuple(padding), tuple(dilation),
                          (oh, ow), False)  # (C*KH*KW, N*OH*OW)
    depth, count = cols.shape
    rows = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).reshape(1, count, 1, o)
    out = conv2d(rows, cols.reshape(depth, count, 1, 1), (1, 1), (0, 0), (1, 1))
    if out is None:
        return None
    return np.ascontiguousarray(out.reshape(depth, o).T).reshape(weight_shape)


def gradient_columns(g: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """The per-image columns (N, C*KH*KW, OH*OW) of the input gradient of conv2d(x, w) with
    groups 1, given the output's gradient g (N, O, OH, OW): w (O, C, KH, KW) transposed times
    each image of g, as a pointwise convolution the entry reads g's images in place for; None
    where there is no entry (col2im then sums the columns into the gradient)."""
    if w.__class__ is not np.ndarray or w.ndim != 4 or g.ndim != 4:
        return None
    o = w.shape[0]
    depth = w.size // o if o else 0
    weight = np.ascontiguousarray(w.reshape(o, depth).T).reshape(depth, o, 1, 1)
    cols = conv2d(g, weight, (1, 1), (0, 0), (1, 1))
    return None if cols is None else cols.reshape(g.shape[0], depth, -1)
