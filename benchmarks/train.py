"""Training-step time of ember eager against PyTorch eager, from one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train.py [--quick]

Three models, built by the same code for both frameworks (examples/models.py): the MLP
784-256-256-10 at batch 128 with SGD, the digits CNN at batch 64 with Adam, and the char
transformer at batch 16 x 64 tokens with AdamW. A step is forward, cross-entropy loss,
zero_grad, backward and the optimizer step. Target: ember at most 1.5x PyTorch's step time.

Each framework is timed in a process of its own, started by this one: loaded together, torch's
OpenMP threads and numpy's OpenBLAS threads slow each other down (ember's steps ran twice as
slow with torch merely imported). The processes alternate over --rounds rounds (3), and each
figure is the best round's median, for both frameworks alike.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

from models import char_transformer, digits_cnn, mlp

TARGET = 1.5


def _cases():
    rng = np.random.default_rng(0)
    vocab = 48
    return [
        (
            "MLP 784-256-256-10, batch 128, SGD",
            lambda fw: mlp(fw),
            lambda fw, p: fw.optim.SGD(p, lr=0.01, momentum=0.9),
            rng.standard_normal((128, 784)).astype(np.float32),
            rng.integers(0, 10, 128),
        ),
        (
            "digits CNN, batch 64, Adam",
            lambda fw: digits_cnn(fw),
            lambda fw, p: fw.optim.Adam(p, lr=1e-3),
            rng.standard_normal((64, 1, 8, 8)).astype(np.float32),
            rng.integers(0, 10, 64),
        ),
        (
            "char transformer, batch 16x64, AdamW",
            lambda fw: char_transformer(fw, vocab),
            lambda fw, p: fw.optim.AdamW(p, lr=3e-4),
            rng.integers(0, vocab, (16, 64)),
            rng.integers(0, vocab, (16, 64)),
        ),
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


def _measure(framework: str, steps: int) -> None:
    """In a child process: time every case with one framework, print JSON."""
    if framework == "torch":
        import torch as fw

        fw.set_num_threads(os.cpu_count() or 1)
    else:
        import ember as fw
    result = {"version": fw.__version__, "times": []}
    for _, build, make_opt, x, y in _cases():
        result["times"].append(_step_time(fw, build, make_opt, x, y, steps))
    print(json.dumps(result))


def _run_child(framework: str, steps: int):
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", framework, "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        if framework == "torch" and "No module named 'torch'" in proc.stderr:
            return None
        raise SystemExit(f"{framework} run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _best(results):
    """The per-case minimum over rounds' results (None when the framework is absent)."""
    if results[0] is None:
        return None
    best = dict(results[0])
    best["times"] = [min(r["times"][k] for r in results) for k in range(len(best["times"]))]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--child", choices=["ember", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating runs of each framework; each figure is the best")
    args = parser.parse_args()
    steps = args.steps or (5 if args.quick else 20)
    if args.child:
        _measure(args.child, steps)
        return
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        print("warning: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set; numpy's BLAS runs slower")
    # rounds alternate the two frameworks' processes, and each step time is the best of the
    # rounds' medians, the same for both: this VM's timings drift by 20-40% between runs
    rounds = [(_run_child("ember", steps), _run_child("torch", steps))
              for _ in range(args.rounds)]
    ours_all = _best([r[0] for r in rounds])
    theirs_all = _best([r[1] for r in rounds])
    threads = os.cpu_count() or 1
    print(
        f"ember {ours_all['version']}, numpy {np.__version__}, "
        f"torch {theirs_all['version'] if theirs_all else 'not installed'}; "
        f"{threads} CPU threads, median of {steps} steps, best of {args.rounds} alternating "
        f"rounds\n"
    )
    print(f"{'model':42s} {'ember':>12s} {'torch':>12s} {'ember/torch':>22s}")
    for k, (name, *_) in enumerate(_cases()):
        ours = ours_all["times"][k]
        if theirs_all is None:
            print(f"{name:42s} {ours * 1e3:9.2f} ms {'-':>12s} {'torch not installed':>22s}")
            continue
        theirs = theirs_all["times"][k]
        ratio = ours / theirs
        verdict = "ok" if ratio <= TARGET else "MISSES"
        print(
            f"{name:42s} {ours * 1e3:9.2f} ms {theirs * 1e3:9.2f} ms "
            f"{ratio:8.2f}x (<= {TARGET} {verdict})"
        )


if __name__ == "__main__":
    main()
