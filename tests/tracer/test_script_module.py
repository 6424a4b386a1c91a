"""ember.script(nn.Module): a ScriptModule runs captured graphs but stays the module: it reads
its parameters live, passes state_dict/parameters/train/eval through, trains like the eager
module, and writes BatchNorm statistics back as eager does."""

import copy

import ember
import numpy as np
from ember import nn, optim
from ember.tracer import ScriptModule


def mlp(seed: int = 0) -> nn.Module:
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def batch(seed: int, n: int = 6):
    rng = np.random.default_rng(seed)
    x = ember.tensor(rng.standard_normal((n, 4)).astype(np.float32))
    y = ember.tensor(rng.standard_normal((n, 3)).astype(np.float32))
    return x, y


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for name, value in pa.items():
        # the scripted model's gradients come from compiled kernels: equal to rounding
        np.testing.assert_allclose(value.detach().numpy(), pb[name].detach().numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_script_of_a_module_is_a_script_module_that_matches_eager():
    model = mlp()
    scripted = ember.script(model)
    assert isinstance(scripted, ScriptModule)
    for seed in range(3):
        x, _ = batch(seed)
        # compiled kernels (an inline tanh) may differ from numpy's in the last bit
        np.testing.assert_allclose(scripted(x).detach().numpy(), model(x).detach().numpy(),
                                   rtol=1e-6, atol=1e-7)
    assert len(scripted.specializations) == 1
    assert scripted.specializations[0].calls == 2
    assert scripted.graph is not None


def test_parameters_are_read_live_after_an_optimizer_step():
    model = mlp()
    scripted = ember.script(model)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = batch(0)
    before = scripted(x).detach().numpy().copy()
    scripted(x)  # now the graph runs
    ((scripted(x) - y) ** 2).mean().backward()
    opt.step()
    after = scripted(x)
    np.testing.assert_allclose(after.detach().numpy(), model(x).detach().numpy(), rtol=1e-6,
                               atol=1e-7)
    assert not np.array_equal(after.detach().numpy(), before)
    with ember.no_grad():
        model[0].weight.mul_(0.5)  # an in-place edit outside any optimizer
        np.testing.assert_allclose(scripted(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-7)
    assert len(scripted.specializations) == 2  # with and without grad mode, nothing else


def test_state_dict_parameters_and_modes_pass_through():
    model = mlp()
    scripted = ember.script(model)
    assert list(scripted.parameters()) == list(model.parameters())
    assert [n for n, _ in scripted.named_parameters()] == [n for n, _ in model.named_parameters()]
    state = scripted.state_dict()
    assert state.keys() == model.state_dict().keys()
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy(), model.state_dict()[key].numpy())
    assert scripted.training
    scripted.eval()
    assert not model.training and not model[0].training
    scripted.train()
    assert model.training and model[0].training

    other = mlp(seed=1)
    x, _ = batch(0)
    scripted(x)
    scripted.load_state_dict(other.state_dict())
    np.testing.assert_allclose(scripted(x).detach().numpy(), other(x).detach().numpy(),
                               rtol=1e-6, atol=1e-7)
    assert scripted[0] is model[0]


def test_scripted_module_trains_like_the_eager_module():
    eager = mlp()
    model = copy.deepcopy(eager)
    scripted = ember.script(model)
    opt_eager = optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    opt_scripted = optim.SGD(scripted.parameters(), lr=0.05, momentum=0.9)
    for step in range(10):
        x, y = batch(step)
        for net, opt in ((eager, opt_eager), (scripted, opt_scripted)):
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
        assert_same_parameters(model, eager)
    assert len(scripted.specializations) == 1
    assert scripted.specializations[0].calls == 9


def test_replacing_a_parameter_retraces(monkeypatch, capsys):
    monkeypatch.setenv("EMBER_LOG", "recompiles")
    model = nn.Linear(3, 2)
    scripted = ember.script(model)
    x = ember.ones(4, 3)
    scripted(x)
    scripted(x)
    old = model.weight
    model.weight = nn.Parameter(ember.full((2, 3), 0.5))
    out = scripted(x)
    assert "self.weight: replaced by another tensor" in capsys.readouterr().err
    np.testing.assert_allclose(out.detach().numpy(), model(x).detach().numpy())
    assert len(scripted.specializations) == 2
    with ember.no_grad():
        old.mul_(0)  # the old parameter no longer matters
    np.testing.assert_allclose(scripted(x).detach().numpy(), model(x).detach().numpy())


def test_batchnorm_running_stats_are_written_back_like_eager():
    ember.manual_seed(0)
    eager = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5))
    model = copy.deepcopy(eager)
    scripted = ember.script(model)
    for seed in range(3):
        x, _ = batch(seed, n=8)
        np.testing.assert_allclose(
            scripted(x).detach().numpy(), eager(x).detach().numpy(), rtol=1e-5, atol=1e-6
        )
    assert scripted.specializations[0].calls == 2
    bn, bn_eager = model[1], eager[1]
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(
            getattr(bn, name).numpy(), getattr(bn_eager, name).numpy(), rtol=1e-6, atol=1e-7
        )
    assert bn.num_batches_tracked.item() == bn_eager.num_batches_tracked.item() == 3
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
    # under no_grad (Program path, not replay) as well
    with ember.no_grad():
        for seed in range(3, 6):
            x, _ = batch(seed, n=8)
            scripted(x)
            eager(x)
    np.testing.assert_allclose(bn.running_mean.numpy(), bn_eager.running_mean.numpy(), rtol=1e-6)
    assert bn.num_batches_tracked.item() == 6
    # eval mode reads the running stats instead of updating them
    scripted.eval()
    eager.eval()
    x, _ = batch(9, n=8)
    np.testing.assert_allclose(
        scripted(x).detach().numpy(), eager(x).detach().numpy(), rtol=1e-5, atol=1e-6
    )
    assert bn.num_batches_tracked.item() == 6


def test_module_methods_that_return_the_module_return_the_scripted_one():
    model = mlp()
    scripted = ember.script(model).eval()
    assert isinstance(scripted, ScriptModule)
    assert scripted.train() is scripted and scripted.requires_grad_(True) is scripted
    assert scripted.training and model.training
    assert scripted[0] is model[0] and len(scripted) == len(model) == 5
    assert [type(m) for m in scripted] == [type(m) for m in model]
    x, _ = batch(0)
    scripted(x)
    scripted(x)
    assert scripted.specializations[0].calls == 1
