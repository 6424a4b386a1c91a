"""benchmarks/models.py at tiny sizes: its scripted training steps (the whole step, and the
model alone) give ember eager's losses without falling back, and the same model source
trains under torch."""

import os
import subprocess
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def test_scripted_training_steps_of_the_benchmark_models_equal_eager():
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "models.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert all("losses equal eager's over 4 steps, no fallback" in line for line in lines)


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["gpt", "dcgan", "lstm", "cnn"])
def test_the_benchmark_model_source_trains_under_torch(name, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(BENCHMARKS)
    from training_steps import BUILDERS, TINY

    torch.manual_seed(0)
    workload = BUILDERS[name](torch, **TINY[name])
    step = workload.make_step(lambda module: module)
    carry = workload.carry
    for batch in workload.batches[:2]:
        out = step(*batch, *carry)
        if workload.carry:
            out, carry = out
        losses = out if isinstance(out, tuple) else (out,)
        assert all(np.isfinite(loss.item()) for loss in losses)
