"""What capture costs and saves, from one run.

    python benchmarks/capture.py

(1) Guard checking: building and comparing the guard key of a call with 4 tensor arguments
(target: at most 10 us), and every guard of a Trainer's scripted training step (4 tensor
arguments, the model and the Adam optimizer reached through self, a config value): the key,
the state reached through attributes, the captured tensors and their .grad. (2) A cached
20-op scripted function on tiny inputs against the same function run eagerly (target: the
scripted call is faster). (3) The MLP
784-256-256-10 forward and loss under autograd: the first call of the scripted function
(tracing the forward and its backward, and compiling both; the kernel cache is whatever
EMBER_CACHE_DIR holds), then forward + backward per step, scripted (one compiled forward, one
compiled backward node) against eager. (4) The MLP's forward scripted with dynamic=True: the
first (symbolic) trace, a call at a new batch size (the graph specialized and compiled, the
Python function not re-run), and that size again against eager.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import ember
from models import mlp


def _median_us(fn, repeats: int = 2000) -> float:
    for _ in range(100):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def twenty_ops(x, y, z, w):
    a = x * y + z
    b = (a - w).relu()
    c = b.exp() * 0.5 + x
    d = c.tanh() * y - z
    e = (d * d + 1.0).sqrt()
    f = e.sigmoid() * w + a
    g = f.abs() - b
    h = g * 2.0 + c
    return (h + d).sum(dim=0) - e.mean()


class _Config:
    scale = 1.0


class _Trainer:
    def __init__(self):
        nn = ember.nn
        self.model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.optimizer = ember.optim.Adam(self.model.parameters(), lr=0.01)
        self.cfg = _Config()

    def step(self, x, y, w, b):
        loss = (((self.model(x) - y) ** 2) * w + b).mean() * self.cfg.scale
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss


def _trainer_guard_us() -> float:
    """Every guard a cached call of a Trainer's scripted step checks before it runs."""
    from ember.tracer.script import _first_change

    trainer = _Trainer()
    step = ember.script(trainer.step)
    args = [ember.randn(16, 4), ember.randn(16, 1), ember.randn(16, 1), ember.randn(16, 1)]
    for _ in range(3):
        step(*args)
    sp = step.specializations[-1]
    assert sp.calls >= 1 and not step.fallbacks

    def check():
        _, _, key = step.guard_key(args, {})
        return (sp.matches(key) and _first_change(sp.reached) is None and sp.captured_hold()
                and not sp.grad_changes())

    assert check()
    return _median_us(check)


def main() -> None:
    ember.manual_seed(0)
    args = [ember.randn(4, 4) for _ in range(4)]
    scripted = ember.script(twenty_ops)
    with ember.no_grad():
        scripted(*args)
        scripted(*args)
        ops = len(scripted.graph.nodes)
        guard = _median_us(lambda: scripted.guard_key(args, {}))
        cached = _median_us(lambda: scripted(*args))
        eager = _median_us(lambda: twenty_ops(*args))
    print(f"ember {ember.__version__}; medians of 2000 calls, tiny (4x4) float32 inputs\n")
    verdict = "ok" if guard <= 10 else "MISSES"
    print(f"guard check, 4 tensor arguments          {guard:8.2f} us   (<= 10 us {verdict})")
    trainer = _trainer_guard_us()
    verdict = "ok" if trainer <= 10 else "MISSES"
    print(f"guard check, Trainer step (self.model,    {trainer:8.2f} us   (<= 10 us {verdict})\n"
          f"  self.optimizer, self.cfg; 4 tensors)")
    verdict = "ok" if cached < eager else "MISSES"
    print(f"cached {ops}-op graph, scripted call        {cached:8.2f} us")
    print(
        f"same function, eager                     {eager:8.2f} us   "
        f"scripted/eager {cached / eager:.2f}x (< 1 {verdict})"
    )

    model = mlp(ember)
    x, y = ember.randn(128, 784), ember.randint(0, 10, (128,))

    def forward_loss(inputs, targets):
        return ember.nn.functional.cross_entropy(model(inputs), targets)

    start = time.perf_counter()
    step = ember.script(forward_loss)
    step(x, y)
    trace_ms = (time.perf_counter() - start) * 1e3
    eager_ms = _median_us(lambda: forward_loss(x, y).backward(), repeats=50) / 1e3
    cached_ms = _median_us(lambda: step(x, y).backward(), repeats=50) / 1e3
    print("\nMLP 784-256-256-10 forward + loss under autograd, batch 128:")
    print(f"  first call (trace forward and backward, compile)  {trace_ms:8.2f} ms")
    print(f"  forward + backward, eager                         {eager_ms:8.2f} ms")
    print(f"  forward + backward, scripted                      {cached_ms:8.2f} ms  "
          f"({eager_ms / cached_ms:.2f}x faster)")

    # dynamic=True: one symbolic trace; a new batch size specializes and compiles that graph
    # (no Python re-run), then runs it like any cached graph
    dynamic = ember.script(model, dynamic=True)
    with ember.no_grad():
        start = time.perf_counter()
        dynamic(ember.randn(128, 784))
        first_ms = (time.perf_counter() - start) * 1e3
        sizes = [ember.randn(n, 784) for n in (96, 64, 200, 33)]
        start = time.perf_counter()
        for batch in sizes:
            dynamic(batch)
        new_size_ms = (time.perf_counter() - start) * 1e3 / len(sizes)
        again_us = _median_us(lambda: dynamic(sizes[0]), repeats=200)
        eager_us = _median_us(lambda: model(sizes[0]), repeats=200)
    print("\nMLP forward, ember.script(model, dynamic=True), no_grad:")
    print(f"  first call, batch 128 (symbolic trace, compile)    {first_ms:8.2f} ms")
    print(f"  a new batch size (specialize, compile; no retrace)  {new_size_ms:8.2f} ms")
    print(f"  that size again                                    {again_us / 1e3:8.3f} ms  "
          f"(eager {eager_us / 1e3:.3f} ms); retraces: {len(dynamic.recompiles)}")


if __name__ == "__main__":
    main()
