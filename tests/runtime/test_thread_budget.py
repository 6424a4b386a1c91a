"""One thread budget (runtime/threads.py): EMBER_NUM_THREADS caps ember's native pool and
OpenBLAS alike, both take fewer threads while other processes keep the cores busy, and the
pool's idle workers sleep rather than spin while BLAS runs on threads of its own."""

import json
import os
import subprocess
import sys
import textwrap

import ember
import numpy as np
import pytest
from ember.runtime import native, threads

_REPORT = textwrap.dedent("""
    import json
    import numpy as np
    import threadpoolctl
    import ember
    from ember.runtime import native, threads

    a = ember.tensor(np.random.default_rng(0).standard_normal((256, 2048)).astype(np.float32))
    (a @ a.T).sum()  # a BLAS call (deeper than ember's packed GEMM takes)
    fn = ember.script(lambda x: (x * 2 + 1).amax(-1, keepdim=True))
    fn(ember.ones(512, 1024)), fn(ember.ones(512, 1024))  # the second runs the kernel
    blas = [i["num_threads"] for i in threadpoolctl.threadpool_info()
            if i["internal_api"] == "openblas"]
    print(json.dumps({"workers": native._pool.workers, "budget": threads.threads(),
                      "blas_get": threads.blas_threads(), "blas_threadpoolctl": blas}))
""")


def _report(env_threads: str | None, first: str = "") -> dict:
    """_REPORT's figures in a fresh process, with EMBER_NUM_THREADS (None: unset) and the
    statement `first` run after the imports."""
    env = dict(os.environ)
    env.pop("EMBER_NUM_THREADS", None)
    if env_threads is not None:
        env["EMBER_NUM_THREADS"] = env_threads
    script = _REPORT.replace("\na = ", f"\n{first}\na = ", 1)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ember_num_threads_1_makes_the_pool_and_blas_single_threaded():
    pytest.importorskip("threadpoolctl")
    report = _report("1")
    assert report["workers"] == 0 and report["budget"] == 1
    # OpenBLAS's own get function, and threadpoolctl's independent look at the library
    assert report["blas_get"] == 1
    assert report["blas_threadpoolctl"] == [1]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core")
def test_ember_num_threads_caps_blas_at_the_pools_size():
    pytest.importorskip("threadpoolctl")
    report = _report("2")
    assert report["workers"] == 1
    # the budget of its call: 2 on an idle machine, 1 while another process keeps a core busy
    assert 1 <= report["blas_get"] <= 2 and report["blas_threadpoolctl"] == [report["blas_get"]]


def test_set_num_threads_1_makes_the_pool_and_blas_single_threaded():
    # torch.set_num_threads, as scripts call it before their work: it takes EMBER_NUM_THREADS's
    # place for both the pool and BLAS
    pytest.importorskip("threadpoolctl")
    report = _report(None, "ember.set_num_threads(1)\nassert ember.get_num_threads() == 1")
    assert report["workers"] == 0 and report["budget"] == 1
    assert report["blas_get"] == 1 and report["blas_threadpoolctl"] == [1]


def test_get_num_threads_is_the_limit_and_set_num_threads_checks_its_argument(monkeypatch):
    monkeypatch.setattr(threads, "_limit", 3)
    assert ember.get_num_threads() == 3
    ember.set_num_threads(2)
    assert ember.get_num_threads() == threads.limit() == 2
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ember.EmberError, match="set_num_threads expects a positive integer"):
            ember.set_num_threads(bad)
    assert ember.get_num_threads() == 2


def test_a_bad_ember_num_threads_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(threads, "_limit", None)
    monkeypatch.setenv("EMBER_NUM_THREADS", "many")
    with pytest.raises(ember.EmberError, match="EMBER_NUM_THREADS must be a positive integer"):
        threads.limit()
    with pytest.raises(ValueError):
        threads.limit()


class _Machine:
    """A fake /proc/stat and process clock: busy seconds of all cores, and of this process."""

    def __init__(self):
        self.wall = 0.0
        self.busy = 0.0
        self.own = 0.0

    def advance(self, seconds: float, others_cores: float, own_cores: float) -> None:
        self.wall += seconds
        self.own += own_cores * seconds
        self.busy += (others_cores + own_cores) * seconds


