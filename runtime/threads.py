"""One thread budget for ember's native pool (native.py) and the BLAS library numpy calls.

Both split work over threads, and both wait for their slowest thread: OpenBLAS cuts a GEMM
into one fixed part per thread, ember's pool waits for chunks already claimed. When another
process keeps a core busy, a thread placed there runs in scheduler slices of milliseconds,
and every job it is part of waits for it: on this 2-core machine, with the second core busy,
a 512x512x512 GEMM took 44 ms on two BLAS threads and 1.7 ms on one, and the digits CNN's
eager forward a median 67 ms where one thread each gave 12 ms (benchmarks/threads.py).

So ember keeps one budget: at most EMBER_NUM_THREADS threads (default: every core) for both,
and fewer while other processes keep cores busy. `threads()` is the number a job may use now:
the cores others left idle over the last ~50 ms (/proc/stat's busy time less this process's
own), at least 1 and at most the limit. The pool runs a kernel on the calling thread alone
when it is 1, and `before_blas()`, called by the kernels just before a BLAS call, gives
OpenBLAS the same number (through its own API, found in the process by ctypes; threadpoolctl
only finds it where that fails). Where OpenBLAS takes a threads callback (0.3.27 and later, as
numpy's wheels ship), its jobs run on the pool's workers (run_blas_jobs_on), so one set of
threads serves both; with an older one the pool's idle workers sleep at once before a BLAS
call instead of spinning beside its threads. The eager matmul and linear kernels' GEMMs go
around OpenBLAS's threading altogether: runtime/pool_gemm.py gives each pool thread a block of
the product as one single-threaded cblas call (runtime/blas.py finds the function).

Where /proc/stat is missing (not Linux), the budget is the limit.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

# how often the budget looks at the machine again: reading /proc/stat costs ~20 us
INTERVAL_S = 0.05

_limit = None


def limit() -> int:
    """EMBER_NUM_THREADS, else every core this process may run on (read once)."""
    global _limit
    if _limit is None:
        value = os.environ.get("EMBER_NUM_THREADS", "").strip()
        try:
            _limit = int(value) if value else 0
        except ValueError:
            from ..errors import value_error

            raise value_error(f"EMBER_NUM_THREADS must be a positive integer, got {value!r}")
        if _limit <= 0:
            _limit = _cores()
    return _limit


def set_num_threads(n: int) -> None:
    """torch.set_num_threads: the limit (EMBER_NUM_THREADS's role) made n for this process,
    for the native pool and BLAS both. The pool starts limit() - 1 workers on its first large
    kernel; a limit raised after that is held to the workers already running."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        from ..errors import value_error

        raise value_error(f"set_num_threads expects a positive integer, got {n!r}")
    global _limit
    _limit = n
    with _budget.lock:
        _budget.threads = None  # the next job measures the machine again under the new limit


def get_num_threads() -> int:
    """torch.get_num_threads: the most threads a parallel job uses (limit())."""
    return limit()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Budget:
    """The threads a job may use now: the limit, less the cores other processes keep busy."""

    def __init__(self):
        self.lock = threading.Lock()
        self.threads = None
        self.checked = 0.0
        self.sample = None  # (wall, machine busy seconds, own cpu seconds)
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def now(self) -> int:
        current = time.monotonic()
        if self.threads is not None and current - self.checked < INTERVAL_S:
            return self.threads
        with self.lock:
            if self.threads is None or current - self.checked >= INTERVAL_S:
                self.checked = current
                self.threads = self._measure(current)
                callers.next_interval()
        return self.threads

    def _measure(self, wall: float) -> int:
        most = limit()
        if most == 1:
            return 1
        busy = self._machine_busy()
        if busy is None:
            return most
        own = time.process_time()
        previous, self.sample = self.sample, (wall, busy, own)
        if previous is None:
            return most if self.threads is None else self.threads
        elapsed = wall - previous[0]
        if elapsed <= 0:
            return self.threads or most
        others = max((busy - previous[1]) - (own - previous[2]), 0.0) / elapsed
        idle = _cores() - others
        return max(1, min(most, int(idle + 0.5)))

    def _machine_busy(self) -> float | None:
        """Seconds all cores have spent busy since boot (/proc/stat's first line)."""
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()[1:]
        except OSError:
            return None
        values = [int(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        # guest time is already counted in user and nice
        return (sum(values[:8]) - idle) / self.ticks


_budget = _Budget()


def threads() -> int:
    """The threads a parallel job (a pool kernel, a BLAS call) may use now."""
    return _budget.now()


class _Blas:
    """The loaded OpenBLAS's thread-count functions, or None where there is none."""

    _SET = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads64_", "scipy_openblas_set_num_threads")
    _GET = ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
            "openblas_get_num_threads64_", "scipy_openblas_get_num_threads")
    # OpenBLAS >= 0.3.27: its jobs go to a function of the caller's instead of its own threads
    _CALLBACK = ("openblas_set_threads_callback_function",
                 "scipy_openblas_set_threads_callback_function64_",
                 "openblas_set_threads_callback_function64_",
                 "scipy_openblas_set_threads_callback_function")

    def __init__(self):
        self.looked = False
        self.set_fn = self.get_fn = self.callback_fn = None
        self.current = None
        self.callback = None  # the address OpenBLAS runs its jobs through, when it is ours
        self.first_free = 0  # the thread number the jobs run on it start at
        # callers inside entries at once set the count (threads._Callers): without the lock,
        # one could skip its setting as already made while another's is still being made,
        # and OpenBLAS would keep the count the earlier caller asked for
        self.lock = threading.Lock()

    def find(self) -> bool:
        if not self.looked:
            self.looked = True
            import numpy  # noqa: F401  (its BLAS is loaded with it)

            for path in _openblas_paths():
                try:
                    library = ctypes.CDLL(path)
                except OSError:
                    continue
                set_fn = _symbol(library, self._SET)
                get_fn = _symbol(library, self._GET)
                if set_fn is not None and get_fn is not None:
                    set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
                    get_fn.argtypes, get_fn.restype = [], ctypes.c_int
                    self.set_fn, self.get_fn = set_fn, get_fn
                    callback_fn = _symbol(library, self._CALLBACK)
                    if callback_fn is not None:
                        callback_fn.argtypes, callback_fn.restype = [ctypes.c_void_p], None
                        self.callback_fn = callback_fn
                        self.first_free = _first_free_thread_number(library)
                    break
        return self.set_fn is not None

    def set(self, n: int) -> None:
        """OpenBLAS's thread count made n (the last caller's wish stands)."""
        with self.lock:
            if n != self.current and self.find():
                self.set_fn(n)
                self.current = n


def _symbol(library, names):
    for name in names:
        fn = getattr(library, name, None)
        if fn is not None:
            return fn
    return None


def _openblas_paths() -> list[str]:
    """Files of the OpenBLAS libraries this process has loaded (numpy's wheels bundle one as
    libscipy_openblas*.so), from /proc/self/maps, else as threadpoolctl finds them."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path) and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    if not paths:
        try:
            import threadpoolctl
        except ImportError:
            return paths
        paths = [info["filepath"] for info in threadpoolctl.threadpool_info()
                 if info.get("internal_api") == "openblas"]
    return paths


_blas = _Blas()


def _first_free_thread_number(library) -> int:
    """The first of OpenBLAS's thread numbers none of its own workers uses (they use 0 up to
    its thread count less one), where the jobs' numbers up to the core count still fit its
    MAX_THREADS (read from its config string); else 0."""
    try:
        workers = ctypes.c_int.in_dll(library, "blas_num_threads").value - 1
        config = _symbol(library, ("openblas_get_config", "scipy_openblas_get_config64_",
                                   "openblas_get_config64_", "scipy_openblas_get_config"))
        config.restype = ctypes.c_char_p
        words = config().decode(errors="replace").split()
        most = next(int(w.split("=")[1]) for w in words if w.startswith("MAX_THREADS="))
    except (ValueError, AttributeError, StopIteration, TypeError, IndexError):
        return 0
    return workers if 0 <= workers and workers + _cores() <= most else 0


def run_blas_jobs_on(address: int | None, set_first_thread=None) -> bool:
    """OpenBLAS's threaded jobs run through the native function at `address` (the pool's
    ember_blas_jobs: on the pool's workers), or on OpenBLAS's own threads again for None;
    set_first_thread(n), called first, tells that function the OpenBLAS thread number of its
    first job (past OpenBLAS's own workers'). Returns whether OpenBLAS takes such a function
    (0.3.27 and later).

    OpenBLAS's own workers spin for ~2^28 cycles after each job (a nop loop on x86-64, not a
    yield), so in a training step, where GEMMs come every millisecond, one of them kept a core
    busy all along: the pool's worker shared that core with it, and a GELU after a GEMM took as
    long on two threads as on one (303 against 263 us; 146 with no GEMM before it). With its
    jobs on the pool, one set of threads serves both."""
    if not _blas.find() or _blas.callback_fn is None:
        return False
    with _blas.lock:
        if set_first_thread is not None:
            set_first_thread(_blas.first_free)
        _blas.callback_fn(address)
        _blas.callback = address
    return True


def blas_on_pool() -> bool:
    """Whether OpenBLAS's jobs run on the native pool now (run_blas_jobs_on)."""
    return _blas.callback is not None


