"""The GPT forward (benchmarks/runtime.py's sizes, batch 1) and the digits CNN at batch 256
through the native entry with linear weights transposed once at load (W^T: GEMMs without a
transpose) and without (each GEMM reads W transposed), in alternating rounds of one run.

    python benchmarks/packed_weights.py [--calls 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

from entry_threads import GPT_SIZES, cpu_name  # noqa: E402


def _median_call(program, x, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        program(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import ember
    from ember.runtime.graph_entry import NativeGraph
    from models import digits_cnn, gpt

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, GPT_SIZES["vocab_size"], (1, GPT_SIZES["context"]))
    images = rng.standard_normal((256, 1, 8, 8)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        ember.manual_seed(0)
        ember.export(gpt(ember, **GPT_SIZES).eval(), ember.tensor(tokens),
                     os.path.join(folder, "g.ember"))
        ember.export(digits_cnn(ember).eval(), ember.tensor(images),
                     os.path.join(folder, "c.ember"))
        programs = {}
        for packed in (False, True):
            NativeGraph.PACK_WEIGHTS = packed
            for name, file, x in (("GPT forward, batch 1", "g.ember", tokens),
                                  ("digits CNN, batch 256", "c.ember", images)):
                program = ember.runtime.load(os.path.join(folder, file))
                assert isinstance(program._program, NativeGraph)
                assert bool(program._program.packed) == packed
                programs[(name, packed)] = (program, x)
        NativeGraph.PACK_WEIGHTS = True
        for name in ("GPT forward, batch 1", "digits CNN, batch 256"):
            a, b = (programs[(name, p)] for p in (False, True))
            np.testing.assert_allclose(a[0](a[1]), b[0](b[1]), rtol=1e-4, atol=1e-5)
        times: dict = {}
        for _ in range(args.rounds):
            for key, (program, x) in programs.items():
                for _ in range(10):
                    program(x)
                times.setdefault(key, []).append(_median_call(program, x, args.calls))
    print(f"{cpu_name()}, {os.cpu_count()} cores; median over {args.rounds} rounds of the median "
          f"of {args.calls} calls")
    for name in ("GPT forward, batch 1", "digits CNN, batch 256"):
        w, wt = (statistics.median(times[(name, p)]) * 1e6 for p in (False, True))
        print(f"{name:<22} W read transposed {w:8.0f} us   W^T packed {wt:8.0f} us   "
              f"{w / wt:.2f}x")


if __name__ == "__main__":
    main()
