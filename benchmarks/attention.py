"""GPT-style causal attention, forward and backward: ember's fused op on its native kernels
(codegen/llvm/attention.py) and on the numpy kernels they replaced, the composite, scripted,
and PyTorch's scaled_dot_product_attention, at 1 and 2 threads, one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/attention.py
        [--lengths 64 256 1024] [--batches 1 8] [--threads 1 2] [--rounds 5] [--composite]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE EMBER_NUM_THREADS=1 \\
        python benchmarks/attention.py --gpt-step [--steps 30]

Each case is q, k, v of (B, H=4, T, D=32) float32 requiring grad (the heads of
benchmarks/models.py's GPT; its own case is B=8, T=64): the forward is
out = sdpa(q, k, v, is_causal=True), the backward out.backward(g), each timed alone. Rounds
are interleaved (every variant once per round, 4x as many rounds at T=64) so a load that comes
and goes on a shared machine touches them all; the table gives the best and the median round,
in ms, wall clock; at one thread also the median thread CPU time, which other processes'
load hardly moves (ember's pool and BLAS then run on the calling thread, torch's intra-op
pool is one thread). Each (framework, threads) runs in a process of its own: EMBER_NUM_THREADS
and torch.set_num_threads set the threads; with 2, ember's thread budget (runtime/threads.py)
still gives one where another process keeps the second core busy.

--gpt-step times one eager training step of benchmarks/models.py's GPT (forward, backward,
AdamW) in thread CPU time, for A/B runs of two checkouts (PYTHONPATH picks the ember).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from entry_threads import cpu_name

H, D = 4, 32


def _ember_variants(arrays, composite: bool):
    import ember
    import ember.nn.functional as F
    from ember.runtime.kernels import attention as kernels

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    # name: (forward, whether the kernels run native)
    variants = {"ember native": (sdpa, True), "ember.script native": (ember.script(sdpa), True),
                "ember numpy kernels": (sdpa, False)}
    if not hasattr(kernels, "NATIVE"):  # a checkout from before the native kernels
        variants = {"ember numpy kernels": (sdpa, False)}
    if composite:
        variants["ember composite"] = (lambda q, k, v: F.scaled_dot_product_attention_composite(
            q, k, v, is_causal=True), True)
    g = ember.tensor(arrays[3])

    def timed(fn, native):
        def run(clock):
            q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays[:3])
            kernels.NATIVE = native
            try:
                start = clock()
                out = fn(q, k, v)
                middle = clock()
                out.backward(g)
                return middle - start, clock() - middle
            finally:
                kernels.NATIVE = True

        return run

    return {name: timed(*variant) for name, variant in variants.items()}


def _torch_variants(arrays, composite: bool):
    import torch

    g = torch.tensor(arrays[3])

    def run(clock):
        q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays[:3])
        start = clock()
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        middle = clock()
        out.backward(g)
        return middle - start, clock() - middle

    return {"torch sdpa": run}


def _times(variants: dict, T: int, rounds: int, threads: int) -> dict:
    for run in variants.values():  # warm-up: captures, kernel compiles, caches
        for _ in range(3):
            run(time.perf_counter)
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for _ in range(rounds * max(1, 256 // T)):  # short cases: more rounds
        for name, run in variants.items():
            wall[name].append(run(time.perf_counter))
            if threads == 1:
                cpu[name].append(run(time.thread_time))
    result = {}
    for name in variants:
        total = [f + b for f, b in wall[name]]
        result[name] = {
            "fwd": [min(f for f, _ in wall[name]), statistics.median(f for f, _ in wall[name])],
            "bwd": [min(b for _, b in wall[name]), statistics.median(b for _, b in wall[name])],
            "total": [min(total), statistics.median(total)],
        }
        if cpu[name]:
            result[name]["cpu"] = [statistics.median(f for f, _ in cpu[name]),
                                   statistics.median(b for _, b in cpu[name])]
    return result


def _worker(framework: str, lengths, batches, rounds: int, threads: int,
            composite: bool) -> dict:
    """Times of one framework's variants per (batch, length), in a process of its own
    (torch's OpenMP threads and ember's native pool slow each other down in one process)."""
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
    make = _torch_variants if framework == "torch" else _ember_variants
    results = {}
    for T in lengths:
        for B in batches:
            rng = np.random.default_rng(T)
            arrays = [rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4)]
            # the composite holds B*H*T*T scores: past 256 keys it is left out
            variants = make(arrays, composite and T <= 256)
            results[f"{B}x{T}"] = _times(variants, T, rounds, threads)
    return results


def gpt_step(steps: int) -> None:
    """Thread CPU time of eager GPT training steps (benchmarks/models.py's GPT)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ember
    from ember.runtime.kernels import KERNELS
    from training_steps import BUILDERS

    inside = [0.0]  # thread time inside the attention kernels

    def timed(kernel):
        def run(*args, **kwargs):
            start = time.thread_time()
            try:
                return kernel(*args, **kwargs)
            finally:
                inside[0] += time.thread_time() - start

        return run

    for op in ("attention", "attention_backward"):
        KERNELS[op] = timed(KERNELS[op])
    ember.manual_seed(0)
    workload = BUILDERS["gpt"](ember)
    step = workload.make_step(lambda module: module)
    times, attention = [], []
    for i in range(steps + 5):
        args = workload.batches[i % len(workload.batches)]
        inside[0] = 0.0
        start = time.thread_time()
        step(*args)
        if i >= 5:
            times.append(time.thread_time() - start)
            attention.append(inside[0])
    print(f"{workload.label}: thread time per eager step over {steps} steps: "
          f"min {min(times) * 1e3:.2f} ms, median {statistics.median(times) * 1e3:.2f} ms, "
          f"max {max(times) * 1e3:.2f} ms; in the attention kernels: min "
          f"{min(attention) * 1e3:.2f} ms, median {statistics.median(attention) * 1e3:.2f} ms "
          f"(EMBER_NUM_THREADS="
          f"{os.environ.get('EMBER_NUM_THREADS', 'unset')}, ember at {ember.__file__})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--composite", action="store_true",
                        help="also the composite formula (T <= 256)")
    parser.add_argument("--gpt-step", action="store_true",
                        help="thread time of eager GPT training steps instead")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--worker", choices=["ember", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpt_step:
        gpt_step(args.steps)
        return
    if args.worker:
        print(json.dumps(_worker(args.worker, args.lengths, args.batches, args.rounds,
                                 args.worker_threads, args.composite)))
        return
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; H={H} D={D}, causal, float32; "
          f"best / median of {args.rounds} rounds (4x at T=64), wall ms; at 1 thread also the "
          "median thread CPU ms (fwd + bwd)")
    results = {}
    for threads in args.threads:
        for framework in ("ember", "torch"):
            env = dict(os.environ, EMBER_NUM_THREADS=str(threads))
            command = [sys.executable, os.path.abspath(__file__), "--worker", framework,
                       "--worker-threads", str(threads), "--rounds", str(args.rounds),
                       "--lengths", *map(str, args.lengths),
                       "--batches", *map(str, args.batches)]
            if args.composite:
                command.append("--composite")
            done = subprocess.run(command, check=True, capture_output=True, text=True,
                                  env=env)
            for case, times in json.loads(done.stdout.strip().splitlines()[-1]).items():
                results.setdefault((case, threads), {}).update(times)
    for (case, threads), variants in results.items():
        B, T = case.split("x")
        torch_ms = variants["torch sdpa"]["total"][0] * 1e3
        print(f"B={B} T={T}, {threads} thread{'s' if threads > 1 else ''}")
        for name, t in variants.items():
            fwd, bwd, total = (np.array(t[k]) * 1e3 for k in ("fwd", "bwd", "total"))
            line = (f"  {name:22s} fwd {fwd[0]:8.3f} / {fwd[1]:8.3f}   bwd {bwd[0]:8.3f} / "
                    f"{bwd[1]:8.3f}   total {total[0]:8.3f} / {total[1]:8.3f} "
                    f"({total[0] / torch_ms:5.2f}x torch)")
            if "cpu" in t:
                line += f"   cpu {t['cpu'][0] * 1e3:7.3f} + {t['cpu'][1] * 1e3:7.3f}"
            print(line)


if __name__ == "__main__":
    main()
