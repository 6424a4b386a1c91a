"""State a scripted function reaches through its parameters' defaults (`def step(x, y,
model=model, opt=opt)`, a Trainer-style habit) is guarded as an argument's is: a graph traced
on the optimizer's first step must not run its later steps."""

import ember
import numpy as np
import pytest
from ember import nn


def _losses(make_step, scripted: bool, opt_name: str):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8))
    opt = getattr(ember.optim, opt_name)(model.parameters(), lr=1e-3)
    step = make_step(model, opt)
    if scripted:
        step = ember.script(step)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(5):
        x = ember.tensor(rng.standard_normal((4, 16)), dtype=ember.float32)
        y = ember.tensor(rng.standard_normal((4, 8)), dtype=ember.float32)
        losses.append(step(x, y).item())
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


def _train(x, y, model, opt):
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _positional_defaults(model, opt):
    def step(x, y, model=model, opt=opt):
        return _train(x, y, model, opt)

    return step


def _keyword_only_defaults(model, opt):
    def step(x, y, *, model=model, opt=opt):
        return _train(x, y, model, opt)

    return step


@pytest.mark.parametrize("make_step", [_positional_defaults, _keyword_only_defaults])
@pytest.mark.parametrize("opt_name", ["Adam", "AdamW", "SGD"])
def test_an_optimizer_and_model_reached_through_defaults_match_eager(make_step, opt_name):
    eager, eager_params = _losses(make_step, False, opt_name)
    scripted, scripted_params = _losses(make_step, True, opt_name)
    np.testing.assert_allclose(scripted, eager, rtol=1e-5)
    for a, b in zip(scripted_params, eager_params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_default_tensor_written_in_place_and_a_passed_one():
    total = ember.zeros(3)

    def accumulate(x, into=total):
        into.add_(x)
        return into * 1.0

    scripted = ember.script(accumulate)
    for k in range(1, 4):
        np.testing.assert_allclose(scripted(ember.ones(3)).numpy(), np.full(3, float(k)))
    other = ember.zeros(3)
    np.testing.assert_allclose(scripted(ember.ones(3), other).numpy(), np.ones(3))
    np.testing.assert_allclose(total.numpy(), np.full(3, 3.0))
    np.testing.assert_allclose(scripted(ember.ones(3)).numpy(), np.full(3, 4.0))


def test_a_module_default_switched_to_eval_retraces():
    ember.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))

    def forward(x, net=net):
        return net(x)

    scripted = ember.script(forward)
    x = ember.ones(2, 4)
    scripted(x)
    net.eval()
    np.testing.assert_allclose(scripted(x).detach().numpy(), net(x).detach().numpy())


def test_a_trailing_object_default_is_passed_positionally_and_plain_defaults_not_at_all():
    scale = ember.full((3,), 2.0)

    def next_to_the_arguments(x, scale=scale):
        return x * scale

    def after_plain_defaults(x, dtype=ember.float32, act=np.tanh, scale=scale):
        return x * scale

    first = ember.script(next_to_the_arguments)
    args, kwargs = first._with_defaults((ember.ones(3),), {})
    assert len(args) == 2 and args[1] is scale and not kwargs  # the call keeps its fast path
    later = ember.script(after_plain_defaults)
    assert [name for _, name, _ in later._object_defaults] == ["scale"]
    args, kwargs = later._with_defaults((ember.ones(3),), {})
    assert len(args) == 1 and kwargs == {"scale": scale}
    for scripted in (first, later):
        scale.fill_(2.0)
        for _ in range(3):
            np.testing.assert_allclose(scripted(ember.ones(3)).numpy(), np.full(3, 2.0))
        scale.fill_(3.0)
        np.testing.assert_allclose(scripted(ember.ones(3)).numpy(), np.full(3, 3.0))