def blas_threads() -> int | None:
    """The threads the loaded OpenBLAS uses now (its own get function), or None without one."""
    return _blas.get_fn() if _blas.find() else None


def before_blas(most: int | None = None) -> int:
    """Call just before a BLAS call: OpenBLAS gets the budget's threads (at most `most`), and
    the pool's idle workers go to sleep rather than spin beside its threads (unless its jobs
    run on them: run_blas_jobs_on). Returns the threads."""
    n = threads() if most is None else max(1, min(threads(), most))
    _blas.set(n)
    park = _park
    if park is not None and _blas.callback is None:
        park()
    return n


def blas_single_threaded() -> None:
    """OpenBLAS on one thread: for GEMMs that each thread of the native pool calls itself
    (runtime/graph_entry.py's convolutions, one small product per image)."""
    _blas.set(1)


class _Callers:
    """How many threads are inside a native entry now (runtime/graph_entry.py). OpenBLAS's
    thread count is one setting of the whole process, and the pool's workers are shared: two
    callers that each gave their GEMMs (or pool kernels) every core would run twice the
    threads there are cores, each job waiting for a thread the other's displaced. So each
    caller takes its share, the budget over the callers (`crowd`): on 2 cores, one caller's
    jobs use both, two callers' one each.

    Callers that call again and again are inside an entry most of the time, but not always:
    counted at each instant, a caller would find itself alone between the other's calls and
    start a job on every core just as the other comes back. So the crowd is the most callers
    seen inside at once over the last one or two budget intervals (INTERVAL_S); a caller left
    alone has the whole budget again an interval or two later. Counting is a list's append
    and pop (each one step under the GIL, no lock: every call of every entry does it); the
    peaks are plain counts that racing callers may each write, all of them small."""

    def __init__(self):
        self._inside: list = []
        self._peak = 0  # the most callers inside at once in this interval
        self._last_peak = 0  # in the one before

    @property
    def active(self) -> int:
        """The callers inside an entry now."""
        return len(self._inside)

    def enter(self) -> int:
        """Count this caller in; returns the callers inside now, this one included."""
        inside = self._inside
        inside.append(None)
        n = len(inside)
        if n > self._peak:
            self._peak = n
        return n

    def leave(self) -> None:
        self._inside.pop()

    def next_interval(self) -> None:
        """Start counting a new interval's crowd (the budget calls it as it looks at the
        machine again, once per INTERVAL_S)."""
        self._last_peak, self._peak = self._peak, len(self._inside)

    def crowd(self, inside: int) -> int:
        """The callers to share the threads between: the most inside at once over this
        interval and the one before, and at least `inside` (the count enter gave this
        caller)."""
        return max(inside, self._peak, self._last_peak)

    def share(self, inside: int) -> int:
        """The threads this caller may use now: the budget over the crowd, at least 1."""
        return threads() // max(inside, self._peak, self._last_peak) or 1


callers = _Callers()


_park = None  # native.py's: tells the pool's idle workers to sleep now


def set_park(fn) -> None:
    """Register the pool's park function (native.py, once its code is loaded)."""
    global _park
    _park = fn
