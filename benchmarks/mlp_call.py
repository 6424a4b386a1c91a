"""Where the time of a scripted batch-1 MLP call goes (benchmarks/compile.py's mlp_b1).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/mlp_call.py [--rounds 5]

The MLP is Linear(784,256)-ReLU-Linear(256,256)-ReLU-Linear(256,10), float32, input (1, 784),
`ember.script(nn.Sequential(...))` called under `ember.no_grad()`. Printed, in microseconds
(per row the smallest of `--rounds` medians, the rounds interleaved so that load from other
processes falls on every row alike):

- numpy: the hand-written forward (`h @ wt + b`, `np.maximum`), as compile.py times it;
- scripted call: `net(x)`, everything included;
- program: the specialization's program called on the arrays (no guards, no tensors);
- native run, 1 thread / pool threads: the one native call alone;
- Python overhead: the scripted call with the native call replaced by a no-op.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _median_us(fn, repeat: int) -> float:
    for _ in range(200):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3000)
    args = parser.parse_args()

    import ember
    import ember.nn as nn
    from ember.runtime.native import _pool

    rng = np.random.default_rng(1)
    sizes = [(784, 256), (256, 256), (256, 10)]
    weights = [(rng.standard_normal((o, i), dtype=np.float32) * 0.05,
                rng.standard_normal(o, dtype=np.float32) * 0.05) for i, o in sizes]
    linears = [nn.Linear(i, o) for i, o in sizes]
    with ember.no_grad():
        for lin, (w, b) in zip(linears, weights):
            lin.weight.copy_(ember.tensor(w))
            lin.bias.copy_(ember.tensor(b))
    net = ember.script(nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(),
                                     linears[2]))
    x = rng.standard_normal((1, 784), dtype=np.float32)
    one = ember.tensor(x)
    packed = [(w.T.copy(), b) for w, b in weights]

    def numpy_forward():
        h = x
        for i, (wt, b) in enumerate(packed):
            h = h @ wt + b
            if i < len(packed) - 1:
                h = np.maximum(h, 0)
        return h

    with ember.no_grad():
        net(one), net(one)
        sp = net.specializations[-1]
        program = sp.program
        arrays = [one._data] + [t._data for _, t in sp.sources]
        print(f"program: {type(program).__name__}")
        entry = getattr(program, "_entry", None)
        rows = {"numpy": numpy_forward, "scripted call": lambda: net(one),
                "program": lambda: program(np, arrays)}
        if entry is not None:
            argv = program._thread_state()[0]
            rows["native run, 1 thread"] = lambda: entry(argv, 1)
            rows["native run, pool threads"] = lambda: entry(argv, _pool.started_threads())
        found = {name: [] for name in [*rows, "Python overhead"]}
        for _ in range(args.rounds):
            for name, fn in rows.items():
                found[name].append(_median_us(fn, args.repeat))
            if entry is not None:
                held = program._entry_holding_gil
                program._entry = program._entry_holding_gil = lambda argv, threads: 0
                try:
                    found["Python overhead"].append(_median_us(lambda: net(one), args.repeat))
                finally:
                    program._entry, program._entry_holding_gil = entry, held
        for name, values in found.items():
            if values:
                print(f"{name:<28}{min(values):8.2f} us")
        print(f"(pool threads now: {_pool.started_threads()})")


if __name__ == "__main__":
    main()
