"""A whole training step under ember.script: forward, backward (.grad as captured state) and
the optimizer's in-place update run as one graph, and leave what eager leaves."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn


def _model(seed):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))


def _data(seed):
    rng = np.random.default_rng(seed)
    x = ember.tensor(rng.standard_normal((8, 12)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 5, size=8))
    return x, y


def _make_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


@pytest.mark.parametrize(
    "options",
    [{"lr": 0.1}, {"lr": 0.05, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                                  "weight_decay": 1e-3}],
    ids=["plain", "momentum", "nesterov_wd"],
)
def test_scripted_sgd_step_leaves_the_parameters_and_grads_eager_leaves(options):
    eager_model, script_model = _model(0), _model(0)
    eager_step = _make_step(eager_model, ember.optim.SGD(eager_model.parameters(), **options))
    scripted = ember.script(_make_step(script_model, ember.optim.SGD(script_model.parameters(),
                                                                     **options)))
    for call in range(6):
        x, y = _data(call)
        want = eager_step(x, y)
        got = scripted(x, y)
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-5)
        for p, q in zip(script_model.parameters(), eager_model.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4,
                                       atol=1e-6)
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert scripted.fallbacks == []
    assert scripted.graph is not None
    # later calls ran the captured graph, not the eager function
    assert sum(sp.calls for sp in scripted.specializations) >= 3
    assert "whole training step" in scripted.explain()


def test_a_changed_learning_rate_retraces_and_is_used():
    eager_model, script_model = _model(1), _model(1)
    eager_opt = ember.optim.SGD(eager_model.parameters(), lr=0.1)
    script_opt = ember.optim.SGD(script_model.parameters(), lr=0.1)
    eager_step = _make_step(eager_model, eager_opt)
    scripted = ember.script(_make_step(script_model, script_opt))
    for call in range(6):
        if call == 3:
            eager_opt.param_groups[0]["lr"] = 0.01
            script_opt.param_groups[0]["lr"] = 0.01
        x, y = _data(call)
        eager_step(x, y)
        scripted(x, y)
    for p, q in zip(script_model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert any("optimizer" in r or "opt" in r for r in scripted.recompiles), scripted.recompiles


def test_grad_read_after_backward_inside_the_function_is_captured():
    def fn(x):
        w = x.detach().requires_grad_(True)
        (w * w).sum().backward()
        return x + w.grad

    scripted = ember.script(fn)
    for call in range(3):
        x = ember.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3) + call)
        np.testing.assert_allclose(scripted(x).numpy(), fn(x).numpy(), rtol=1e-6)
    assert scripted.fallbacks == [] and scripted.graph is not None


def test_a_grad_that_appears_between_calls_retraces_with_the_reason():
    w = ember.tensor(np.ones(3, dtype=np.float32), requires_grad=True)

    def accumulate(x):
        (w * x).sum().backward()
        return w.grad * 1.0

    scripted = ember.script(accumulate)
    x = ember.tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    first = scripted(x)  # w.grad was None: the graph starts from no gradient
    second = scripted(x)  # now w.grad holds the first call's: accumulates onto it
    np.testing.assert_allclose(first.numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(second.numpy(), [2.0, 4.0, 6.0])
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 4.0, 6.0])
    assert any(".grad" in r for r in scripted.recompiles), scripted.recompiles


def test_the_recompile_message_names_the_changed_option():
    model = _model(2)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    scripted = ember.script(_make_step(model, opt))
    x, y = _data(0)
    scripted(x, y)
    scripted(x, y)
    opt.param_groups[0]["lr"] = 0.02
    scripted(x, y)
    assert any("param_groups[0]['lr']: 0.1 -> 0.02" in r for r in scripted.recompiles), (
        scripted.recompiles
    )


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_scripted_adam_step_matches_eager_without_recompiling_per_step(name):
    eager_model, script_model = _model(3), _model(3)
    make = getattr(ember.optim, name)
    eager_step = _make_step(eager_model, make(eager_model.parameters(), lr=0.01))
    scripted = ember.script(_make_step(script_model, make(script_model.parameters(), lr=0.01)))
    for call in range(8):
        x, y = _data(call)
        eager_step(x, y)
        scripted(x, y)
    for p, q in zip(script_model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-5)
    # the step counter is a tensor input, not a value read into Python: no retrace per step
    assert len(scripted.specializations) <= 3, scripted.recompiles
    assert scripted.fallbacks == []


def test_the_scripted_step_updates_each_parameter_in_its_own_memory():
    """A parameter keeps its array (views and optimizer state see the update), and the compiled
    update writes into it directly instead of copying a new array back."""
    model = _model(4)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    scripted = ember.script(_make_step(model, opt))
    arrays = [p._data for p in model.parameters()]
    view = model[0].weight[0]  # a view taken before the steps
    for call in range(4):
        x, y = _data(call)
        scripted(x, y)
    assert all(p._data is a for p, a in zip(model.parameters(), arrays))
    np.testing.assert_array_equal(view.detach().numpy(), model[0].weight[0].detach().numpy())
    program = scripted.specializations[-1].program
    assert sum(1 for spec in program.specs if spec.aliased) >= 2, program.describe()


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_a_scripted_adam_step_computes_its_bias_corrections_in_fused_kernels(name):
    """The bias corrections 1 - beta**t of every parameter fuse with its update: no eager step
    in the compiled optimizer part (a pow of a tensor exponent ran eagerly, two per
    parameter)."""
    model = _model(5)
    opt = getattr(ember.optim, name)(model.parameters(), lr=0.01)
    scripted = ember.script(_make_step(model, opt))
    for call in range(3):
        scripted(*_data(call))
    program = scripted.specializations[-1].program
    eager_ops = [node.op for kind, _, node in program.steps if kind == "eager"]
    assert "pow" not in eager_ops, program.describe()


def test_a_captured_clip_grad_norm_fuses_without_stacking_the_norms():
    """Under capture the total 2-norm is the root of the summed squares: no unsqueeze per
    gradient and no cat run eagerly, and the clipped step matches eager's."""
    eager_model, script_model = _model(6), _model(6)

    def make(model):
        opt = ember.optim.SGD(model.parameters(), lr=0.1)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y) * 50.0
            loss.backward()
            total = nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            return loss, total

        return step

    eager_step, scripted = make(eager_model), ember.script(make(script_model))
    for call in range(3):
        x, y = _data(call)
        (_, want), (_, got) = eager_step(x, y), scripted(x, y)
        assert float(got) == pytest.approx(float(want), rel=1e-5)
    for p, q in zip(script_model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
    program = scripted.specializations[-1].program
    stacking = [node.op for kind, _, node in program.steps if kind == "eager"
                and (node.op == "cat" or node.op == "unsqueeze" and node.inputs[0].shape == ())]
    assert stacking == [], program.describe()
