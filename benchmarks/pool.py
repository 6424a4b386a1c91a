"""The native pool's second core: a kernel's time after a stretch of Python (how awake the
pool's workers are, codegen/llvm/pool.py), and the GPT step's GEMMs as ember runs them
(runtime/packed_gemm.py, ember's own GEMM), on the pool as one BLAS call per thread
(runtime/pool_gemm.py, the path for what the packed GEMM does not take), on OpenBLAS's own
threads and in PyTorch, in one process.

    python benchmarks/pool.py [--threads 2] [--rounds 5]

The thread budget is fixed at --threads (no load adaptation, runtime/threads.py), so on a
busy machine the figures show the load; each figure is the best of --rounds rounds, in us.
Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (they slow numpy's BLAS).
"""

from __future__ import annotations

import argparse
import os
import time

# a GPT 4x128 step's products at batch 8x64 (benchmarks/models.py): (m, k, n, A transposed,
# B transposed: a linear layer's weight)
GEMMS = [(512, 128, 384, False, True), (512, 128, 512, False, True),
         (512, 512, 128, False, False), (128, 512, 512, True, False),
         (512, 128, 128, False, False), (128, 512, 128, True, False)]
GAPS_US = (0, 300, 1500)  # Python busy-waiting before each call


def _best(fn, rounds: int, calls: int) -> float:
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def _after_gap(fn, gap_us: float, rounds: int, calls: int = 60) -> float:
    """The median call of fn after gap_us of Python (busy) work, best over rounds."""
    best = float("inf")
    for _ in range(rounds):
        times = []
        for _ in range(calls):
            end = time.perf_counter() + gap_us * 1e-6
            while time.perf_counter() < end:
                pass
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        best = min(best, sorted(times)[len(times) // 2])
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["EMBER_NUM_THREADS"] = str(args.threads)

    import ember
    import numpy as np
    from ember.runtime import packed_gemm, pool_gemm, threads

    threads._budget.now = lambda: args.threads
    rng = np.random.default_rng(0)
    x = ember.randn(512, 512)
    a = rng.standard_normal((512, 128), dtype=np.float32)
    w = rng.standard_normal((384, 128), dtype=np.float32)

    def gemm():
        if pool_gemm.product(a, w.T) is None:
            threads.before_blas()
            a @ w.T

    print(f"ember pool, {args.threads} thread(s): a kernel's time after a Python gap (us)")
    for name, fn in (("gelu 512x512", lambda: ember.nn.functional.gelu(x)),
                     ("GEMM 512x128x384", gemm)):
        row = "  ".join(f"gap {g:4} us: {_after_gap(fn, g, args.rounds):7.1f}" for g in GAPS_US)
        print(f"  {name:18} {row}")

    try:
        import torch
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(args.threads)
    print(f"\nGPT step GEMMs, {args.threads} thread(s), back to back (us)")
    print(f"  {'m x k x n':26} {'packed':>8} {'pool':>8} {'OpenBLAS':>9} {'torch':>8}")
    for m, k, n, transposed, weight in GEMMS:
        left = rng.standard_normal((k, m) if transposed else (m, k), dtype=np.float32)
        left = left.T if transposed else left
        right = rng.standard_normal((n, k) if weight else (k, n), dtype=np.float32)
        right = right.T if weight else right
        packed = _best(lambda: packed_gemm.product(left, right), args.rounds, 100)
        if packed_gemm.product(left, right) is None:
            packed = float("nan")  # not taken
        pooled = _best(lambda: pool_gemm.product(left, right), args.rounds, 100)
        if pool_gemm.product(left, right) is None:
            pooled = float("nan")  # not shared (one thread, or no cblas GEMM)

        def openblas():
            threads.before_blas()
            return left @ right

        own = _best(openblas, args.rounds, 100)
        other = float("nan")
        if torch is not None:
            tl = (torch.from_numpy(np.ascontiguousarray(left.T)).t() if transposed
                  else torch.from_numpy(left))
            tr = (torch.from_numpy(np.ascontiguousarray(right.T)).t() if weight
                  else torch.from_numpy(right))
            other = _best(lambda: tl @ tr, args.rounds, 100)
        label = f"{m}x{k}x{n}" + (" (A^T)" if transposed else "") + (" (W^T)" if weight else "")
        print(f"  {label:26} {packed:8.1f} {pooled:8.1f} {own:9.1f} {other:8.1f}")


if __name__ == "__main__":
    main()
