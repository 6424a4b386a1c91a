"""Batch-1 calls per second of a loaded program's native entry from 1 and from 2 threads at
once, with the callers sharing the thread budget (runtime/threads.py's _Callers) and without
(every caller giving its GEMMs every core, as before), in one run.

    python benchmarks/entry_threads.py [--seconds 2] [--rounds 3] [--budget N]

Models: the digits CNN and the small GPT of benchmarks/runtime.py (examples/models.py, random
weights), exported to .ember and loaded. Each (model, mode, threads) is timed for --seconds
per round, the modes and thread counts in alternating rounds so they see the same load; the
median round is reported, and each thread checks its outputs against a first call's. The
budget (runtime/threads.py: the cores other processes leave idle) is printed with them: where
it is 1, both modes give each caller one thread and measure the same thing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

GPT_SIZES = dict(vocab_size=512, context=64, d_model=128, heads=4, layers=4)


def cpu_name() -> str:
    """The CPU's model name, which every benchmark prints beside its figures."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _models(folder: str) -> dict:
    import ember
    from models import digits_cnn, gpt

    ember.manual_seed(0)
    rng = np.random.default_rng(0)
    cnn_x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    ember.export(digits_cnn(ember).eval(), ember.tensor(cnn_x), os.path.join(folder, "c.ember"))
    tokens = rng.integers(0, GPT_SIZES["vocab_size"], (1, GPT_SIZES["context"]))
    ember.export(gpt(ember, **GPT_SIZES).eval(), ember.tensor(tokens),
                 os.path.join(folder, "g.ember"))
    return {"digits CNN": (ember.runtime.load(os.path.join(folder, "c.ember")), cnn_x),
            "GPT forward": (ember.runtime.load(os.path.join(folder, "g.ember")), tokens)}


budgets: list = []  # the thread budget (runtime/threads.py) after each timing


def calls_per_second(program, x, want, n_threads: int, seconds: float) -> float:
    """Batch-1 calls per second of `program` from n_threads threads at once, each checking its
    outputs against `want` (benchmarks/runtime.py times its thread scaling with it too)."""
    counts = [0] * n_threads
    wrong = []
    start = threading.Barrier(n_threads + 1)
    stop = threading.Event()

    def work(k):
        start.wait()
        while not stop.is_set():
            if not np.array_equal(program(x), want):
                wrong.append(k)
            counts[k] += 1

    workers = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in workers:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in workers:
        t.join()
    if wrong:
        raise SystemExit(f"threads {sorted(set(wrong))} got other outputs than one call's")
    return sum(counts) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=0,
                        help="fix the thread budget at N, as the budget finds on an idle "
                             "machine (default: measured, as every call does)")
    args = parser.parse_args()
    if args.budget > 0:
        from ember.runtime import threads

        threads.threads = lambda: args.budget
    global budget
    from ember.runtime import graph_entry
    from ember.runtime.threads import threads as budget

    with tempfile.TemporaryDirectory() as folder:
        models = _models(folder)
        modes = {"every caller all threads (before)": False, "callers share (after)": True}
        rates = {}
        for _ in range(args.rounds):
            for name, (program, x) in models.items():
                for mode, flag in modes.items():
                    graph_entry.SHARE_BY_CALLERS = flag
                    for n in (1, 2):
                        rate = calls_per_second(program, x, program(x), n, args.seconds)
                        rates.setdefault((name, mode, n), []).append(rate)
                        budgets.append(budget())
        graph_entry.SHARE_BY_CALLERS = True
    print(f"{cpu_name()}, {os.cpu_count()} cores; median of {args.rounds} rounds of "
          f"{args.seconds:g} s; thread budget (cores others left idle) "
          f"{min(budgets)}..{max(budgets)}, median {statistics.median(budgets)}")
    print(f"{'model':<12} {'mode':<36} {'1 thread':>10} {'2 threads':>10} {'2 vs 1':>7}")
    for name in models:
        for mode in modes:
            one = statistics.median(rates[(name, mode, 1)])
            two = statistics.median(rates[(name, mode, 2)])
            print(f"{name:<12} {mode:<36} {one:>8.0f}/s {two:>8.0f}/s {two / one:>6.2f}x")


if __name__ == "__main__":
    main()
