"""Compiled ember (native LLVM kernels) against numpy, PyTorch eager and torch.compile, one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compile.py [--quick]

Cases (issue "Compile for the CPU"): the memory-bound chain where(x > 0, x*1.5 + 0.5, x*0.1)
and the transcendental chain t*sigmoid(t)*tanh(t) with t = x*1.5 + 0.5, both on 16M float32;
softmax and layer_norm over 4096x1024 float32; the batch-1 forward of the MLP 784-256-256-10;
and the cold compile and warm (disk cache) start of that MLP. The machine's copy bandwidth is
measured too, so the memory-bound chain can be read as a fraction of it.

Each framework runs each case in a process of its own (torch's threads slow numpy down when
loaded together, and one case's large arrays colour the next); each figure is the median of
repeated calls after warm-up. jax.jit is timed when jax
is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

N = 1 << 24
ROWS, COLS = 4096, 1024


def _median_time(fn, repeat: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_ONLY = None  # the one case a worker process times (each case runs in a fresh process)


def _time(out: dict, case: str, fn, repeat: int) -> None:
    if _ONLY in (None, case):
        out[case] = _median_time(fn, repeat)


def _inputs():
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal(N, dtype=np.float32),
        "m": rng.standard_normal((ROWS, COLS), dtype=np.float32),
        "w": rng.standard_normal(COLS, dtype=np.float32),
        "b": rng.standard_normal(COLS, dtype=np.float32),
        "one": rng.standard_normal((1, 784), dtype=np.float32),
    }


def _mlp_weights():
    rng = np.random.default_rng(1)
    sizes = [(784, 256), (256, 256), (256, 10)]
    return [(rng.standard_normal((o, i), dtype=np.float32) * 0.05,
             rng.standard_normal(o, dtype=np.float32) * 0.05) for i, o in sizes]


# -- workers: each prints one JSON dict of seconds -----------------------------------------


def work_numpy(repeat):
    d = _inputs()
    x, m, w, b = d["x"], d["m"], d["w"], d["b"]
    out = {}
    dst = np.empty_like(x)
    if _ONLY in (None, "copy"):
        # also on every core at once (numpy drops the GIL for it): ember's kernels use every
        # core, so the bandwidth they are held to is the faster of the two
        from concurrent.futures import ThreadPoolExecutor

        cores = os.cpu_count() or 1
        bounds = [N * i // cores for i in range(cores + 1)]
        with ThreadPoolExecutor(cores) as pool:
            def parallel_copy():
                list(pool.map(lambda i: np.copyto(dst[bounds[i]:bounds[i + 1]],
                                                  x[bounds[i]:bounds[i + 1]]), range(cores)))

            out["copy"] = min(_median_time(lambda: np.copyto(dst, x), repeat),
                              _median_time(parallel_copy, repeat))
    _time(out, "where", lambda: np.where(x > 0, x * 1.5 + 0.5, x * 0.1), repeat)

    def chain():
        t = x * 1.5 + 0.5
        return t * (1 / (1 + np.exp(-t))) * np.tanh(t)

    _time(out, "transcendental", chain, max(3, repeat // 2))

    def softmax():
        e = np.exp(m - m.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    _time(out, "softmax", softmax, repeat)

    def layer_norm():
        c = m - m.mean(1, keepdims=True)
        return c / np.sqrt((c * c).mean(1, keepdims=True) + 1e-5) * w + b

    _time(out, "layer_norm", layer_norm, repeat)
    layers = [(wt.T.copy(), bias) for wt, bias in _mlp_weights()]
    one = d["one"]

    def forward():
        h = one
        for i, (wt, bias) in enumerate(layers):
            h = h @ wt + bias
            if i < len(layers) - 1:
                h = np.maximum(h, 0)
        return h

    _time(out, "mlp_b1", forward, repeat * 50)

    # the MLP training step written by hand: forward, softmax cross-entropy, backward, SGD
    rng = np.random.default_rng(2)
    xb = rng.standard_normal((128, 784), dtype=np.float32)
    yb = rng.integers(0, 10, size=128)
    params = [[wt.copy(), bias.copy()] for wt, bias in layers]

    def train_step():
        acts = [xb]
        h = xb
        for i, (wt, bias) in enumerate(params):
            h = h @ wt + bias
            if i < len(params) - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        z = h - h.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = p
        g[np.arange(128), yb] -= 1
        g /= 128
        for i in range(len(params) - 1, -1, -1):
            wt, bias = params[i]
            gw, gb = acts[i].T @ g, g.sum(0)
            if i:
                g = (g @ wt.T) * (acts[i] > 0)
            wt -= 0.01 * gw
            bias -= 0.01 * gb

    _time(out, "mlp_step", train_step, repeat * 10)
    return out


def work_torch(repeat, compiled=False):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count())
    d = {k: torch.from_numpy(v) for k, v in _inputs().items()}
    x, m, w, b = d["x"], d["m"], d["w"], d["b"]
    wrap = torch.compile if compiled else (lambda f: f)
    out = {}
    where = wrap(lambda x: torch.where(x > 0, x * 1.5 + 0.5, x * 0.1))
    chain = wrap(lambda x: (lambda t: t * torch.sigmoid(t) * torch.tanh(t))(x * 1.5 + 0.5))
    softmax = wrap(lambda m: F.softmax(m, -1))
    layer_norm = wrap(lambda m, w, b: F.layer_norm(m, (COLS,), w, b))
    linears = [torch.nn.Linear(i, o) for i, o in [(784, 256), (256, 256), (256, 10)]]
    with torch.no_grad():
        for lin, (wt, bias) in zip(linears, _mlp_weights()):
            lin.weight.copy_(torch.from_numpy(wt))
            lin.bias.copy_(torch.from_numpy(bias))
    net = wrap(torch.nn.Sequential(linears[0], torch.nn.ReLU(), linears[1], torch.nn.ReLU(),
                                   linears[2]))
    with torch.no_grad():
        _time(out, "where", lambda: where(x), repeat)
        _time(out, "transcendental", lambda: chain(x), repeat)
        _time(out, "softmax", lambda: softmax(m), repeat)
        _time(out, "layer_norm", lambda: layer_norm(m, w, b), repeat)
        one = d["one"]
        _time(out, "mlp_b1", lambda: net(one), repeat * 50)
    if not compiled:
        _time(out, "mlp_step", _train_step(torch, net, F), repeat * 10)
    return out


def _train_step(fw, net, F):
    """The MLP training step at batch 128 (SGD), the same code for torch and ember."""
    rng = np.random.default_rng(2)
    x = fw.tensor(rng.standard_normal((128, 784), dtype=np.float32))
    y = fw.tensor(rng.integers(0, 10, size=128))
    opt = fw.optim.SGD(net.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def work_ember(repeat):
    import ember
    import ember.nn as nn
    import ember.nn.functional as F

    d = {k: ember.tensor(v) for k, v in _inputs().items()}
    x, m, w, b = d["x"], d["m"], d["w"], d["b"]
    where = ember.script(lambda x: ember.where(x > 0, x * 1.5 + 0.5, x * 0.1))

    def chain_fn(x):
        t = x * 1.5 + 0.5
        return t * t.sigmoid() * t.tanh()

    chain = ember.script(chain_fn)
    softmax = ember.script(lambda m: F.softmax(m, -1))
    layer_norm = ember.script(lambda m, w, b: F.layer_norm(m, (COLS,), w, b))
    linears = [nn.Linear(i, o) for i, o in [(784, 256), (256, 256), (256, 10)]]
    with ember.no_grad():
        for lin, (wt, bias) in zip(linears, _mlp_weights()):
            lin.weight.copy_(ember.tensor(wt))
            lin.bias.copy_(ember.tensor(bias))
    net = ember.script(nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2]))
    out = {}
    with ember.no_grad():
        _time(out, "where", lambda: where(x), repeat)
        _time(out, "transcendental", lambda: chain(x), repeat)
        _time(out, "softmax", lambda: softmax(m), repeat)
        _time(out, "layer_norm", lambda: layer_norm(m, w, b), repeat)
        one = d["one"]
        _time(out, "mlp_b1", lambda: net(one), repeat * 50)
    _time(out, "mlp_step", ember.script(_train_step(ember, net, F)), repeat * 10)
    return out


def work_ember_start(repeat):
    """Seconds from script() to the results of the scripted MLP training step's first two
    calls (the second retraces once: .grad goes from None to a tensor), compiles included."""
    import ember
    import ember.nn as nn
    import ember.nn.functional as F

    net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 10))
    start = time.perf_counter()
    step = ember.script(_train_step(ember, net, F))
    step()
    step()
    return {"start": time.perf_counter() - start}


def work_jax(repeat):
    import jax
    import jax.numpy as jnp

    d = _inputs()
    x = jnp.asarray(d["x"])
    where = jax.jit(lambda x: jnp.where(x > 0, x * 1.5 + 0.5, x * 0.1))
    chain = jax.jit(lambda x: (lambda t: t * jax.nn.sigmoid(t) * jnp.tanh(t))(x * 1.5 + 0.5))
    out = {}
    _time(out, "where", lambda: where(x).block_until_ready(), repeat)
    _time(out, "transcendental", lambda: chain(x).block_until_ready(), repeat)
    return out


WORKERS = {"numpy": work_numpy, "torch": work_torch, "ember": work_ember,
           "torch_compile": lambda r: work_torch(r, compiled=True), "jax": work_jax,
           "ember_start": work_ember_start}


CASES = ("copy", "where", "transcendental", "softmax", "layer_norm", "mlp_b1", "mlp_step")


def _run(worker: str, repeat: int, env=None, only: str | None = None):
    command = [sys.executable, __file__, "--worker", worker, "--repeat", str(repeat)]
    if only:
        command += ["--only", only]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return None, result.stderr.strip().splitlines()[-1:] or ["failed"]
    return json.loads(result.stdout.strip().splitlines()[-1]), None


def _run_cases(worker: str, repeat: int):
    """Every case of a worker, each in a fresh process (so earlier cases' memory and caches
    do not colour later ones)."""
    merged, error = {}, None
    for case in CASES:
        got, error = _run(worker, repeat, only=case)
        if got is None:
            return (merged or None), error
        merged.update(got)
    return merged, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only")
    args = parser.parse_args()
    if args.worker:
        global _ONLY
        _ONLY = args.only
        print(json.dumps(WORKERS[args.worker](args.repeat)))
        return
    repeat = 5 if args.quick else args.repeat
    results = {}
    for name in ("numpy", "ember", "torch", "torch_compile", "jax"):
        results[name], error = _run_cases(name, repeat)
        if error:
            print(f"{name}: not measured ({error[0]})")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, EMBER_CACHE_DIR=cache)
        cold, _ = _run("ember_start", 1, env)
        warm, _ = _run("ember_start", 1, env)
    e, n = results["ember"], results["numpy"]
    copy_gbs = 2 * N * 4 / n["copy"] / 1e9
    print(f"copy bandwidth (numpy copyto, 16M float32, the faster of one core and all cores): "
          f"{copy_gbs:.1f} GB/s")
    header = f"{'case':<16}{'ember ms':>10}" + "".join(
        f"{k + ' ms':>18}" for k in ("numpy", "torch", "torch_compile", "jax"))
    print(header)
    for case in ("where", "transcendental", "softmax", "layer_norm", "mlp_b1", "mlp_step"):
        row = f"{case:<16}{e[case] * 1e3:>10.3f}"
        for peer in ("numpy", "torch", "torch_compile", "jax"):
            r = results.get(peer)
            if r and case in r:
                row += f"{r[case] * 1e3:>10.3f} ({r[case] / e[case]:4.2f}x)"
            else:
                row += f"{'-':>18}"
        print(row)
    print("(x = peer time / ember time: above 1 means ember is faster)")
    gbs = 2 * N * 4 / e["where"] / 1e9
    print(f"where chain: {gbs:.1f} GB/s = {gbs / copy_gbs:.0%} of copy bandwidth (target 70%)")
    if cold and warm:
        print(f"MLP training step, script + first calls: cold {cold['start']:.3f} s (target 2), "
              f"warm start from the disk cache {warm['start']:.3f} s (target 0.3)")


if __name__ == "__main__":
    main()
