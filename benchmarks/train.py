"""Training-step time of ember eager against PyTorch eager, from one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train.py [--quick]

Three models, built by the same code for both frameworks (examples/models.py): the MLP
784-256-256-10 at batch 128 with SGD, the digits CNN at batch 64 with Adam, and the char
transformer at batch 16 x 64 tokens with AdamW. A step is forward, cross-entropy loss,
zero_grad, backward and the optimizer step. Target: ember at most 1.5x PyTorch's step time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import ember  # noqa: E402
from models import char_transformer, digits_cnn, mlp  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

TARGET = 1.5


def _cases():
    rng = np.random.default_rng(0)
    vocab = 48
    return [
        ("MLP 784-256-256-10, batch 128, SGD",
         lambda fw: mlp(fw), lambda fw, p: fw.optim.SGD(p, lr=0.01, momentum=0.9),
         rng.standard_normal((128, 784)).astype(np.float32), rng.integers(0, 10, 128)),
        ("digits CNN, batch 64, Adam",
         lambda fw: digits_cnn(fw), lambda fw, p: fw.optim.Adam(p, lr=1e-3),
         rng.standard_normal((64, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 64)),
        ("char transformer, batch 16x64, AdamW",
         lambda fw: char_transformer(fw, vocab), lambda fw, p: fw.optim.AdamW(p, lr=3e-4),
         rng.integers(0, vocab, (16, 64)), rng.integers(0, vocab, (16, 64))),
    ]


def _step_time(fw, build, make_opt, x_np, y_np, steps: int) -> float:
    fw.manual_seed(0)
    model = build(fw)
    model.train()
    opt = make_opt(fw, model.parameters())
    x = fw.tensor(x_np)
    y = fw.tensor(y_np)
    loss_fn = fw.nn.functional.cross_entropy

    def step():
        out = model(x)
        loss = loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    args = parser.parse_args()
    steps = 5 if args.quick else 20
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        print("warning: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set; numpy's BLAS runs slower")
    threads = os.cpu_count() or 1
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"ember {ember.__version__}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}; {threads} CPU threads\n")
    print(f"{'model':42s} {'ember':>12s} {'torch':>12s} {'ember/torch':>22s}")
    for name, build, make_opt, x, y in _cases():
        ours = _step_time(ember, build, make_opt, x, y, steps)
        if torch is None:
            print(f"{name:42s} {ours * 1e3:9.2f} ms {'-':>12s} {'torch not installed':>22s}")
            continue
        theirs = _step_time(torch, build, make_opt, x, y, steps)
        ratio = ours / theirs
        verdict = "ok" if ratio <= TARGET else "MISSES"
        print(f"{name:42s} {ours * 1e3:9.2f} ms {theirs * 1e3:9.2f} ms "
              f"{ratio:8.2f}x (<= {TARGET} {verdict})")


if __name__ == "__main__":
    main()