@pytest.fixture
def machine(monkeypatch):
    m = _Machine()
    budget = threads._Budget()
    monkeypatch.setattr(budget, "_machine_busy", lambda: m.busy)
    monkeypatch.setattr(threads.time, "process_time", lambda: m.own)
    monkeypatch.setattr(threads, "_limit", 2)
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    m.budget = budget
    return m


def test_the_budget_leaves_a_core_that_another_process_keeps_busy(machine):
    budget = machine.budget
    assert budget._measure(machine.wall) == 2  # no history yet: the limit
    machine.advance(0.1, others_cores=0.0, own_cores=1.6)  # idle machine, ember on both
    assert budget._measure(machine.wall) == 2
    machine.advance(0.1, others_cores=1.0, own_cores=1.0)  # `while True: pass` beside
    budget.threads = 2
    assert budget._measure(machine.wall) == 1
    machine.advance(0.1, others_cores=2.0, own_cores=0.5)  # both busy: one thread, never 0
    assert budget._measure(machine.wall) == 1
    machine.advance(0.1, others_cores=0.2, own_cores=1.0)  # the other process ended
    assert budget._measure(machine.wall) == 2


def test_the_budget_never_exceeds_ember_num_threads(machine, monkeypatch):
    monkeypatch.setattr(threads, "_limit", 1)
    machine.advance(0.1, others_cores=0.0, own_cores=0.0)
    assert machine.budget._measure(machine.wall) == 1


def test_blas_and_the_pool_follow_the_budget_while_cores_are_busy(monkeypatch):
    if threads.blas_threads() is None:
        pytest.skip("numpy's BLAS is not OpenBLAS")
    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    a = ember.ones(80, 80)  # past the products OpenBLAS runs on one thread anyway (nn.py)
    (a @ a).sum()
    assert threads.blas_threads() == 1
    assert native._pool.threads() == 1 and native._pool.parallel_for() is None


@pytest.mark.skipif(native.thread_count() < 2, reason="one core: no pool")
def test_a_blas_call_sends_the_pools_idle_workers_to_sleep_unless_they_run_its_jobs(
        monkeypatch):
    fn = ember.script(lambda x: (x * 2 + 1).amax(-1, keepdim=True))
    x = ember.ones(512, 1024)
    fn(x), fn(x)  # the second call runs the kernel on the pool
    assert native._pool.workers >= 1 and threads._park is not None
    parked = []
    real_park = threads._park
    monkeypatch.setattr(threads, "_park", lambda: parked.append(1) or real_park())
    # past the products OpenBLAS runs on one thread anyway, short of ember's own GEMMs
    a = ember.tensor(np.eye(80, dtype=np.float32))
    np.testing.assert_array_equal((a @ a).numpy(), np.eye(80, dtype=np.float32))
    # OpenBLAS's jobs on the pool (tests/runtime/test_blas_on_pool.py) need its workers
    # awake; on OpenBLAS's own threads, the pool's would spin beside them
    assert bool(parked) == (not threads.blas_on_pool())
    monkeypatch.setattr(threads._blas, "callback", None)  # as with an OpenBLAS without it
    np.testing.assert_array_equal((a @ a).numpy(), np.eye(80, dtype=np.float32))
    assert parked
    # the workers wake for the next job, and it stays right
    np.testing.assert_array_equal(fn(x).numpy(), np.full((512, 1), 3.0, np.float32))


def test_concurrent_settings_of_blas_threads_leave_the_last_callers(monkeypatch):
    """Two callers set OpenBLAS's thread count at once: the one that comes second while the
    first's setting is being made must not skip its own as already made."""
    import threading

    blas = threads._Blas()
    made, first_inside, second_done = [], threading.Event(), threading.Event()

    def set_fn(n):
        if n == 2:  # the first caller's setting: slow, the second caller arrives meanwhile
            first_inside.set()
            second_done.wait(0.5)
        made.append(n)

    blas.looked, blas.set_fn, blas.get_fn, blas.current = True, set_fn, lambda: made[-1], 1
    first = threading.Thread(target=blas.set, args=(2,))
    first.start()
    first_inside.wait(5)
    second = threading.Thread(target=blas.set, args=(1,))
    second.start()
    second.join(0.2)  # with the lock it waits for the first; without, it returns at once
    second_done.set()
    first.join(5)
    second.join(5)
    assert made[-1] == 1 and blas.current == 1
