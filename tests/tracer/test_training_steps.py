"""Whole training steps as real loops write them capture as one graph (strict=True) and equal
eager: gradient clipping by norm and by value, and updates written through .data."""

from __future__ import annotations

import ember
import ember.nn as nn
import numpy as np
import pytest


def _net(seed=0):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _clip_norm(net, opt):
    def step(x, y):
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(net.parameters(), 0.05)
        opt.step()
        opt.zero_grad()
        return loss, norm
    return step


def _clip_value(net, opt):
    def step(x, y):
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        nn.utils.clip_grad_value_(net.parameters(), 0.01)
        opt.step()
        opt.zero_grad(set_to_none=False)
        return loss
    return step


def _through_data(net, opt):
    def step(x, y):
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        with ember.no_grad():
            for p in net.parameters():
                p.data.add_(p.grad, alpha=-0.05)
                p.grad.data.zero_()
        return loss
    return step


@pytest.mark.parametrize("make", [_clip_norm, _clip_value, _through_data])
def test_a_training_step_with_clipping_or_data_writes_is_one_graph_equal_to_eager(make):
    runs = []
    for scripted in (False, True):
        net = _net()
        opt = ember.optim.AdamW(net.parameters(), lr=0.05)
        step = make(net, opt)
        run = ember.script(step, strict=True) if scripted else step
        rng = np.random.default_rng(0)
        outs = []
        for _ in range(6):
            x = ember.tensor(rng.standard_normal((16, 4)).astype(np.float32))
            y = ember.tensor(rng.standard_normal((16, 1)).astype(np.float32))
            out = run(x, y)
            outs.append([o.item() for o in (out if isinstance(out, tuple) else (out,))])
        runs.append((outs, [p.detach().numpy().copy() for p in net.parameters()]))
        if scripted:
            assert run.specializations[-1].calls >= 3  # cached calls ran the graph
    (eager_out, eager_params), (got_out, got_params) = runs
    np.testing.assert_allclose(got_out, eager_out, rtol=1e-5)
    for a, b in zip(got_params, eager_params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # the steps really trained (the writes reached the parameters)
    assert not np.allclose(eager_params[0], _net()[0].weight.detach().numpy())


def test_random_factories_are_graph_ops_drawing_eagers_numbers():
    """A VAE's reparameterization (randn_like) and the other draws capture as graph ops: each
    cached call draws the stream's next numbers, the same as eager from the same seed."""
    import warnings

    def f(x):
        eps = ember.randn_like(x)
        u = ember.rand(2, 3)
        k = ember.randint(0, 5, (4,))
        r = ember.rand_like(x, dtype=ember.float64)
        return x + eps, u, k, r

    scripted = ember.script(f, strict=True)
    x = ember.randn(3, 2)
    ember.manual_seed(7)
    got = [scripted(x) for _ in range(4)]
    ember.manual_seed(7)
    want = [f(x) for _ in range(4)]
    for g_call, w_call in zip(got, want):
        for g, w in zip(g_call, w_call):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert scripted.specializations[0].calls == 3
    assert {"normal", "uniform", "randint"} <= {n.op for n in scripted.graph.nodes}
    # a generator of its own still falls back, naming the call
    gen = ember.Generator()
    gen.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ember.script(lambda x: x + ember.randn(3, 2, generator=gen))(x)
    assert any("ember.randn with a generator" in str(w.message) for w in caught)


def test_export_refuses_random_numbers_and_keeps_like_factories_symbolic(tmp_path):
    from ember import runtime

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = ember.zeros_like(x) + x
            scale = ember.ones_like(h[:, :1]) * 2
            half = ember.full_like(x, 0.5)
            one = ember.empty_like(x).fill_(1.0)
            return self.fc(h + half + one) * scale

    net = Net().eval()
    path = tmp_path / "net.ember"
    result = ember.export(net, (ember.randn(5, 4),), path, dynamic_dims={0: {0: "batch"}})
    assert result.signature["outputs"][0]["shape"] == ["batch", 3]
    assert "full" in result.ops
    loaded = runtime.load(path)
    for batch in (2, 7):
        x = ember.randn(batch, 4)
        np.testing.assert_allclose(loaded(x.numpy()), net(x).detach().numpy(), rtol=1e-5,
                                   atol=1e-6)

    with pytest.raises(ember.EmberError, match="draws random numbers"):
        ember.export(lambda x: x + ember.randn_like(x), (ember.randn(3, 2),),
                     tmp_path / "noisy.ember")


def test_export_with_a_seed_input_draws_eagers_numbers(tmp_path):
    """seed_input=True exports a drawing graph: each call takes seed=, draws the numbers
    eager draws after manual_seed(seed) (dropout, randn_like, rand; any batch size), and
    leaves the global stream alone; a missing or bad seed is refused by name."""
    from ember import runtime
    from ember.runtime.cli import info
    from ember.runtime.cli import main as cli_main

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.mu, self.logvar, self.drop = nn.Linear(4, 3), nn.Linear(4, 3), nn.Dropout(0.5)

        def forward(self, x):
            mu, logvar = self.mu(x), self.logvar(x)
            z = mu + ember.randn_like(mu) * (0.5 * logvar).exp()
            return self.drop(z), ember.rand(x.shape[0], 2)

    net = VAE()
    path = tmp_path / "vae.ember"
    example = ember.randn(5, 4)
    ember.manual_seed(3)
    untouched = ember.rand(4)
    ember.manual_seed(3)
    result = ember.export(net, (example,), path, training=True, seed_input=True,
                          dynamic_dims={0: {0: "batch"}})
    assert result.max_difference < 1e-5 and result.signature["seed"] is True
    np.testing.assert_array_equal(ember.rand(4).numpy(), untouched.numpy())
    loaded = runtime.load(path)
    for batch, seed in ((5, 7), (2, 11)):
        x = ember.randn(batch, 4)
        ember.manual_seed(seed)
        with ember.no_grad():
            expected = net(x)
        got = loaded(x.numpy(), seed=seed)
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e.numpy(), rtol=1e-5, atol=1e-6)
        assert not np.array_equal(loaded(x.numpy(), seed=seed + 1)[0], got[0])
    for bad in (None, 1.5, True):
        with pytest.raises(ember.EmberError, match=r"draws random numbers: call it with seed="):
            loaded(x.numpy(), seed=bad)
    assert "--seed" in info(str(path))
    np.save(tmp_path / "x.npy", x.numpy())
    assert cli_main(["run", str(path), "--input", f"x={tmp_path / 'x.npy'}", "--seed", "1"]) == 0

    plain = tmp_path / "plain.ember"
    ember.export(nn.Linear(4, 2), (ember.randn(2, 4),), plain)
    with pytest.raises(ember.EmberError, match="takes no seed"):
        runtime.load(plain)(np.ones((2, 4), np.float32), seed=1)


def test_a_whole_steps_results_keep_requires_grad_as_eager():
    """An LSTM step returns its hidden state (its graph spent by backward): cached calls, which
    record no autograd, still return it requiring grad, as eager does, so feeding it back
    (detached or not) keys the same graph."""
    ember.manual_seed(0)
    lstm, head = nn.LSTM(4, 8), nn.Linear(8, 1)
    opt = ember.optim.SGD([*lstm.parameters(), *head.parameters()], lr=0.1)

    def step(x, y, h, c):
        out, (h, c) = lstm(x, (h, c))
        loss = ((head(out) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, h, c

    scripted = ember.script(step, strict=True)
    h = c = ember.zeros(1, 2, 8)
    for _ in range(5):
        loss, h, c = scripted(ember.randn(5, 2, 4), ember.randn(5, 2, 1), h.detach(),
                              c.detach())
        assert h.requires_grad and c.requires_grad and loss.requires_grad
    # one graph from the first step on: zero_grad() does not read the .grad it clears
    assert len(scripted.specializations) == 1
    assert scripted.specializations[-1].calls == 4
