"""Calling native kernels: their data pointers, and the native thread pool that splits large ones.

A kernel takes a (start, end) range of rows. A small one runs on the calling thread; a large
one is cut into chunks that the caller and the pool's native workers (codegen/llvm/pool.py)
claim one by one, all inside one ctypes call, which drops the GIL.
"""

from __future__ import annotations

import atexit
import ctypes
import math
import os
import threading

import numpy as np

from ..codegen.llvm.emit import symbol, task_symbol

# a kernel over fewer elements than this runs inline: below it, waking the pool and sharing
# the rows costs more than the second core saves (a GEMV of 256x784 gains, 256x256 not)
PARALLEL_MIN_ELEMENTS = 1 << 17
CHUNKS_PER_THREAD = 4  # claimed one by one, so a late or busy core takes fewer

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


class _Pool:
    """The native pool of this process: thread_count() - 1 workers beside the caller, started
    on the first large kernel, restarted in a forked child, stopped at exit (before the JIT
    code its workers run is freed)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pid = None
        self.library = None
        self.run = None  # ember_parallel_for as a ctypes function
        self.workers = 0

    def parallel_for(self):
        if self.pid != os.getpid():
            with self.lock:
                if self.pid != os.getpid():
                    self._start()
        return self.run if self.workers else None

    def _start(self) -> None:
        from ..codegen.llvm import pool, target
        from ..codegen.llvm.cache import default_cache

        if self.library is None:
            self.library = default_cache().load(pool.module_ir(target.llvm().get_process_triple()))
            atexit.register(self.stop)
        start = self.library.function("ember_pool_start",
                                      ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64))
        self.workers = start(thread_count() - 1) if thread_count() > 1 else 0
        self.run = self.library.function(
            "ember_parallel_for",
            ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                             ctypes.c_int64))
        self.pid = os.getpid()

    def stop(self) -> None:
        if self.library is not None and self.pid == os.getpid() and self.workers:
            self.library.function("ember_pool_stop", ctypes.CFUNCTYPE(None))()
            self.workers = 0


_pool = _Pool()


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
        self.task = library.address(task_symbol(self.spec.name))
        self.argv_type = ctypes.c_void_p * n

    def __call__(self, pointers) -> None:
        rows = self.rows
        if self.work < PARALLEL_MIN_ELEMENTS or rows < 2:
            self.function(*pointers, 0, rows)
            return
        run = _pool.parallel_for()
        if run is None:
            self.function(*pointers, 0, rows)
            return
        run(self.task, self.argv_type(*pointers), rows,
            min(rows, thread_count() * CHUNKS_PER_THREAD))
