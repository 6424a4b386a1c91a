"""ember.fx against torch.fx: the same models trace to graphs with the same node ops and
target names, in the same order, and the traced modules compute the same numbers."""

import operator

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.fx")

import ember  # noqa: E402
import ember.fx  # noqa: E402
import numpy as np  # noqa: E402


def target_name(target):
    """A target's name with the framework's prefix dropped (torch.relu and ember.relu are
    both "relu")."""
    if isinstance(target, str):
        return target
    if getattr(operator, getattr(target, "__name__", ""), None) is target:
        return f"operator.{target.__name__}"
    return target.__name__


def signature(gm):
    return [(n.op, n.name, target_name(n.target)) for n in gm.graph.nodes]


def build(lib):
    nn, F = lib.nn, lib.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.bn(self.conv(x)) + x.mean())

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.fc = nn.Linear(3, 4)

        def forward(self, x, y):
            h = self.block(x)
            h = lib.flatten(F.adaptive_avg_pool2d(h, 1), 1)
            h = self.fc(h) * y.sigmoid() - lib.tanh(y)
            return lib.cat([h, -h], dim=1)[:, 2:].sum(dim=0)

    return Net()


def copy_weights(src, dst):
    for (name, p), (_, q) in zip(src.state_dict().items(), dst.state_dict().items()):
        q.copy_(torch.from_numpy(np.array(p.numpy())))


def test_same_graph_as_torch_fx_for_a_conv_net():
    ember_gm = ember.fx.symbolic_trace(build(ember))
    torch_gm = torch.fx.symbolic_trace(build(torch))
    assert signature(ember_gm) == signature(torch_gm)


def test_traced_modules_compute_what_torch_computes():
    ember_net, torch_net = build(ember), build(torch)
    ember_net.eval()
    torch_net.eval()
    with torch.no_grad():
        copy_weights(ember_net, torch_net)
    ember_gm = ember.fx.symbolic_trace(ember_net)
    torch_gm = torch.fx.symbolic_trace(torch_net)
    x, y = np.random.randn(2, 2, 5, 5).astype("f4"), np.random.randn(2, 4).astype("f4")
    got = ember_gm(ember.tensor(x), ember.tensor(y)).detach().numpy()
    want = torch_gm(torch.tensor(x), torch.tensor(y)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["operators", "methods", "getitem"])
def test_same_graph_for_functions(name):
    def operators(lib):
        def f(x, y):
            return (x + y) * 2 - y / 3 @ x.t() + (-x) ** 2
        return f

    def methods(lib):
        def f(x):
            return x.float().sum(dim=1, keepdim=True).relu() + lib.max(x)
        return f

    def getitem(lib):
        def f(x):
            a, b = x
            return x[0, 1:] + (a * b)[:2]
        return f

    make = {"operators": operators, "methods": methods, "getitem": getitem}[name]
    ember_gm = ember.fx.symbolic_trace(make(ember))
    torch_gm = torch.fx.symbolic_trace(make(torch))
    assert signature(ember_gm) == signature(torch_gm)
    inputs = len(ember_gm.graph.find_nodes(op="placeholder"))
    args = [np.random.randn(3, 3).astype("f4") for _ in range(inputs)]
    got = ember_gm(*map(ember.tensor, args)).numpy()
    want = torch_gm(*map(torch.tensor, args)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_replace_pattern_rewrites_like_torch_fx():
    def model(lib):
        def f(x, w1, w2):
            m1 = lib.cat([lib.neg(w1), w2]).sum()
            m2 = lib.cat([lib.neg(w1), w2]).sum()
            return x + lib.max(m1) + lib.max(m2)
        return f

    def pattern(lib):
        return lambda a1, a2: lib.cat([lib.neg(a1), a2]).sum()

    def replacement(lib):
        return lambda w1, w2: lib.stack([w1, w2])

    results = []
    for lib, fx in ((ember, ember.fx), (torch, torch.fx)):
        gm = fx.symbolic_trace(model(lib))
        matches = fx.replace_pattern(gm, pattern(lib), replacement(lib))
        results.append((len(matches), signature(gm)))
    assert results[0] == results[1]
