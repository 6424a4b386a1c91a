"""OpenBLAS's threaded jobs run on ember's native pool (runtime/threads.run_blas_jobs_on,
codegen/llvm/pool.py's ember_blas_jobs): one set of threads for BLAS and ember's kernels.
Each test runs in a process of its own, with two threads whatever the machine's load, so the
threaded GEMM path is taken and a hang shows as a timeout."""

import os
import subprocess
import sys
import textwrap

import pytest

# the prologue of every script: two threads for OpenBLAS and the pool even on a busy machine,
# the pool started by a large kernel, and GEMMs checked against float64 products
_PROLOGUE = textwrap.dedent("""
    import ctypes, os, sys, threading
    import numpy as np
    import ember
    from ember.runtime import native, threads

    threads._budget.now = lambda: 2
    kernel = ember.script(lambda x: (x * 2 + 1).amax(-1, keepdim=True))
    big = ember.ones(512, 1024)
    kernel(big), kernel(big)  # the second call runs on the pool, which starts it

    def check_gemms(seed, shapes, dtype=np.float32):
        rng = np.random.default_rng(seed)
        for m, k, n in shapes:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            threads.before_blas()
            got = a @ b
            want = a.astype(np.float64) @ b.astype(np.float64)
            tol = 1e-3 if dtype == np.float32 else 1e-10
            assert np.abs(got - want).max() <= tol * np.sqrt(k), (m, k, n, dtype)

    SHAPES = [(512, 512, 512), (1000, 300, 700), (64, 2000, 64), (257, 129, 513),
              (2048, 64, 128)]
""")


def _run(body: str, timeout: int = 240) -> str:
    env = dict(os.environ, EMBER_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", _PROLOGUE + textwrap.dedent(body)],
                            capture_output=True, text=True, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _takes_callback() -> bool:
    from ember.runtime import threads

    return threads._blas.find() and threads._blas.callback_fn is not None


pytestmark = [
    pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no pool"),
    pytest.mark.skipif(not _takes_callback(),
                       reason="this OpenBLAS predates openblas_set_threads_callback_function"),
]


def test_openblas_jobs_go_through_the_pools_function_and_give_right_products():
    out = _run("""
        assert threads.blas_on_pool(), "the pool's start hands OpenBLAS its jobs function"
        calls = []
        native_jobs = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int)(
            native._pool.library.address("ember_blas_jobs"))

        @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t,
                          ctypes.c_void_p, ctypes.c_int)
        def counting(sync, dojob, numjobs, size, data, arg):
            calls.append(numjobs)
            native_jobs(sync, dojob, numjobs, size, data, arg)

        threads.run_blas_jobs_on(ctypes.cast(counting, ctypes.c_void_p).value)
        check_gemms(0, SHAPES)
        check_gemms(1, SHAPES, np.float64)
        threads.run_blas_jobs_on(native._pool.library.address("ember_blas_jobs"))
        assert calls and all(n == 2 for n in calls), calls
        check_gemms(2, SHAPES)
        print("ok", len(calls))
    """)
    assert out.startswith("ok")


def test_gemms_from_several_threads_while_the_pool_runs_kernels_stay_right():
    """Job sets from four threads at once (one at a time through OpenBLAS's per-thread
    buffers) while a fifth keeps the pool busy with kernels: the sets that find the pool
    taken run on threads of their own, and nothing hangs."""
    out = _run("""
        errors, stop = [], threading.Event()

        def gemms(seed):
            try:
                for i in range(6):
                    check_gemms(seed * 100 + i, SHAPES)
            except BaseException as e:
                errors.append(e)

        def kernels():
            want = np.full((512, 1), 3.0, np.float32)
            while not stop.is_set():
                if not (kernel(big).numpy() == want).all():
                    errors.append(AssertionError("kernel"))

        busy = threading.Thread(target=kernels)
        busy.start()
        workers = [threading.Thread(target=gemms, args=(s,)) for s in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        stop.set()
        busy.join()
        assert not errors, repr(errors[0])
        print("ok")
    """)
    assert out.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_runs_threaded_gemms_before_and_after_its_pool_starts():
    """The child inherits the jobs function but none of the workers: its GEMMs run on
    threads of their own until its first large kernel starts its pool."""
    out = _run("""
        assert threads.blas_on_pool()
        pid = os.fork()
        if pid == 0:
            try:
                check_gemms(3, SHAPES)
                kernel(big)
                ok = native._pool.pid == os.getpid() and native._pool.workers >= 1
                check_gemms(4, SHAPES)
            except BaseException:
                os._exit(3)
            os._exit(0 if ok else 4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        check_gemms(5, SHAPES)
        print("ok")
    """)
    assert out.strip() == "ok"


def test_gemms_after_the_pool_stopped_at_exit_run_on_openblas_threads():
    """An exit handler that runs after the pool's (registered before ember's code loaded)
    still multiplies: the pool gives OpenBLAS its own threads back before it stops."""
    out = _run("""
        import atexit
        assert threads.blas_on_pool()

        def late():
            assert not threads.blas_on_pool()
            check_gemms(6, SHAPES)
            print("late ok", flush=True)

        atexit.unregister(native._pool.stop)
        atexit.register(late)
        atexit.register(native._pool.stop)  # runs first, as when ember registered it later
        check_gemms(7, SHAPES)
    """)
    assert out.strip() == "late ok"


def test_a_gemm_right_after_the_pool_starts_finds_its_workers():
    """A worker counts the jobs from the generation the pool's start leaves, not from what
    it reads once its thread runs: the first GEMM, published before that, was missed, and
    OpenBLAS's jobs, which wait for each other, hung (a loaded graph file's first call)."""
    script = textwrap.dedent("""
        import numpy as np
        from ember.runtime import native, threads
        threads._budget.now = lambda: 2
        a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
        native._pool._started()
        assert threads.blas_on_pool()
        threads.before_blas()
        got = a @ a
        assert np.abs(got - a.astype(np.float64) @ a.astype(np.float64)).max() < 1e-2
        print("ok")
    """)
    env = dict(os.environ, EMBER_NUM_THREADS="2")
    for _ in range(5):  # fresh processes: the race is at each start
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                env=env, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "ok"
