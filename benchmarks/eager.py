"""Eager-mode benchmarks: ember against numpy and PyTorch eager, all from one run.

Measures (a) dispatch overhead of `a + b` on one-element float32 tensors, (a2) the per-op cost
of a dozen small ops with autograd recording (what a training script runs hundreds of per
step), (b) elementwise ops
and (c) reductions on 4M float32 elements (2048x2048), and (d) a 2048x2048 float32 matmul. Each
row prints the median time of many repeats after a warmup, and the ratios ember/numpy and
ember/torch beside their targets. PyTorch columns read "torch not installed" without torch.

Run it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so that numpy's OpenBLAS picks the
kernels it would pick on this CPU by itself and the BLAS timings are fair:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/eager.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

try:
    import ember
except ImportError:
    sys.exit("ember is not importable: run `pip install -e .` in the repository root first")

try:
    import torch
except ImportError:
    torch = None

NO_TORCH = "torch not installed"
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass
class Case:
    """One benchmarked operation: the same computation written for each library."""

    name: str
    ember_fn: Callable[[], object]
    numpy_fn: Callable[[], object] | None
    torch_fn: Callable[[], object] | None
    number: int  # calls per timed sample; many for microsecond-scale calls
    numpy_target: float | None = None  # the ember/numpy ratio to stay under
    torch_target: float | None = None  # the ember/torch ratio to stay under


def median_seconds(fn: Callable[[], object], number: int, repeats: int, warmup: int) -> float:
    """Median over `repeats` samples of the time of one call, each sample `number` calls."""
    for _ in range(warmup):
        fn()
    # the collector would charge one library for garbage that another left behind
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


def dispatch_cases() -> list[Case]:
    a, b = ember.tensor([1.0]), ember.tensor([2.0])
    ag = ember.tensor([1.0], requires_grad=True)
    na, nb = np.array([1.0], dtype=np.float32), np.array([2.0], dtype=np.float32)
    cases = [
        Case("a + b  [1] float32", lambda: a + b, lambda: na + nb, None, 1000, None, 4.0),
        Case("a + b  [1] requires_grad", lambda: ag + b, None, None, 1000, None, 4.0),
    ]
    if torch is not None:
        ta, tb = torch.tensor([1.0]), torch.tensor([2.0])
        tag = torch.tensor([1.0], requires_grad=True)
        cases[0].torch_fn = lambda: ta + tb
        cases[1].torch_fn = lambda: tag + tb
    return cases


# the small ops a training script runs hundreds of per step, on (8, 16) float32 tensors of
# which one requires grad: issue 18's per-op budget is 2.5x PyTorch's cost
OVERHEAD_OPS = {
    "x * y": lambda m, x, y, w: x * y,
    "x * 0.5 + y": lambda m, x, y, w: x * 0.5 + y,
    "x.relu()": lambda m, x, y, w: x.relu(),
    "x.exp()": lambda m, x, y, w: x.exp(),
    "x.sum()": lambda m, x, y, w: x.sum(),
    "x.sum(-1)": lambda m, x, y, w: x.sum(-1),
    "x.mean(-1, keepdim=True)": lambda m, x, y, w: x.mean(-1, keepdim=True),
    "x.view(4, 32)": lambda m, x, y, w: x.view(4, 32),
    "x.transpose(0, 1)": lambda m, x, y, w: x.transpose(0, 1),
    "x[:, :8]": lambda m, x, y, w: x[:, :8],
    "x @ w": lambda m, x, y, w: x @ w,
    "softmax(x, -1)": lambda m, x, y, w: m.nn.functional.softmax(x, -1),
}


def overhead_cases() -> list[Case]:
    def operands(m):
        rng = np.random.default_rng(0)
        x = m.tensor(rng.standard_normal((8, 16)).astype(np.float32), requires_grad=True)
        y = m.tensor(rng.standard_normal((8, 16)).astype(np.float32))
        w = m.tensor(rng.standard_normal((16, 16)).astype(np.float32))
        return x, y, w

    mine = operands(ember)
    theirs = operands(torch) if torch is not None else None
    cases = []
    for name, fn in OVERHEAD_OPS.items():
        torch_fn = None if theirs is None else (lambda fn=fn: fn(torch, *theirs))
        cases.append(Case(name, lambda fn=fn: fn(ember, *mine), None, torch_fn, 1000, None, 2.5))
    return cases


def numpy_sigmoid(x: np.ndarray) -> np.ndarray:
    # in place after the first op: the fastest plain numpy, so a fair bar for ember's kernel
    out = np.negative(x)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def elementwise_cases(n: int) -> list[Case]:
    ember.manual_seed(0)
    a, b = ember.randn(n), ember.randn(n)
    na, nb = a.numpy(), b.numpy()
    ops = {
        "add": (lambda: a + b, lambda: na + nb, lambda x, y: x + y),
        "mul": (lambda: a * b, lambda: na * nb, lambda x, y: x * y),
        "exp": (lambda: a.exp(), lambda: np.exp(na), lambda x, y: x.exp()),
        "relu": (lambda: a.relu(), lambda: np.maximum(na, 0), lambda x, y: x.relu()),
        "sigmoid": (lambda: a.sigmoid(), lambda: numpy_sigmoid(na), lambda x, y: x.sigmoid()),
        "tanh": (lambda: a.tanh(), lambda: np.tanh(na), lambda x, y: x.tanh()),
    }
    ta = tb = None
    if torch is not None:
        ta, tb = torch.from_numpy(na.copy()), torch.from_numpy(nb.copy())
    cases = []
    for name, (ember_fn, numpy_fn, torch_op) in ops.items():
        torch_fn = None if torch is None else (lambda op=torch_op: op(ta, tb))
        cases.append(Case(f"{name}  [{n}]", ember_fn, numpy_fn, torch_fn, 1, 1.2, None))
    return cases


def reduction_cases(side: int) -> list[Case]:
    ember.manual_seed(1)
    x = ember.randn(side, side)
    nx = x.numpy()
    tx = torch.from_numpy(nx.copy()) if torch is not None else None
    shape = f"[{side}, {side}]"
    rows = [
        ("sum(dim=1)", lambda: x.sum(dim=1), lambda: nx.sum(axis=1), lambda: tx.sum(dim=1)),
        ("mean(dim=1)", lambda: x.mean(dim=1), lambda: nx.mean(axis=1), lambda: tx.mean(dim=1)),
        ("amax(dim=1)", lambda: x.amax(dim=1), lambda: nx.max(axis=1), lambda: tx.amax(dim=1)),
        (
            "max(dim=1) values+indices",
            lambda: x.max(dim=1),
            lambda: (nx.max(axis=1), nx.argmax(axis=1)),
            lambda: tx.max(dim=1),
        ),
        ("sum()", lambda: x.sum(), lambda: nx.sum(), lambda: tx.sum()),
    ]
    return [
        Case(f"{name}  {shape}", e, n, t if torch is not None else None, 1, 1.2, None)
        for name, e, n, t in rows
    ]


def matmul_cases(side: int) -> list[Case]:
    ember.manual_seed(2)
    a, b = ember.randn(side, side), ember.randn(side, side)
    na, nb = a.numpy(), b.numpy()
    torch_fn = None
    if torch is not None:
        ta, tb = torch.from_numpy(na.copy()), torch.from_numpy(nb.copy())
        torch_fn = lambda: ta @ tb
    return [Case(f"matmul  [{side}, {side}]", lambda: a @ b, lambda: na @ nb, torch_fn, 1, 1.2)]


def format_time(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "-"
    scale = {"us": 1e6, "ms": 1e3}[unit]
    return f"{seconds * scale:.2f} {unit}"


def format_ratio(ratio: float | None, target: float | None) -> str:
    if ratio is None:
        return "-"
    if target is None:
        return f"{ratio:.2f}x"
    verdict = "ok" if ratio <= target else "SLOW"
    return f"{ratio:.2f}x (<= {target:g} {verdict})"


def run_section(title: str, cases: list[Case], unit: str, repeats: int, warmup: int) -> None:
    print(f"\n{title}")
    header = ("op", "ember", "numpy", "torch", "ember/numpy", "ember/torch")
    widths = (40, 11, 11, 11, 22, 22)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for case in cases:
        ember_s = median_seconds(case.ember_fn, case.number, repeats, warmup)
        numpy_s = None
        if case.numpy_fn is not None:
            numpy_s = median_seconds(case.numpy_fn, case.number, repeats, warmup)
        torch_s = None
        if case.torch_fn is not None:
            torch_s = median_seconds(case.torch_fn, case.number, repeats, warmup)
        cells = (
            case.name,
            format_time(ember_s, unit),
            format_time(numpy_s, unit),
            NO_TORCH if torch is None else format_time(torch_s, unit),
            format_ratio(None if numpy_s is None else ember_s / numpy_s, case.numpy_target),
            NO_TORCH
            if torch is None
            else format_ratio(None if torch_s is None else ember_s / torch_s, case.torch_target),
        )
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a rough look)")
    args = parser.parse_args()

    overridden = [f"{v}={os.environ[v]}" for v in OPENBLAS_VARIABLES if v in os.environ]
    if overridden:
        print(
            f"warning: {', '.join(overridden)} set; numpy's BLAS timings may be unfair. Rerun "
            f"with: env -u {' -u '.join(OPENBLAS_VARIABLES)} python benchmarks/eager.py",
            file=sys.stderr,
        )

    threads = os.cpu_count() or 1
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"ember {getattr(ember, '__version__', '?')}, numpy {np.__version__}, ", end="")
    print(NO_TORCH if torch is None else f"torch {torch.__version__}", end="")
    print(f"; {threads} CPU threads{'; --quick' if args.quick else ''}")

    quick = args.quick
    start = time.perf_counter()
    run_section(
        "(a) dispatch overhead, median per call",
        dispatch_cases(),
        "us",
        repeats=20 if quick else 200,
        warmup=200,
    )
    run_section(
        "(a2) per-op cost with autograd recording, (8, 16) float32, median per call",
        overhead_cases(),
        "us",
        repeats=20 if quick else 100,
        warmup=200,
    )
    run_section(
        "(b) elementwise, float32, median per call",
        elementwise_cases(2048 * 2048),
        "ms",
        repeats=5 if quick else 50,
        warmup=2,
    )
    run_section(
        "(c) reductions, float32, median per call",
        reduction_cases(2048),
        "ms",
        repeats=5 if quick else 50,
        warmup=2,
    )
    run_section(
        "(d) matmul, float32, median per call",
        matmul_cases(2048),
        "ms",
        repeats=2 if quick else 10,
        warmup=1,
    )
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
