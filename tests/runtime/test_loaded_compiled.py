"""A loaded graph file runs on native kernels: compiled once per set of symbolic sizes, with
results equal to the eager kernels' for every batch size."""

import ember
import numpy as np
import pytest
from ember import nn
from ember.ir.specialize import specialize
from ember.runtime.compiled import CompiledProgram


def _model():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 3),
                         nn.Softmax(dim=-1))


def test_a_file_with_a_symbolic_batch_compiles_once_per_batch_size(tmp_path, monkeypatch):
    model = _model().eval()
    path = tmp_path / "m.ember"
    ember.export(model, (ember.randn(4, 8),), path, dynamic_dims={0: {0: "batch"}})
    loaded = ember.runtime.load(str(path))
    rng = np.random.default_rng(0)
    for batch in (1, 5, 1, 32):
        x = rng.standard_normal((batch, 8)).astype(np.float32)
        with ember.no_grad():
            want = model(ember.tensor(x)).numpy()
        np.testing.assert_allclose(loaded(x), want, rtol=1e-5, atol=1e-6)
    programs = list(loaded._by_sizes.values())
    assert len(programs) == 3  # batch 1, 5, 32: one each, the second batch-1 call reused
    assert all(isinstance(p, CompiledProgram) and p.kernel_count for p in programs)

    monkeypatch.setenv("EMBER_COMPILE", "0")
    eager = ember.runtime.load(str(path))
    x = rng.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_allclose(eager(x), loaded(x), rtol=1e-5, atol=1e-6)
    assert not any(isinstance(p, CompiledProgram) for p in eager._by_sizes.values())


def test_specialize_makes_every_size_concrete_and_reinfers_types():
    model = _model().eval()
    from ember.tracer.export import capture

    captured = capture(model, (ember.randn(4, 8),), dynamic_dims={0: {0: "B"}})
    graph = captured.graph
    concrete = specialize(graph, {"B": 7})
    assert all(isinstance(d, int) for v in concrete.values() for d in v.shape)
    assert concrete.inputs[0].shape == (7, 8) and concrete.outputs[0].shape == (7, 3)


@pytest.mark.cuda
def test_one_file_runs_on_cuda_with_generated_kernels_and_matches_the_cpu(tmp_path):
    model = _model().eval()
    path = tmp_path / "m.ember"
    ember.export(model, (ember.randn(4, 8),), path, dynamic_dims={0: {0: "batch"}})
    cpu = ember.runtime.load(str(path))
    gpu = ember.runtime.load(str(path), device="cuda")
    rng = np.random.default_rng(1)
    for batch in (1, 7, 64):
        x = rng.standard_normal((batch, 8)).astype(np.float32)
        np.testing.assert_allclose(gpu(x), cpu(x), rtol=2e-5, atol=1e-6)
    assert any(p.backend == "cuda" and p.kernel_count for p in gpu._by_sizes.values())
