"""Calling native kernels: their data pointers, and a thread pool that splits large ones.

A kernel takes a (start, end) range of rows; ctypes drops the GIL for the call, so the rows of
a large kernel run on every core at once, while a small one runs on the calling thread.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..codegen.llvm.emit import symbol

# a kernel over fewer elements than this runs inline: handing work to the pool costs ~20 us,
# more than such a kernel takes on one core
PARALLEL_MIN_ELEMENTS = 1 << 19

_pool = None
_pool_lock = threading.Lock()


def _data_pointer_reader():
    """A fast reader of an ndarray's data pointer. numpy's PyArrayObject starts with the
    object header and then `char *data` (its public struct layout), so the pointer sits one
    header past id(array): ~0.1 us where array.ctypes.data takes ~0.9 us. Checked against
    ctypes.data on probes at import, with ctypes.data as the fallback."""
    offset = object.__basicsize__  # the PyObject header: refcount and type
    read = ctypes.c_void_p.from_address
    probes = [np.empty(3, np.float32), np.arange(12.0).reshape(3, 4).T, np.zeros(0)]
    if all(read(id(p) + offset).value == p.ctypes.data for p in probes if p.size):

        def pointer(array):
            return read(id(array) + offset).value

        return pointer
    return lambda array: array.ctypes.data


data_pointer = _data_pointer_reader()


_threads = None


def thread_count() -> int:
    """Threads a large kernel is split over: EMBER_NUM_THREADS, else every core (read once;
    os.cpu_count() costs microseconds per call)."""
    global _threads
    if _threads is None:
        _threads = int(os.environ.get("EMBER_NUM_THREADS", "0")) or os.cpu_count() or 1
    return _threads


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=thread_count(),
                                           thread_name_prefix="ember-kernel")
    return _pool


class NativeKernel:
    """One compiled kernel: its spec, the slots it reads and writes, and the function."""

    def __init__(self, spec, inputs, outputs):
        self.spec = spec
        self.inputs = inputs  # slots
        # [slot, shape, numpy dtype, buffer, value] per output; buffer: None for a fresh
        # array, a planned buffer id, or ("input", slot) for an input's own array
        self.outputs = outputs
        self.function = None
        self.rows = spec.rows
        self.work = math.prod(spec.shape)

    def bind(self, library) -> None:
        n = len(self.spec.args)
        signature = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * n), ctypes.c_int64,
                                     ctypes.c_int64)
        self.function = library.function(symbol(self.spec.name), signature)

    def __call__(self, pointers) -> None:
        rows = self.rows
        if self.work < PARALLEL_MIN_ELEMENTS or rows < 2:
            self.function(*pointers, 0, rows)
            return
        threads = thread_count()
        if threads < 2:
            self.function(*pointers, 0, rows)
            return
        parts = min(threads, rows)
        bounds = [rows * i // parts for i in range(parts + 1)]
        pool = _executor()
        futures = [pool.submit(self.function, *pointers, bounds[i], bounds[i + 1])
                   for i in range(1, parts)]
        self.function(*pointers, bounds[0], bounds[1])
        for f in futures:
            f.result()
