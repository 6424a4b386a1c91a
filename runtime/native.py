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

from ..codegen.llvm.emit import CHUNKS_PER_THREAD, PARALLEL_FOR, symbol, task_symbol
from . import threads

# a kernel over fewer elements than this runs inline: below it, waking the pool and sharing
# the rows costs more than a second core saves (the batch-1 MLP's GEMVs of 256x784 and 256x256
# gain; its 10x256 does not)
PARALLEL_MIN_ELEMENTS = 1 << 16


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


def thread_count() -> int:
    """The most threads a large kernel is split over: EMBER_NUM_THREADS, else every core
    (threads.limit(); the budget, threads.threads(), may use fewer while other processes
    keep cores busy)."""
    return threads.limit()


_pid = [os.getpid()]  # this process's id, kept by a fork hook (os.getpid() costs ~0.2 us)
if hasattr(os, "register_at_fork"):  # (where there is none, there is no fork either)
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


class _Pool:
    """The native pool of this process: thread_count() - 1 workers beside the caller, started
    on the first large kernel, restarted in a forked child, stopped at exit (before the JIT
    code its workers run is freed)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.pid = None
        self.library = None
        self.run = None  # ember_parallel_for as a ctypes function
        self.workers = 0

    def _started(self) -> None:
        """The workers running in this process (started again in a forked child)."""
        if self.pid != _pid[0]:
            with self.lock:
                if self.pid != os.getpid():
                    self._start()

    def parallel_for(self):
        """ember_parallel_for (a ctypes function), with the workers running, or None when
        there is one thread, or the thread budget is one thread now (threads.py)."""
        self._started()
        return self.run if self.workers and threads.threads() > 1 else None

    def threads(self) -> int:
        """The threads a run's parallel kernels are shared by: 1 runs them serially."""
        return min(self.workers + 1, threads.threads()) if self.workers else 1

    def started_threads(self) -> int:
        """threads(), with the workers started on the first call in this process (a native
        entry's kernels call ember_parallel_for themselves)."""
        self._started()
        return self.threads()

    def threads_of(self, share: int) -> int:
        """The threads a run's parallel kernels are shared by when this caller's share of
        the budget is `share` (threads._Callers.share): at most the workers and the caller,
        the workers started on the first call in this process."""
        if self.pid != _pid[0]:
            self._started()
        return min(self.workers + 1, share)

    def load(self) -> None:
        """The pool's object code, loaded once; its ember_parallel_for is made a symbol the
        object code of later modules links against (their runs call it)."""
        if self.library is not None:
            return
        with self.lock:
            if self.library is None:
                from ..codegen.llvm import pool, target
                from ..codegen.llvm.cache import default_cache

                binding = target.llvm()
                library = default_cache().load(pool.module_ir(binding.get_process_triple()))
                binding.add_symbol(PARALLEL_FOR, library.address(PARALLEL_FOR))
                atexit.register(self.stop)
                self.library = library

    def _start(self) -> None:
        self.load()
        start = self.library.function("ember_pool_start",
                                      ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64))
        self.workers = start(thread_count() - 1) if thread_count() > 1 else 0
        if self.workers:
            threads.set_park(self.library.function("ember_pool_park", ctypes.CFUNCTYPE(None)))
            threads.run_blas_jobs_on(
                self.library.address("ember_blas_jobs"),
                self.library.function("ember_blas_first_thread",
                                      ctypes.CFUNCTYPE(None, ctypes.c_int32)))
        self.run = self.library.function(
            "ember_parallel_for",
            ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                             ctypes.c_int64))
        self.pid = os.getpid()

    def stop(self) -> None:
        if self.library is not None and self.pid == os.getpid() and self.workers:
            # OpenBLAS back on its own threads first: a GEMM after the JIT code is freed
            # must not call into it
            threads.run_blas_jobs_on(None)
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
        self.work = math.prod(spec.shape)
        self.respec(spec)

    def respec(self, spec) -> None:
        """Take `spec`, the same work over another loop shape or into other places
        (runtime/cats.py), before the kernel is emitted."""
        self.spec = spec
        self.rows = spec.rows
        # shared by the pool's threads: below this, waking them costs more than they save;
        # a kernel with column sums runs its rows in one call (KernelSpec.serial)
        self.parallel = (self.work >= PARALLEL_MIN_ELEMENTS and self.rows >= 2
                         and not spec.serial)

    def bind(self, library) -> None:
        n = len(self.spec.args)
        signature = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * n), ctypes.c_int64,
                                     ctypes.c_int64)
        self.function = library.function(symbol(self.spec.name), signature)
        # the library is kept with its functions: its code lives as long as it does (a kernel
        # cache that is replaced, as a changed EMBER_CACHE_DIR replaces it, drops its own)
        self.library = library
        self.task = library.address(task_symbol(self.spec.name))
        self.argv_type = ctypes.c_void_p * n

    def __call__(self, pointers) -> None:
        rows = self.rows
        if not self.parallel:
            self.function(*pointers, 0, rows)
            return
        run = _pool.parallel_for()
        if run is None:
            self.function(*pointers, 0, rows)
            return
        run(self.task, self.argv_type(*pointers), rows,
            min(rows, thread_count() * CHUNKS_PER_THREAD))


class NativeRun:
    """Consecutive kernels called from one native function (emit.emit_run): the pointers of
    all of them go in one array, and one ctypes call runs them in order."""

    def __init__(self, kernels, library, symbol_name: str):
        self.kernels = kernels
        self.library = library  # kept with its function, as NativeKernel.bind keeps it
        self.entry = library.function(symbol_name,
                                      ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64))
        self.array_type = ctypes.c_void_p * sum(len(k.spec.args) for k in kernels)
        self.parallel = any(k.parallel for k in kernels)
        self._local = threading.local()

    def __call__(self, pointers) -> None:
        array = getattr(self._local, "array", None)
        if array is None:
            array = self._local.array = self.array_type()
        array[:] = pointers
        self.entry(array, _pool.threads() if self.parallel else 1)


def load_pool() -> None:
    """Load the pool's code (not its threads): a module with runs links against it."""
    _pool.load()
