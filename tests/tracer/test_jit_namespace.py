"""ember.jit: torch.jit's names over ember's capture (tracer/jit.py)."""

from __future__ import annotations

import ember
import ember.jit
import ember.nn as nn
import numpy as np
import pytest


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    @ember.jit.ignore
    def no_weight_decay(self):
        return {"fc1.bias"}

    @ember.jit.unused
    def debug(self):
        return "python"

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def _net():
    ember.manual_seed(0)
    return _Net().eval()


def test_trace_save_load_runs_the_model_on_other_batch_sizes(tmp_path):
    model = _net()
    x = ember.randn(5, 4)
    traced = ember.jit.trace(model, x)
    assert isinstance(traced, ember.jit.ScriptModule)
    np.testing.assert_allclose(traced(x).detach().numpy(), model(x).detach().numpy(), rtol=1e-6)
    # the annotated methods are the module's own, still callable
    assert traced.no_weight_decay() == {"fc1.bias"} and traced.debug() == "python"
    path = tmp_path / "model.pt"
    traced.save(path)
    loaded = ember.jit.load(str(path)).eval()
    for batch in (5, 7, 1):
        y = ember.randn(batch, 4)
        out = loaded(y)
        assert isinstance(out, ember.Tensor) and out.shape == (batch, 3)
        np.testing.assert_allclose(out.numpy(), model(y).detach().numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_jit_save_of_a_traced_function_and_its_load(tmp_path):
    a, b = ember.randn(3, 4), ember.randn(3, 4)
    traced = ember.jit.trace(lambda p, q: p * q + 1, (a, b))
    np.testing.assert_allclose(traced(a, b).numpy(), (a * b + 1).numpy())
    ember.jit.save(traced, tmp_path / "f.pt")
    out = ember.jit.load(tmp_path / "f.pt")(b, a)
    np.testing.assert_allclose(out.numpy(), (a * b + 1).numpy(), rtol=1e-6)


def test_traced_module_trains_as_the_module():
    model = _Net()
    x, target = ember.randn(6, 4), ember.randn(6, 3)
    traced = ember.jit.trace(model, x)
    opt = ember.optim.SGD(traced.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = ((traced(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.fc1.weight.grad is not None


def test_script_is_ember_script_and_the_annotations_give_back_their_argument():
    model = _net()
    scripted = ember.jit.script(model)
    assert isinstance(scripted, ember.jit.ScriptModule)
    x = ember.randn(2, 4)
    np.testing.assert_allclose(scripted(x).detach().numpy(), model(x).detach().numpy())
    fn = ember.jit.script(lambda t: t * 2)
    assert fn(ember.ones(2)).tolist() == [2.0, 2.0]

    def f(t):
        return t

    assert ember.jit.ignore(f) is f and ember.jit.ignore(drop=True)(f) is f
    assert ember.jit.unused(f) is f and ember.jit.export(f) is f
    assert ember.jit.annotate(list, [1]) == [1]


def test_is_tracing_is_true_only_while_ember_captures():
    seen = []

    def f(t):
        seen.append(ember.jit.is_tracing())
        return t + 1

    f(ember.ones(2))
    ember.script(f)(ember.ones(2))
    assert seen[0] is False and True in seen[1:]
    assert ember.jit.is_scripting() is False


def test_save_of_a_program_without_example_inputs_is_a_clear_error(tmp_path):
    with pytest.raises(ember.EmberError, match="no example inputs"):
        ember.jit.save(ember.jit.script(_net()), tmp_path / "x.pt")
    with pytest.raises(ember.EmberError, match="example_inputs is required"):
        ember.jit.trace(_net())
    with pytest.raises(ember.EmberError, match="expected a file path"):
        ember.jit.load(object())


def test_a_file_that_is_not_a_graph_file_is_refused(tmp_path):
    path = tmp_path / "torchscript.pt"
    path.write_bytes(b"PK\x03\x04 not a graph file")
    with pytest.raises(ember.EmberError):
        ember.jit.load(path)
