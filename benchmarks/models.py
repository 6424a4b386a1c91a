"""Training steps of four models written as public examples write them, PyTorch against ember.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/models.py
        [--models gpt,dcgan,lstm,cnn] [--modes ...] [--rounds 3] [--steps 10] [--warmup 5]
        [--threads N]
    python benchmarks/models.py --check     # tiny sizes, ember only: scripted == eager

The models (benchmarks/training_steps.py), each written once as `build(torch)` over the
framework module (torch.nn, torch.optim, torch.nn.functional), so the same source runs under
torch and under ember:

- gpt: nanoGPT's model.py (token + position embeddings, pre-LN blocks with causal
  F.scaled_dot_product_attention, exact GELU MLP, lm_head tied to the token embedding, its
  init and weight-decay groups), AdamW, clip_grad_norm_(1.0); 4 layers, 4 heads, 128 wide,
  block 64, vocab 512, batch 8.
- dcgan: the DCGAN example's iteration (discriminator on real then on detached fakes, one
  Adam step; generator through the discriminator, another Adam step), ConvTranspose2d,
  BatchNorm2d, LeakyReLU, BCELoss, noise drawn in the step; 32x32 RGB, batch 16, widths 16.
- lstm: the word_language_model example (Embedding, dropout, 2-layer nn.LSTM, Linear, hidden
  state carried and detached between steps), cross-entropy, clip_grad_norm_(0.25), SGD;
  seq 35, batch 20, vocab 1000, hidden 200.
- cnn: the digits CNN of examples/models.py (benchmarks/train.py's), batch 64, Adam.

Modes, each timed in a process of its own (started by this one; torch's OpenMP threads and
numpy's OpenBLAS threads slow each other down when loaded together): torch eager,
torch-compile (torch.compile(model), the optimizer step eager), ember eager, ember-step
(ember.script of the whole step: forward, backward, clipping, optimizer step) and ember-model
(ember.script(model) used as torch.compile(model) is). The processes alternate over --rounds
rounds; a mode's figure is the best round's median of --steps steps after --warmup steps,
which take the compiles (the table's 'late' counts graphs compiled after them). The table
gives the ratio to torch eager and, for the scripted modes, the graphs, specializations and
fallbacks of the ScriptFunction(s) (explain()'s figures; the reasons for fallbacks and
retraces are printed below the table), and how many of ember-model's specializations
autograd runs as a compiled backward rather than an op-by-op replay. A mode that raises
shows its exception and traceback's end. On a shared machine, --threads 1 keeps torch's
OpenMP pool from spinning against other processes.

--check builds every model at tiny sizes and runs a few steps ember eager, ember-step and
ember-model from the same seed: the losses must agree to 1e-5 relative and no scripted
function may fall back (tests/test_benchmark_models.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np
from entry_threads import cpu_name
from training_steps import BUILDERS, TINY

MODES = ("torch", "torch-compile", "ember", "ember-step", "ember-model")
MODELS = ("gpt", "dcgan", "lstm", "cnn")
CHECK_RTOL = 1e-5


# -- running one mode ---------------------------------------------------------------------


def _framework(mode: str):
    if mode.startswith("torch"):
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
        return torch
    import ember

    return ember


def _setup(mode: str, name: str, tiny: bool):
    """(workload, the step to call, the ScriptFunction / ScriptModules to report on)."""
    fw = _framework(mode)
    fw.manual_seed(0)
    workload = BUILDERS[name](fw, **(TINY[name] if tiny else {}))
    scripted = []

    def wrap(module):
        if mode == "torch-compile":
            return fw.compile(module)
        if mode == "ember-model":
            module = fw.script(module)
            scripted.append(module)
        return module

    step = workload.make_step(wrap)
    if mode == "ember-step":
        step = fw.script(step)
        scripted.append(step)
    return workload, step, scripted


def _call(workload, step, i, carry):
    """One training step: (its losses as floats, the carry for the next)."""
    out = step(*workload.batches[i % len(workload.batches)], *carry)
    if workload.carry:
        out, carry = out
    losses = out if isinstance(out, tuple) else (out,)
    return [float(x.item()) for x in losses], tuple(carry)


def _script_report(scripted) -> dict:
    """What the scripted functions did: graphs, specializations, fallbacks with reasons, and
    how many specializations autograd runs as compiled forward + backward."""
    report = {
        "graphs": 0,
        "specializations": 0,
        "fallbacks": [],
        "recompiles": [],
        "split": 0,
        "replayed": 0,
    }
    for s in scripted:
        report["graphs"] += len(s.graphs)
        report["specializations"] += len(s.specializations)
        label = getattr(s, "_function", s).name  # a ScriptModule's ScriptFunction names it
        report["fallbacks"] += [f"{label}: {f}" for f in s.fallbacks]
        report["recompiles"] += [f"{label}: retraced: {r[:200]}" for r in s.recompiles]
        for sp in s.specializations:
            if sp.graph is None or sp.self_contained:
                continue
            if sp.split is not None:
                report["split"] += 1
            else:
                report["replayed"] += 1
    return report


def _graph_count(mode: str, scripted) -> int | None:
    """Graphs captured so far: the ScriptFunctions' specializations, or torch.compile's."""
    if scripted:
        return sum(len(s.specializations) for s in scripted)
    if mode == "torch-compile":
        from torch._dynamo.utils import counters

        return counters["stats"]["unique_graphs"]
    return None


def _time_model(mode: str, name: str, steps: int, warmup: int) -> dict:
    workload, step, scripted = _setup(mode, name, tiny=False)
    carry = workload.carry
    graphs_before_first = _graph_count(mode, scripted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        _, carry = _call(workload, step, 0, carry)
        first = time.perf_counter() - start
        for i in range(1, warmup):
            _, carry = _call(workload, step, i, carry)
        graphs_before = _graph_count(mode, scripted)
        times = []
        for i in range(steps):
            args = workload.batches[i % len(workload.batches)] + carry
            start = time.perf_counter()
            out = step(*args)
            times.append(time.perf_counter() - start)
            carry = out[1] if workload.carry else carry
    result = {"median": statistics.median(times), "first": first, "label": workload.label}
    if graphs_before is not None:
        # graphs compiled during the timed steps (more --warmup would have taken them)
        result["late"] = _graph_count(mode, scripted) - graphs_before
        if mode == "torch-compile":
            result["dynamo_graphs"] = _graph_count(mode, scripted) - graphs_before_first
    if scripted:
        result.update(_script_report(scripted))
        result["warnings"] = sorted(
            {str(w.message)[:300] for w in caught if "ember.script" in str(w.message)}
        )
    return result


def _child(mode: str, models: list[str], steps: int, warmup: int) -> None:
    """In a child process: time every model with one mode, print JSON."""
    fw = _framework(mode)
    results = {"version": fw.__version__}
    for name in models:
        try:
            results[name] = _time_model(mode, name, steps, warmup)
        except Exception as exc:  # noqa: BLE001 (shown in the table; the other models run)
            tb = traceback.format_exception(exc)
            results[name] = {
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                "traceback": "".join(tb[-3:])[-1500:],
            }
    print(json.dumps(results))


def _run_child(mode: str, models, steps: int, warmup: int, threads: int | None):
    env = dict(os.environ)
    if threads is not None:  # torch's OpenMP pool and numpy's OpenBLAS pool alike
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "EMBER_NUM_THREADS"):
            env[var] = str(threads)
    proc = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            mode,
            "--models",
            ",".join(models),
            "--steps",
            str(steps),
            "--warmup",
            str(warmup),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        if mode.startswith("torch") and "No module named 'torch'" in proc.stderr:
            return None
        return {name: {"error": f"process failed: {proc.stderr.strip()[-300:]}"} for name in models}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the check ----------------------------------------------------------------------------


def check(models, steps: int = 4) -> None:
    """Tiny sizes: ember-step and ember-model give ember eager's losses (to CHECK_RTOL) over
    `steps` steps, and no scripted function falls back. Raises AssertionError otherwise."""
    for name in models:
        runs = {}
        for mode in ("ember", "ember-step", "ember-model"):
            workload, step, scripted = _setup(mode, name, tiny=True)
            carry = workload.carry
            losses = []
            for i in range(steps):
                values, carry = _call(workload, step, i, carry)
                losses += values
            runs[mode] = losses
            for s in scripted:
                assert not s.fallbacks, f"{name} {mode} fell back:\n{s.explain()}"
                assert any(sp.calls for sp in s.specializations), (
                    f"{name} {mode}: no call ran a cached graph:\n{s.explain()}"
                )
        for mode in ("ember-step", "ember-model"):
            np.testing.assert_allclose(
                runs[mode],
                runs["ember"],
                rtol=CHECK_RTOL,
                err_msg=f"{name}: {mode} against ember eager",
            )
        print(
            f"{name}: ember-step and ember-model losses equal eager's over {steps} steps, "
            f"no fallback"
        )


# -- the table ----------------------------------------------------------------------------


def _best(rounds: list, mode: str, name: str):
    """The round with the least median for (mode, name), or the first error."""
    entries = [r[mode][name] for r in rounds if r[mode] is not None and name in r[mode]]
    timed = [e for e in entries if "median" in e]
    if timed:
        return min(timed, key=lambda e: e["median"])
    return entries[0] if entries else None


def _columns(mode: str, entry: dict) -> str:
    """graphs, specializations, compiled backward, compiled during timing, fallbacks."""
    if mode == "torch-compile":
        return f"  {entry['dynamo_graphs']:6d} {'-':>5s} {'-':>5s} {entry['late']:4d}"
    if "graphs" not in entry:
        return ""
    bwd = (
        f"{entry['split']}/{entry['split'] + entry['replayed']}"
        if mode == "ember-model"
        else "step"
    )
    return (
        f"  {entry['graphs']:6d} {entry['specializations']:5d} {bwd:>5s} "
        f"{entry['late']:4d}  {len(entry['fallbacks']) or 'none'}"
    )


def _print_table(rounds, models, modes, steps, warmup, threads) -> None:
    versions = {m: next((r[m]["version"] for r in rounds if r[m]), "not installed") for m in modes}
    print(
        f"{cpu_name()}, {os.cpu_count()} CPUs, {threads or os.cpu_count()} thread(s); "
        f"numpy {np.__version__}, "
        f"torch {versions.get('torch', versions.get('torch-compile', '-'))}, "
        f"ember {versions.get('ember', versions.get('ember-step', '-'))}"
    )
    print(
        f"median of {steps} steps after {warmup} warm-up steps, best of {len(rounds)} "
        f"alternating rounds; 'first': the first step, compiles included\n"
    )
    print(
        f"{'model / mode':26s} {'step ms':>9s} {'first s':>8s} {'/torch':>7s}  "
        f"{'graphs':>6s} {'specs':>5s} {'bwd':>5s} {'late':>4s}  fallbacks"
    )
    notes = []
    for name in models:
        label = next(
            (e["label"] for m in modes if (e := _best(rounds, m, name)) and "label" in e), name
        )
        print(f"{name}: {label}")
        base = _best(rounds, "torch", name) if "torch" in modes else None
        base = base.get("median") if base else None
        for mode in modes:
            entry = _best(rounds, mode, name)
            if entry is None:
                print(f"  {mode:24s} {'-':>9s}  not installed")
                continue
            if "error" in entry:
                print(f"  {mode:24s} {'-':>9s}  FAILED: {entry['error'][:80]}")
                notes.append(
                    f"{name} {mode} failed: {entry['error']}\n{entry.get('traceback', '')}"
                )
                continue
            ratio = f"{entry['median'] / base:6.2f}x" if base else f"{'-':>7s}"
            print(
                f"  {mode:24s} {entry['median'] * 1e3:9.2f} {entry['first']:8.2f} "
                f"{ratio:>7s}" + _columns(mode, entry)
            )
            reasons = entry.get("fallbacks", []) + entry.get("warnings", [])
            reasons += entry.get("recompiles", [])
            if reasons:
                notes.append(f"{name} {mode}:\n" + "\n".join(f"  {r}" for r in reasons))
    print(
        "\ngraphs/specs: captured graphs and specializations (torch-compile: dynamo's "
        "graphs); bwd: ember-model's\nspecializations that autograd runs as a compiled "
        "backward / all it records (the others replay\nop by op: a write autograd must "
        "record, .grad written, an input returned); step: one\nself-contained graph per "
        "step; late: graphs compiled during the timed steps (raise --warmup)"
    )
    for note in notes:
        print(f"\n{note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated, of {','.join(MODELS)} (default: all)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, of {','.join(MODES)} (default: all)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each mode")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's and numpy's BLAS threads (default: every CPU)",
    )
    parser.add_argument(
        "--check", action="store_true", help="tiny sizes, ember only: scripted losses equal eager's"
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    modes = [m for m in args.modes.split(",") if m]
    for m in models:
        if m not in MODELS:
            parser.error(f"unknown model {m!r}; expected some of {', '.join(MODELS)}")
    for m in modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}; expected some of {', '.join(MODES)}")
    if args.check:
        check(models)
        return
    if args.child:
        _child(args.child, models, args.steps, args.warmup)
        return
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        print("warning: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set; numpy's BLAS runs slower")
    rounds = [
        {mode: _run_child(mode, models, args.steps, args.warmup, args.threads) for mode in modes}
        for _ in range(args.rounds)
    ]
    _print_table(rounds, models, modes, args.steps, args.warmup, args.threads)


if __name__ == "__main__":
    main()
