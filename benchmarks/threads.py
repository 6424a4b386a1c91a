"""The digits CNN's eager forward (examples/models.py, batch 64, no_grad) while other work
keeps cores busy: the distribution of its times (median, p90, max), in one run.

    python benchmarks/threads.py [--busy N] [--calls 200] [--rounds 2] [--tree PATH ...]

--busy N starts N `while True: pass` processes first (default 1: the second core of a
2-core machine), stopped at the end. Each --tree is a directory holding an `ember` checkout
(the parent of the package, as PYTHONPATH takes it); the default is this checkout. Several
trees (say, before and after a change) are timed in alternating rounds, each call in a fresh
process, so they see the same load. The EMBER_NUM_THREADS of the environment applies.

ember's native pool and OpenBLAS both wait for their slowest thread; with a core busy, a
thread placed there runs in scheduler slices of milliseconds (runtime/threads.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {examples!r})
import ember
from models import digits_cnn

model = digits_cnn(ember).eval()
x = ember.tensor(np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32))
times = []
with ember.no_grad():
    for _ in range(5):
        model(x)
    for _ in range({calls}):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) * 1e3)
print(json.dumps(times))
"""


def _run(tree: str, calls: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=tree)
    code = _CHILD.format(examples=os.path.join(HERE, "..", "examples"), calls=calls)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (f"median {statistics.median(ordered):7.2f}  p90 {p90:7.2f}  max {ordered[-1]:7.2f}"
            f"  ms  ({len(ordered)} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tree", action="append",
                        default=None, help="a PYTHONPATH whose ember to time (repeatable)")
    args = parser.parse_args()
    trees = args.tree or [os.path.dirname(os.path.dirname(HERE))]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.busy)]
    try:
        times: dict[str, list[float]] = {tree: [] for tree in trees}
        for _ in range(args.rounds):
            for tree in trees:
                times[tree] += _run(tree, args.calls)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    print(f"digits CNN eager forward, batch 64, {args.busy} busy process(es), "
          f"EMBER_NUM_THREADS={os.environ.get('EMBER_NUM_THREADS', '(cores)')}, "
          f"{os.cpu_count()} cores")
    for tree in trees:
        print(f"  {tree}: {_summary(times[tree])}")


if __name__ == "__main__":
    main()
