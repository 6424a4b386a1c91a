"""GPT-style causal attention, forward + backward: ember's fused op against the composite it
replaced and PyTorch's scaled_dot_product_attention, eager and scripted, one run.

    python benchmarks/attention.py [--lengths 64 256 1024] [--rounds 5]

Each case is q, k, v of (B=8, H=4, T, D=32) float32 requiring grad, out = sdpa(q, k, v,
is_causal=True), loss = (out * g).sum(), loss.backward(). Rounds are interleaved (every
variant once per round) so a load that comes and goes on a shared machine touches them all;
each figure is the best of the rounds (4x as many at T=64), in ms. Each framework runs in a
process of its own, one after the other, with the machine's cores as its threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from entry_threads import cpu_name

B, H, D = 8, 4, 32


def _ember_variants(T, arrays):
    import ember
    import ember.nn.functional as F

    g = ember.tensor(arrays[3])

    def fused(q, k, v):
        return (F.scaled_dot_product_attention(q, k, v, is_causal=True) * g).sum()

    def composite(q, k, v):
        return (F.scaled_dot_product_attention_composite(q, k, v, is_causal=True) * g).sum()

    def step(fn):
        def run():
            q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays[:3])
            fn(q, k, v).backward()
            return q.grad

        return run

    return {
        "ember eager fused": step(fused),
        "ember eager composite": step(composite),
        "ember.script fused": step(ember.script(fused)),
        "ember.script composite": step(ember.script(composite)),
    }


def _torch_variants(T, arrays):
    import torch

    g = torch.tensor(arrays[3])

    def run():
        q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays[:3])
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        (out * g).sum().backward()
        return q.grad

    return {"torch eager sdpa": run}


def _best_times(variants: dict, T: int, rounds: int) -> dict:
    for run in variants.values():  # warm-up: captures, kernel compiles, caches
        run()
        run()
    best = {name: float("inf") for name in variants}
    for _ in range(rounds * max(1, 256 // T)):  # short cases: more rounds
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _worker(framework: str, lengths, rounds: int) -> dict:
    """Best times of one framework's variants, per length (run in a process of its own:
    torch's OpenMP threads and ember's native pool slow each other down in one process)."""
    if framework == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    make = _torch_variants if framework == "torch" else _ember_variants
    results = {}
    for T in lengths:
        rng = np.random.default_rng(T)
        arrays = [rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4)]
        results[T] = _best_times(make(T, arrays), T, rounds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", choices=["ember", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.lengths, args.rounds)))
        return
    threads = os.cpu_count() or 1
    print(f"CPU: {cpu_name()}, {threads} cores; B={B} H={H} D={D}, causal, float32, "
          f"forward + backward; best of {args.rounds} rounds (4x at T=64), ms")
    results = {}
    for framework in ("ember", "torch"):
        command = [sys.executable, os.path.abspath(__file__), "--worker", framework,
                   "--rounds", str(args.rounds), "--lengths", *map(str, args.lengths)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        for T, times in json.loads(done.stdout.strip().splitlines()[-1]).items():
            results.setdefault(int(T), {}).update(times)
    for T, best in results.items():
        torch_ms = best["torch eager sdpa"] * 1e3
        print(f"T={T}")
        for name, seconds in best.items():
            ms = seconds * 1e3
            print(f"  {name:24s} {ms:9.2f} ms  {ms / torch_ms:5.2f}x torch")


if __name__ == "__main__":
    main()
