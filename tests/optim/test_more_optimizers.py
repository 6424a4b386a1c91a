"""Adadelta, Adamax, NAdam, RAdam, ASGD, Rprop and LBFGS without torch: a scripted training
step equals the eager one, each optimizer minimizes, maximize climbs, state dicts round-trip,
and bad options raise PyTorch's errors."""

import copy

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn, optim
from ember.errors import EmberRuntimeError, EmberValueError

FIRST_ORDER = [
    ("Adadelta", {"lr": 0.5, "weight_decay": 0.01}),
    ("Adamax", {"lr": 0.01}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.01}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.01, "betas": (0.5, 0.8)}),  # rectified from step 6 on
    ("ASGD", {"lr": 0.05, "t0": 3, "weight_decay": 0.01}),
    ("Rprop", {"lr": 0.01}),
]


def _id(case):
    name, options = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in options.items())


def _model(seed):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _data(seed):
    rng = np.random.default_rng(seed)
    return (ember.tensor(rng.standard_normal((10, 6)).astype(np.float32)),
            ember.tensor(rng.integers(0, 3, size=10)))


def _make_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


@pytest.mark.parametrize("case", FIRST_ORDER, ids=_id)
def test_a_scripted_training_step_equals_the_eager_one(case):
    name, options = case
    eager_model, script_model = _model(0), _model(0)
    make = getattr(optim, name)
    eager_step = _make_step(eager_model, make(eager_model.parameters(), **options))
    script_opt = make(script_model.parameters(), **options)
    scripted = ember.script(_make_step(script_model, script_opt))
    for call in range(9):
        x, y = _data(call)
        want = eager_step(x, y)
        got = scripted(x, y)
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-4)
    for p, q in zip(script_model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert scripted.fallbacks == []
    # step-dependent scalars are tensors in the graph: no retrace per step
    assert len(scripted.specializations) <= 3, scripted.recompiles
    assert sum(sp.calls for sp in scripted.specializations) >= 6


def _quadratic(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((20, 4))
    target = rng.standard_normal(4)
    return ember.tensor(a), ember.tensor(a @ target), target


@pytest.mark.parametrize("case", [("Adadelta", {"lr": 5.0}), ("Adamax", {"lr": 0.1}),
                                  ("NAdam", {"lr": 0.05}), ("RAdam", {"lr": 0.05}),
                                  ("ASGD", {"lr": 0.05}), ("Rprop", {})], ids=_id)
def test_each_optimizer_fits_least_squares(case):
    name, options = case
    a, b, target = _quadratic(1)
    w = ember.zeros(4, dtype=ember.float64, requires_grad=True)
    opt = getattr(optim, name)([w], **options)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = ((a @ w - b) ** 2).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.05 * first, (name, first, loss.item())


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"])
def test_maximize_moves_against_the_gradient_sign(name):
    w = ember.tensor([1.0, -2.0], requires_grad=True)
    opt = getattr(optim, name)([w], maximize=True)
    w.grad = ember.tensor([1.0, 1.0])
    opt.step()
    assert (w.detach().numpy() > np.array([1.0, -2.0])).all()


@pytest.mark.parametrize("case", FIRST_ORDER, ids=_id)
def test_a_loaded_state_dict_continues_exactly(case):
    name, options = case
    a, b, _ = _quadratic(2)
    w = ember.zeros(4, dtype=ember.float64, requires_grad=True)
    opt = getattr(optim, name)([w], **options)

    def run(w, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            ((a @ w - b) ** 2).mean().backward()
            opt.step()

    run(w, opt, 5)
    saved = copy.deepcopy(opt.state_dict())
    w2 = w.detach().clone().requires_grad_()
    opt2 = getattr(optim, name)([w2], **options)
    opt2.load_state_dict(saved)
    run(w, opt, 5)
    run(w2, opt2, 5)
    if name == "NAdam":
        # loading casts the float32 mu_product to the parameter's float64, as torch does, so
        # the continued products round differently in the last bits
        np.testing.assert_allclose(w2.detach().numpy(), w.detach().numpy(), rtol=1e-6)
        assert opt2.state[w2]["mu_product"].dtype == ember.float64
    else:
        np.testing.assert_array_equal(w2.detach().numpy(), w.detach().numpy())


def test_lbfgs_minimizes_a_quadratic_in_a_few_steps_with_either_line_search():
    a, b, target = _quadratic(3)
    for line_search in (None, "strong_wolfe"):
        w = ember.zeros(4, dtype=ember.float64, requires_grad=True)
        opt = optim.LBFGS([w], line_search_fn=line_search, max_iter=50)

        def closure(w=w, opt=opt):
            opt.zero_grad()
            loss = ((a @ w - b) ** 2).mean()
            loss.backward()
            return loss

        for _ in range(3):
            opt.step(closure)
        np.testing.assert_allclose(w.detach().numpy(), target, atol=1e-4)


def test_lbfgs_refuses_what_torch_refuses():
    w = ember.zeros(3, requires_grad=True)
    with pytest.raises(EmberValueError, match="doesn't support per-parameter options"):
        optim.LBFGS([{"params": [w]}, {"params": [ember.zeros(2, requires_grad=True)]}])
    with pytest.raises(EmberRuntimeError, match="only 'strong_wolfe' is supported"):
        optim.LBFGS([w], line_search_fn="backtracking")
    with pytest.raises(EmberRuntimeError, match="requires a closure"):
        optim.LBFGS([w]).step(None)


@pytest.mark.parametrize("make,message", [
    (lambda p: optim.Adadelta(p, rho=1.5), "Invalid rho value: 1.5"),
    (lambda p: optim.Adadelta(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.Adamax(p, betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.NAdam(p, momentum_decay=-0.1), "Invalid momentum_decay value: -0.1"),
    (lambda p: optim.RAdam(p, eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda p: optim.ASGD(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.Rprop(p, etas=(1.2, 0.5)), "Invalid eta values: 1.2, 0.5"),
    (lambda p: optim.LBFGS(p, lr=-0.1), "Invalid learning rate: -0.1"),
])
def test_invalid_hyperparameters_raise_torchs_value_errors(make, message):
    with pytest.raises(EmberValueError, match=message):
        make([ember.zeros(2, requires_grad=True)])


def test_defaults_are_torchs():
    p = [ember.zeros(2, requires_grad=True)]
    assert optim.Adadelta(p).defaults["lr"] == 1.0 and optim.Adadelta(p).defaults["rho"] == 0.9
    assert optim.Adamax(p).defaults["lr"] == 2e-3 and optim.NAdam(p).defaults["lr"] == 2e-3
    assert optim.NAdam(p).defaults["momentum_decay"] == 4e-3
    assert optim.RAdam(p).defaults["lr"] == 1e-3
    asgd = optim.ASGD(p).defaults
    assert (asgd["lr"], asgd["lambd"], asgd["alpha"], asgd["t0"]) == (1e-2, 1e-4, 0.75, 1e6)
    rprop = optim.Rprop(p).defaults
    assert rprop["etas"] == (0.5, 1.2) and rprop["step_sizes"] == (1e-6, 50)
    lbfgs = optim.LBFGS(p).defaults
    assert (lbfgs["max_iter"], lbfgs["max_eval"], lbfgs["history_size"]) == (20, 25, 100)


def test_rprop_grows_steps_while_the_sign_holds_and_skips_a_flip():
    w = ember.tensor([0.0], dtype=ember.float64, requires_grad=True)
    opt = optim.Rprop([w], lr=0.1)
    for grad, want in ((1.0, -0.1), (1.0, -0.22), (-1.0, -0.22), (-1.0, -0.16)):
        w.grad = ember.tensor([grad], dtype=ember.float64)
        opt.step()
        np.testing.assert_allclose(w.detach().numpy(), [want], rtol=1e-12)
