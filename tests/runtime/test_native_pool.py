"""The native thread pool (codegen/llvm/pool.py) that shares a large kernel's rows between
cores: every row computed once, by whichever thread claims its chunk, with several callers,
after the workers fell asleep, in a forked child, and at exit."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import ember
import numpy as np
import pytest
from ember.runtime import native

pytestmark = pytest.mark.skipif(native.thread_count() < 2, reason="one core: no pool")


def _row_kernel():
    """A scripted function whose one kernel is large enough to be split (rows of 257, a
    row count that does not divide into chunks evenly)."""
    return ember.script(lambda x: (x * 2 + 1).amax(-1, keepdim=True) - x)


def _expected(a):
    return (a * 2 + 1).max(-1, keepdims=True) - a


@pytest.mark.parametrize("rows", [2, 3, 7, 1021])
def test_every_row_is_computed_once_whatever_the_row_count(rows):
    a = np.random.default_rng(rows).standard_normal((rows, (1 << 18) // rows + 1))
    a = a.astype(np.float32)
    fn = _row_kernel()
    for _ in range(2):  # the first call traces (and runs eagerly); the second runs the kernel
        got = fn(ember.tensor(a)).numpy()
        np.testing.assert_array_equal(got, _expected(a))
    assert native._pool.workers == native.thread_count() - 1


def test_the_pool_serves_again_after_its_workers_fell_asleep():
    """Past the spin (~1 ms) and the yields (~3 ms) a worker sleeps on a condition variable;
    the next job wakes it and the results stay right."""
    a = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    fn = _row_kernel()
    for _ in range(3):
        np.testing.assert_array_equal(fn(ember.tensor(a)).numpy(), _expected(a))
        time.sleep(0.05)


@pytest.mark.parametrize("triple", ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"])
def test_the_pools_module_is_valid_ir_with_or_without_a_time_stamp_counter(triple):
    """x86 workers time their idle spin by the time-stamp counter; elsewhere (where LLVM's
    cycle counter may be a privileged register) they count spins instead."""
    llvm = pytest.importorskip("llvmlite.binding")
    from ember.codegen.llvm import pool

    module = llvm.parse_assembly(pool.module_ir(triple))
    module.verify()
    assert ("llvm.readcyclecounter" in str(module)) == triple.startswith("x86_64")


def test_python_threads_calling_large_kernels_at_once_each_get_their_own_rows():
    """While one caller owns the pool another runs its rows itself: both stay correct."""
    fn = _row_kernel()
    inputs = [np.random.default_rng(k).standard_normal((600, 1000)).astype(np.float32)
              for k in range(3)]
    barrier = threading.Barrier(len(inputs))
    errors = []

    def call(a):
        try:
            barrier.wait()
            for _ in range(30):
                np.testing.assert_array_equal(fn(ember.tensor(a)).numpy(), _expected(a))
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(a,)) for a in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_starts_its_own_pool_and_both_processes_exit_cleanly(tmp_path):
    """The child inherits no worker threads: it starts its own pool on its first large
    kernel. Each process stops its pool at exit, before the JIT code is freed (exit code 0)."""
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        import numpy as np
        import ember
        fn = ember.script(lambda x: (x * 2 + 1).amax(-1, keepdim=True) - x)
        a = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
        want = (a * 2 + 1).max(-1, keepdims=True) - a
        assert (fn(ember.tensor(a)).numpy() == want).all()
        pid = os.fork()
        if pid == 0:
            ok = (fn(ember.tensor(a)).numpy() == want).all()
            from ember.runtime import native
            ok = ok and native._pool.pid == os.getpid() and native._pool.workers >= 1
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert (fn(ember.tensor(a)).numpy() == want).all()
        print("ok")
    """))
    env = dict(os.environ, EMBER_NUM_THREADS="2")
    result = subprocess.run([sys.executable, str(script)], check=False, capture_output=True,
                            text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _two_large_kernels(x):
    """Two kernels over different row counts (no fusion joins them): one run."""
    return ember.nn.functional.softmax(x, -1), (x.reshape(1024, 512) * 2).amax(-1)


def _two_expected(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True), (a.reshape(1024, 512) * 2).max(-1)


def test_a_run_of_large_kernels_shares_each_through_the_pool(monkeypatch):
    """Step by step (EMBER_NATIVE_ENTRY=0), the kernels are one run; as one native entry
    (the default for a call autograd does not record), each is a parallel call of it."""
    from ember.codegen.entry import KernelCall

    a = np.random.default_rng(3).standard_normal((512, 1024)).astype(np.float32)
    for entry in ("0", "1"):
        monkeypatch.setenv("EMBER_NATIVE_ENTRY", entry)
        fn = ember.script(_two_large_kernels)
        for _ in range(3):
            soft, peak = fn(ember.tensor(a))
            want_soft, want_peak = _two_expected(a)
            np.testing.assert_allclose(soft.numpy(), want_soft, rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(peak.numpy(), want_peak)
        program = fn.specializations[-1].program
        if entry == "0":
            assert [kind for kind, *_ in program.schedule] == ["run"]
            assert all(k.parallel for k in program.schedule[0][1].kernels)
        else:
            calls = program.plan.calls
            assert len(calls) == 2 and all(isinstance(c, KernelCall) and c.parallel
                                           for c in calls)


def test_with_one_thread_a_run_calls_its_kernels_serially(tmp_path):
    script = tmp_path / "serial.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import ember
        from ember.runtime import native
        fn = ember.script(lambda x: (ember.nn.functional.softmax(x, -1),
                                     (x.reshape(1024, 512) * 2).amax(-1)))
        a = np.random.default_rng(3).standard_normal((512, 1024)).astype(np.float32)
        for _ in range(2):
            soft, peak = fn(ember.tensor(a))
        assert native._pool.workers == 0 and native._pool.threads() == 1
        assert (peak.numpy() == (a.reshape(1024, 512) * 2).max(-1)).all()
        assert np.allclose(soft.numpy().sum(-1), 1, atol=1e-5)
        print("ok")
    """))
    env = dict(os.environ, EMBER_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(script)], check=False, capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
