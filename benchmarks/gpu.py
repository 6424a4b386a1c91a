"""GPU figures for the issue "Compile for the GPU", from one run on a machine with a CUDA device.

    python benchmarks/gpu.py [--quick]

Prints, each from its own timing on the same device:
- the device's copy bandwidth (device to device, counting the read and the write);
- the elementwise chain t = x*1.5 + 0.5; y = t*sigmoid(t)*tanh(t) on 64M float32, scripted in
  ember (one generated CUDA kernel), as a fraction of that bandwidth, next to cupy op by op,
  PyTorch eager and torch.compile;
- softmax and layer_norm over 16384x4096 float32, ember scripted against PyTorch eager and
  torch.compile;
- the MLP 784-256-256-10 (batch 128, SGD) and char transformer (batch 16x64, AdamW) training
  steps, ember eager and scripted, against PyTorch eager.
Targets: the chain at least 80% of copy bandwidth; softmax and layer_norm at least as fast as
torch.compile; the training steps no slower than PyTorch eager.

Without cupy or a CUDA device it says so and measures nothing. Each figure is the median of
repeated calls after warm-up, the device synchronized around every call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

N = 1 << 26
ROWS, COLS = 16384, 4096


def _device():
    """cupy, or None with the reason."""
    try:
        import cupy
    except ImportError:
        return None, "cupy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "no CUDA device"
    except Exception as exc:  # noqa: BLE001 -- any driver error means no usable device
        return None, f"no usable CUDA device ({exc})"
    return cupy, None


def _median(fn, sync, repeat):
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _chain_ember(ember):
    def chain(x):
        t = x * 1.5 + 0.5
        return t * t.sigmoid() * t.tanh()

    return ember.script(chain)


def measure(repeat: int) -> dict:
    cp, why = _device()
    if cp is None:
        return {"skipped": why}
    import ember
    import ember.nn.functional as F

    sync = cp.cuda.Device().synchronize
    out = {"device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode()}
    rng = np.random.default_rng(0)
    host = rng.standard_normal(N, dtype=np.float32)
    x = cp.asarray(host)
    dst = cp.empty_like(x)
    out["copy"] = _median(lambda: dst.__setitem__(Ellipsis, x), sync, repeat)

    def cupy_chain():
        t = x * 1.5 + 0.5
        return t * (1 / (1 + cp.exp(-t))) * cp.tanh(t)

    out["chain_cupy"] = _median(cupy_chain, sync, repeat)
    ex = ember.tensor(host, device="cuda")
    chain = _chain_ember(ember)
    with ember.no_grad():
        out["chain_ember"] = _median(lambda: chain(ex), sync, repeat)
        m = ember.tensor(rng.standard_normal((ROWS, COLS), dtype=np.float32), device="cuda")
        w = ember.tensor(rng.standard_normal(COLS, dtype=np.float32), device="cuda")
        b = ember.tensor(rng.standard_normal(COLS, dtype=np.float32), device="cuda")
        softmax = ember.script(lambda m: F.softmax(m, -1))
        layer_norm = ember.script(lambda m, w, b: F.layer_norm(m, (COLS,), w, b))
        out["softmax_ember"] = _median(lambda: softmax(m), sync, repeat)
        out["layer_norm_ember"] = _median(lambda: layer_norm(m, w, b), sync, repeat)
    out.update(_steps(ember, "cuda", sync, repeat, "ember"))

    torch = _torch()
    if torch is not None:
        tsync = torch.cuda.synchronize
        tx = torch.from_numpy(host).cuda()
        tm, tw, tb = (torch.from_numpy(t.numpy(force=True)).cuda() for t in (m, w, b))
        tf = torch.nn.functional

        def torch_chain(x):
            t = x * 1.5 + 0.5
            return t * torch.sigmoid(t) * torch.tanh(t)

        with torch.no_grad():
            out["chain_torch"] = _median(lambda: torch_chain(tx), tsync, repeat)
            out["softmax_torch"] = _median(lambda: tf.softmax(tm, -1), tsync, repeat)
            out["layer_norm_torch"] = _median(lambda: tf.layer_norm(tm, (COLS,), tw, tb),
                                              tsync, repeat)
            compiled_chain = torch.compile(torch_chain)
            compiled_softmax = torch.compile(lambda m: tf.softmax(m, -1))
            compiled_ln = torch.compile(lambda m, w, b: tf.layer_norm(m, (COLS,), w, b))
            out["chain_torch_compile"] = _median(lambda: compiled_chain(tx), tsync, repeat)
            out["softmax_torch_compile"] = _median(lambda: compiled_softmax(tm), tsync, repeat)
            out["layer_norm_torch_compile"] = _median(lambda: compiled_ln(tm, tw, tb), tsync,
                                                      repeat)
        out.update(_steps(torch, "cuda", tsync, repeat, "torch"))
    return out


def _steps(fw, device, sync, repeat, name) -> dict:
    """The MLP and transformer training steps: eager, and (ember) as one scripted step."""
    from models import char_transformer, mlp

    rng = np.random.default_rng(2)
    vocab = 48
    cases = {
        "mlp": (lambda: mlp(fw), lambda p: fw.optim.SGD(p, lr=0.01, momentum=0.9),
                rng.standard_normal((128, 784)).astype(np.float32), rng.integers(0, 10, 128)),
        "transformer": (lambda: char_transformer(fw, vocab),
                        lambda p: fw.optim.AdamW(p, lr=3e-4),
                        rng.integers(0, vocab, (16, 64)), rng.integers(0, vocab, (16, 64))),
    }
    out = {}
    for case, (build, make_opt, x_np, y_np) in cases.items():
        fw.manual_seed(0)
        model = build().to(device)
        opt = make_opt(model.parameters())
        step = _training_step(fw, model, opt, fw.tensor(x_np, device=device),
                              fw.tensor(y_np, device=device))
        out[f"{case}_step_{name}"] = _median(step, sync, repeat)
        if name == "ember":
            out[f"{case}_step_ember_scripted"] = _median(fw.script(step), sync, repeat)
    return out


def _training_step(fw, model, opt, x, y):
    def step():
        logits = model(x)
        loss = fw.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                              y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def report(out: dict) -> None:
    if "skipped" in out:
        print(f"not measured: {out['skipped']}")
        return
    print(f"device: {out['device']}")
    copy_gbs = 2 * N * 4 / out["copy"] / 1e9
    print(f"copy bandwidth (device to device, 64M float32, read + write): {copy_gbs:.0f} GB/s")
    chain_gbs = 2 * N * 4 / out["chain_ember"] / 1e9
    print(f"elementwise chain, 64M float32: ember {out['chain_ember'] * 1e3:.3f} ms = "
          f"{chain_gbs / copy_gbs:.0%} of copy bandwidth (target 80%)")
    for peer in ("cupy", "torch", "torch_compile"):
        key = f"chain_{peer}"
        if key in out:
            print(f"    {peer:<14}{out[key] * 1e3:9.3f} ms ({out[key] / out['chain_ember']:.2f}x)")
    for case in ("softmax", "layer_norm"):
        line = f"{case} {ROWS}x{COLS}: ember {out[f'{case}_ember'] * 1e3:.3f} ms"
        for peer in ("torch", "torch_compile"):
            key = f"{case}_{peer}"
            if key in out:
                line += f", {peer} {out[key] * 1e3:.3f} ms ({out[key] / out[f'{case}_ember']:.2f}x)"
        print(line + " (target: at least as fast as torch_compile)")
    for case in ("mlp", "transformer"):
        line = (f"{case} training step: ember eager {out[f'{case}_step_ember'] * 1e3:.2f} ms, "
                f"scripted {out[f'{case}_step_ember_scripted'] * 1e3:.2f} ms")
        key = f"{case}_step_torch"
        if key in out:
            line += (f", torch eager {out[key] * 1e3:.2f} ms (scripted ember/torch "
                     f"{out[f'{case}_step_ember_scripted'] / out[key]:.2f}, target <= 1)")
        print(line)
    print("(x = peer time / ember time: above 1 means ember is faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    report(measure(5 if args.quick else 30))


if __name__ == "__main__":
    main()
