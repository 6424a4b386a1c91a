"""Inference with an exported model, from one run: ember.runtime against PyTorch eager and
onnxruntime on the digits CNN (examples/models.py).

    python benchmarks/runtime.py [--quick]

(1) Start-up: in a fresh process, the time to import ember.runtime, load the .ember file and
make the first call at batch 1 (target: load + first call under 0.5 s). (2) The median latency
of one call at batch 1 and the throughput at batch 256 of the loaded Program, of PyTorch eager
(same weights, copied through numpy; torch.no_grad, eval mode) and of onnxruntime on the same
model exported by ember.onnx (when onnx and onnxruntime are installed), and of the .ember
compiled to a C library (python -m ember.runtime compile, runtime/library.py) called from C by
examples/c/run_model.c (where a C compiler exists). Target: ember's batch-1 latency below
PyTorch eager's. (3) Threads: batch-1 calls per second on one loaded Program from 1 thread and
from 2 threads at once (each checking its outputs), 1 and 2 alternating over rounds so they
see the same load; the median round, and the thread budget (runtime/threads.py: the cores
other processes left idle) seen meanwhile; and the same from 1 and 2 threads of C calling the
C library at once (run_model.c --callers: no Python, no GIL).

Each framework is timed in a process of its own, started by this one: loaded together, torch's
OpenMP threads and numpy's OpenBLAS threads slow each other down (see benchmarks/train.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

STARTUP_TARGET_S = 0.5
BATCHES = (1, 256)

# the fresh process that times start-up: nothing is imported before the clock starts
_STARTUP = """
import sys, time
import numpy as np
start = time.perf_counter()
import ember.runtime
imported = time.perf_counter()
program = ember.runtime.load(sys.argv[1])
loaded = time.perf_counter()
program(np.zeros((1, 1, 8, 8), np.float32))
called = time.perf_counter()
print(imported - start, loaded - imported, called - loaded)
"""


def _inputs(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)


def _timings(call, repeats: int) -> dict:
    """{batch: median seconds per call} and the outputs at each batch size."""
    result, outputs = {}, {}
    for batch in BATCHES:
        x = _inputs(batch)
        outputs[batch] = np.asarray(call(x))
        count = repeats if batch == 1 else max(repeats // 20, 5)
        for _ in range(min(count, 20)):
            call(x)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            call(x)
            times.append(time.perf_counter() - start)
        result[batch] = statistics.median(times)
    return result, outputs


def _ember_call(folder: str):
    import ember.runtime

    program = ember.runtime.load(os.path.join(folder, "digits.ember"))
    return program, ember.__version__


def _torch_call(folder: str):
    import torch
    from models import digits_cnn

    torch.set_num_threads(os.cpu_count() or 1)
    model = digits_cnn(torch).eval()
    weights = np.load(os.path.join(folder, "weights.npz"))
    state = model.state_dict()
    for name in state:
        if name in weights.files:
            state[name] = torch.from_numpy(weights[name]).to(state[name].dtype)
    model.load_state_dict(state)

    def call(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return call, torch.__version__


def _onnxruntime_call(folder: str):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        os.path.join(folder, "digits.onnx"), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), onnxruntime.__version__


_CHILDREN = {"ember": _ember_call, "torch": _torch_call, "onnxruntime": _onnxruntime_call}

# the GPT forward: 4 layers, 128 wide, 4 heads, sequence 64, batch 1 (examples/models.py gpt)
GPT_SIZES = dict(vocab_size=512, context=64, d_model=128, heads=4, layers=4)


def _tokens() -> np.ndarray:
    return np.random.default_rng(64).integers(0, GPT_SIZES["vocab_size"], (1, 64))


def _export_gpt(folder: str) -> bool:
    """The GPT (random weights) as gpt.ember and gpt.onnx; whether the .onnx was written."""
    import ember
    from models import gpt

    ember.manual_seed(0)
    model = gpt(ember, **GPT_SIZES).eval()
    example = ember.tensor(_tokens())
    ember.export(model, example, os.path.join(folder, "gpt.ember"))
    try:
        ember.onnx.export(model, example, os.path.join(folder, "gpt.onnx"))
    except ember.EmberError as exc:
        if "needs the onnx package" not in str(exc):
            raise
        return False
    return True


def _measure_gpt(framework: str, folder: str, repeats: int) -> None:
    """In a child process: the median latency of the GPT forward at batch 1, as JSON."""
    x = _tokens()
    if framework == "ember":
        import ember.runtime
        from ember.runtime.graph_entry import NativeGraph

        program = ember.runtime.load(os.path.join(folder, "gpt.ember"))
        call, version = program, ember.__version__
        native = isinstance(getattr(program, "_program", None), NativeGraph)
        execution = "one native entry" if native else "step by step"
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(os.path.join(folder, "gpt.onnx"),
                                               providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        call, version = (lambda t: session.run(None, {name: t})[0]), onnxruntime.__version__
        execution = ""
    out = np.asarray(call(x))
    for _ in range(10):
        call(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - start)
    np.save(os.path.join(folder, f"gpt-{framework}.npy"), out)
    print(json.dumps({"version": version, "median": statistics.median(times),
                      "execution": execution}))


def _gpt_rows(folder: str, repeats: int) -> list:
    """[(framework, median seconds, max |diff| from ember)] of the GPT forward."""
    has_onnx = _export_gpt(folder)
    rows = []
    for framework in ("ember", "onnxruntime") if has_onnx else ("ember",):
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-gpt",
                               framework, folder, str(repeats)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            if "No module named" in proc.stderr and framework != "ember":
                continue
            raise SystemExit(f"gpt {framework} run failed:\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        out = np.load(os.path.join(folder, f"gpt-{framework}.npy"))
        reference = np.load(os.path.join(folder, "gpt-ember.npy"))
        rows.append((framework, result, float(np.abs(out - reference).max())))
    return rows


THREAD_ROUNDS = 5


def _measure_threads(folder: str, seconds: float) -> None:
    """In a child process: batch-1 calls/s of the loaded digits CNN from 1 and 2 threads."""
    import ember.runtime
    from ember.runtime.threads import threads
    from entry_threads import calls_per_second

    program = ember.runtime.load(os.path.join(folder, "digits.ember"))
    x = _inputs(1)
    want = program(x)
    rates, budgets = {1: [], 2: []}, []
    for _ in range(THREAD_ROUNDS):
        for n in (1, 2):
            rates[n].append(calls_per_second(program, x, want, n, seconds))
            budgets.append(threads())
    print(json.dumps({n: statistics.median(r) for n, r in rates.items()} | {
        "budget": [min(budgets), max(budgets)]}))


def _measure(framework: str, folder: str, repeats: int) -> None:
    """In a child process: time one framework, save its outputs, print JSON."""
    call, version = _CHILDREN[framework](folder)
    times, outputs = _timings(call, repeats)
    np.savez(
        os.path.join(folder, f"out-{framework}.npz"), **{str(b): o for b, o in outputs.items()}
    )
    print(json.dumps({"version": version, "times": {str(b): t for b, t in times.items()}}))


def _child(framework: str, folder: str, repeats: int):
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", framework, folder, str(repeats)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        if "No module named" in proc.stderr and framework != "ember":
            return None
        raise SystemExit(f"{framework} run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _c_library(folder: str, repeats: int):
    """The .ember compiled to a C library (one entry per batch size), timed from C by
    examples/c/run_model.c --bench: {"version", "times"} as a child gives, or None without a
    C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    path = os.path.join(folder, "digits.ember")
    library = os.path.join(folder, "libmodel.so")
    sizes = [arg for b in BATCHES for arg in ("--sizes", f"batch={b}")]
    subprocess.run([sys.executable, "-m", "ember.runtime", "compile", path, "-o", library,
                    *sizes], check=True, capture_output=True)
    program = os.path.join(folder, "run_model")
    subprocess.run([cc, "-O2", f"-I{folder}", "-o", program,
                    os.path.join(HERE, "..", "examples", "c", "run_model.c"), library, "-lm",
                    "-lpthread", f"-Wl,-rpath,{folder}"], check=True, capture_output=True)
    times, outputs = {}, {}
    for entry, batch in enumerate(BATCHES):
        x = os.path.join(folder, f"x{batch}.bin")
        _inputs(batch).tofile(x)
        count = repeats if batch == 1 else max(repeats // 20, 5)
        lines = subprocess.run([program, path, x, "--entry", str(entry), "--bench", str(count)],
                               check=True, capture_output=True, text=True).stdout.splitlines()
        outputs[str(batch)] = np.array(lines[1].split(), np.float32).reshape(batch, -1)
        times[str(batch)] = float(lines[2].split("median ")[1].split()[0]) * 1e-6
    np.savez(os.path.join(folder, "out-C library.npz"), **outputs)
    # batch-1 calls from 1 and from 2 threads of C at once (no Python, no GIL), alternating
    x = os.path.join(folder, "x1.bin")
    rates: dict = {1: [], 2: []}
    for _ in range(THREAD_ROUNDS):
        for callers in (1, 2):
            last = subprocess.run([program, path, x, "--entry", "0", "--bench", str(repeats * 10),
                                   "--callers", str(callers)], check=True, capture_output=True,
                                  text=True).stdout.splitlines()[-1]
            rates[callers].append(float(last.split()[2]))
    callers = {str(k): statistics.median(v) for k, v in rates.items()}
    return {"version": "examples/c/run_model.c", "times": times, "callers": callers}


def _export(folder: str) -> bool:
    """The trained-size digits CNN (random weights) as .ember, .onnx and weights.npz; whether
    the .onnx was written."""
    import ember
    from models import digits_cnn

    ember.manual_seed(0)
    model = digits_cnn(ember).eval()
    example = ember.tensor(_inputs(8))
    batch = {"input": {0: "batch"}}
    ember.export(model, example, os.path.join(folder, "digits.ember"), dynamic_dims=batch)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    np.savez(os.path.join(folder, "weights.npz"), **state)
    try:
        ember.onnx.export(model, example, os.path.join(folder, "digits.onnx"), dynamic_dims=batch)
    except ember.EmberError as exc:
        if "needs the onnx package" not in str(exc):
            raise
        return False
    return True


def _startup(folder: str, runs: int) -> tuple:
    """The median (import, load, first call) seconds over fresh processes."""
    path = os.path.join(folder, "digits.ember")
    samples = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", _STARTUP, path], capture_output=True, text=True, check=True
        )
        samples.append([float(v) for v in proc.stdout.split()])
    return tuple(statistics.median(s[i] for s in samples) for i in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed calls")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-gpt", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        framework, folder, repeats = args.child
        _measure(framework, folder, int(repeats))
        return
    if args.child_threads:
        folder, seconds = args.child_threads
        _measure_threads(folder, float(seconds))
        return
    if args.child_gpt:
        framework, folder, repeats = args.child_gpt
        _measure_gpt(framework, folder, int(repeats))
        return
    repeats = 100 if args.quick else 500
    with tempfile.TemporaryDirectory() as folder:
        has_onnx = _export(folder)
        imported, loaded, first = _startup(folder, 3 if args.quick else 7)
        results = {"ember": _child("ember", folder, repeats)}
        results["torch"] = _child("torch", folder, repeats)
        results["onnxruntime"] = _child("onnxruntime", folder, repeats) if has_onnx else None
        results["C library"] = _c_library(folder, repeats)
        gpt_rows = _gpt_rows(folder, max(repeats // 5, 20))
        threads = json.loads(subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child-threads", folder,
             "0.3" if args.quick else "1"], capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1])
        reference = np.load(os.path.join(folder, "out-ember.npz"))
        differences = {}
        for name, result in results.items():
            if result is not None:
                other = np.load(os.path.join(folder, f"out-{name}.npz"))
                differences[name] = max(
                    float(np.abs(other[k] - reference[k]).max()) for k in reference.files
                )

    versions = ", ".join(f"{k} {v['version']}" for k, v in results.items() if v is not None)
    print(f"digits CNN inference; {versions}; numpy {np.__version__}; {os.cpu_count()} CPUs\n")
    startup = loaded + first
    verdict = "ok" if startup < STARTUP_TARGET_S else "MISSES"
    print(
        f"fresh process: import ember.runtime {imported * 1e3:.1f} ms, load {loaded * 1e3:.1f} ms,"
    )
    print(
        f"  first call (batch 1) {first * 1e3:.1f} ms: load + first call {startup * 1e3:.1f} ms "
        f"(target < {STARTUP_TARGET_S * 1e3:.0f} ms: {verdict}); "
        f"with the import {(startup + imported) * 1e3:.1f} ms\n"
    )
    print(f"{'':14s} {'batch 1 latency':>16s} {'batch 256 throughput':>22s} {'max |diff|':>12s}")
    for name, result in results.items():
        if result is None:
            print(f"{name:14s} {'not installed' if name != 'C library' else 'no C compiler':>16s}")
            continue
        latency, big = result["times"]["1"], result["times"]["256"]
        print(
            f"{name:14s} {latency * 1e6:13.1f} us {256 / big:15.0f} img/s {differences[name]:12.2e}"
        )
    if results["torch"] is not None:
        ours, theirs = results["ember"]["times"]["1"], results["torch"]["times"]["1"]
        verdict = "ok" if ours < theirs else "MISSES"
        print(
            f"\nbatch-1 latency: ember {ours * 1e6:.1f} us vs PyTorch eager {theirs * 1e6:.1f} us "
            f"(target: below PyTorch's: {verdict})"
        )
    sizes = ", ".join(f"{k} {v}" for k, v in GPT_SIZES.items())
    print(f"\ngpt_forward (examples/models.py gpt: {sizes}; batch 1, sequence 64)")
    for name, result, difference in gpt_rows:
        how = f" ({result['execution']})" if result["execution"] else ""
        print(f"{name:14s} {result['median'] * 1e6:13.1f} us {difference:12.2e}{how}")
    if len(gpt_rows) == 2:
        ours, theirs = gpt_rows[0][1]["median"], gpt_rows[1][1]["median"]
        verdict = "ok" if ours <= theirs else "MISSES"
        print(f"gpt_forward: ember {ours * 1e6:.1f} us vs onnxruntime {theirs * 1e6:.1f} us "
              f"(target: at most onnxruntime's: {verdict})")

    one, two = threads["1"], threads["2"]
    low, high = threads["budget"]
    print(f"\nbatch-1 calls on one loaded Program (digits CNN), median of {THREAD_ROUNDS} "
          f"rounds: 1 thread {one:.0f}/s, 2 threads at once {two:.0f}/s ({two / one:.2f}x; "
          f"thread budget {low}..{high} of {os.cpu_count()} cores)")
    if results["C library"] is not None:
        one, two = results["C library"]["callers"]["1"], results["C library"]["callers"]["2"]
        print(f"the same from C (examples/c/run_model.c --callers), median of {THREAD_ROUNDS} "
              f"rounds: 1 thread {one:.0f}/s, 2 threads at once {two:.0f}/s ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
