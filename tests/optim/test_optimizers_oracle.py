"""ember.optim against torch.optim: the same parameters and gradients give the same updates,
learning rates and state, step by step, across a state_dict() save and load."""

import copy
import math
import warnings
import zlib

import ember
import numpy as np
import pytest
from ember import optim
from ember.optim import lr_scheduler

pytestmark = pytest.mark.oracle
torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,), (2, 3, 2), ()]
STEPS = 20
SAVE_AT = 9

OPTIMIZER_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.02, "momentum": 0.5, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.02, "amsgrad": True, "maximize": True}),
    ("Adam", {"lr": 0.03, "betas": (0.3, 0.6), "amsgrad": True, "weight_decay": 0.05}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.2, "decoupled_weight_decay": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "betas": (0.5, 0.9), "maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.005, "centered": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "centered": True, "momentum": 0.5, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.05, "initial_accumulator_value": 0.5, "eps": 1e-6, "maximize": True}),
]


def _case_id(case):
    name, options = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in options.items()) or "defaults")


def _groups(params, second_lr):
    """Two param groups; the second overrides lr (when the case sets one)."""
    second = {"params": params[2:]}
    if second_lr is not None:
        second["lr"] = second_lr
    return [{"params": params[:2]}, second]


def _make(lib, name, values, options, dtype):
    tensor = torch.tensor if lib is torch else ember.tensor
    params = [tensor(v, dtype=dtype, requires_grad=True) for v in values]
    second_lr = options["lr"] / 2 if "lr" in options else None
    optimizer = getattr(lib.optim, name)(_groups(params, second_lr), **options)
    return params, optimizer


def _grads(rng, step):
    grads = [rng.standard_normal(shape) for shape in SHAPES]
    if step % 7 == 3:
        grads[1] = None  # a parameter without a gradient this step is skipped
    return grads


def _set_grads(params, grads, tensor, dtype):
    for p, g in zip(params, grads):
        p.grad = None if g is None else tensor(g, dtype=dtype)


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    if isinstance(x, ember.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def _assert_state_matches(ember_state, torch_state, rtol, atol):
    assert ember_state.keys() == torch_state.keys()
    for index in torch_state:
        assert list(ember_state[index]) == list(torch_state[index])
        for key, value in torch_state[index].items():
            np.testing.assert_allclose(
                _to_numpy(ember_state[index][key]),
                _to_numpy(value),
                rtol=rtol,
                atol=atol,
                err_msg=f"state[{index}][{key!r}]",
            )


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=_case_id)
def test_optimizer_matches_torch_step_by_step_across_a_state_dict_reload(case):
    name, options = case
    rng = np.random.default_rng(zlib.crc32(_case_id(case).encode()))
    values = [rng.standard_normal(shape) for shape in SHAPES]
    torch_params, torch_opt = _make(torch, name, values, options, torch.float64)
    params, opt = _make(ember, name, values, options, ember.float64)

    for step in range(STEPS):
        grads = _grads(rng, step)
        _set_grads(torch_params, grads, torch.tensor, torch.float64)
        _set_grads(params, grads, ember.tensor, ember.float64)
        torch_opt.step()
        opt.step()
        for i, (p, tp) in enumerate(zip(params, torch_params)):
            np.testing.assert_allclose(
                p.detach().numpy(),
                tp.detach().numpy(),
                rtol=1e-11,
                atol=1e-13,
                err_msg=f"{name} step {step} param {i}",
            )

        if step == SAVE_AT:
            saved = opt.state_dict()
            _assert_state_matches(saved["state"], torch_opt.state_dict()["state"], 1e-11, 1e-13)
            for group, torch_group in zip(saved["param_groups"], torch_opt.param_groups):
                for key, value in group.items():
                    if key != "params":
                        assert value == torch_group[key], key
            saved = copy.deepcopy(saved)
            # a fresh model and optimizer continue from the saved state
            values_now = [p.detach().numpy().copy() for p in params]
            params, opt = _make(ember, name, values_now, options, ember.float64)
            opt.load_state_dict(saved)

    _assert_state_matches(opt.state_dict()["state"], torch_opt.state_dict()["state"], 1e-11, 1e-13)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_optimizer_matches_torch_in_float32(name):
    options = {"lr": 0.01, "momentum": 0.9} if name in ("SGD", "RMSprop") else {"lr": 0.01}
    rng = np.random.default_rng(7)
    values = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    torch_params, torch_opt = _make(torch, name, values, options, torch.float32)
    params, opt = _make(ember, name, values, options, ember.float32)
    for step in range(STEPS):
        grads = [None if g is None else g.astype(np.float32) for g in _grads(rng, step)]
        _set_grads(torch_params, grads, torch.tensor, torch.float32)
        _set_grads(params, grads, ember.tensor, ember.float32)
        torch_opt.step()
        opt.step()
    for p, tp in zip(params, torch_params):
        assert p.dtype == ember.float32
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_adam_steps_a_model_trained_with_autograd_like_torch():
    rng = np.random.default_rng(3)
    a, b, w0 = rng.standard_normal((16, 4)), rng.standard_normal((16,)), rng.standard_normal(4)
    w = ember.tensor(w0, requires_grad=True)
    tw = torch.tensor(w0, requires_grad=True)
    opt, topt = optim.Adam([w], lr=0.05), torch.optim.Adam([tw], lr=0.05)
    ea, eb, ta, tb = ember.tensor(a), ember.tensor(b), torch.tensor(a), torch.tensor(b)
    for _ in range(STEPS):
        opt.zero_grad()
        topt.zero_grad()
        ((ea @ w - eb) ** 2).mean().backward()
        ((ta @ tw - tb) ** 2).mean().backward()
        opt.step()
        topt.step()
    np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), rtol=1e-11, atol=1e-13)


# -- schedulers --------------------------------------------------------------------------------


class _Decay:
    """A callable object: LambdaLR saves its __dict__ in the state dict."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate**epoch


def _plateau_metrics(count, seed=0):
    rng = np.random.default_rng(seed)
    metrics, value = [], 1.0
    for i in range(count):
        value *= 0.9 if i < 8 or 20 <= i < 24 else 1.0
        metrics.append(value * (1 + 1e-5 * rng.standard_normal()))
    return metrics


# (name, optimizer name, optimizer options, scheduler factory(lr_scheduler module, optimizer))
SCHEDULER_CASES = [
    ("StepLR", "SGD", {}, lambda m, o: m.StepLR(o, step_size=7, gamma=0.5)),
    ("MultiStepLR", "SGD", {}, lambda m, o: m.MultiStepLR(o, [5, 12, 12, 25], gamma=0.3)),
    ("ExponentialLR", "SGD", {}, lambda m, o: m.ExponentialLR(o, gamma=0.9)),
    ("CosineAnnealingLR", "SGD", {}, lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=1e-3)),
    ("CosineAnnealingLR-T7", "Adam", {}, lambda m, o: m.CosineAnnealingLR(o, T_max=7)),
    ("LambdaLR", "SGD", {}, lambda m, o: m.LambdaLR(o, lambda e: 1 / (1 + 0.3 * e))),
    (
        "LambdaLR-per-group",
        "SGD",
        {},
        lambda m, o: m.LambdaLR(o, [_Decay(0.9), lambda e: 0.5 if e % 3 else 1.0]),
    ),
    ("LinearLR", "SGD", {}, lambda m, o: m.LinearLR(o)),
    (
        "LinearLR-options",
        "SGD",
        {},
        lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=12),
    ),
    ("OneCycleLR", "SGD", {"momentum": 0.9}, lambda m, o: m.OneCycleLR(o, 0.5, total_steps=40)),
    (
        "OneCycleLR-linear-three-phase",
        "SGD",
        {"momentum": 0.9},
        lambda m, o: m.OneCycleLR(
            o,
            [0.5, 0.2],
            total_steps=45,
            pct_start=0.25,
            anneal_strategy="linear",
            three_phase=True,
            div_factor=10.0,
            final_div_factor=100.0,
        ),
    ),
    (
        "OneCycleLR-adam-betas",
        "Adam",
        {},
        lambda m, o: m.OneCycleLR(
            o,
            0.01,
            epochs=4,
            steps_per_epoch=10,
            base_momentum=0.8,
            max_momentum=0.9,
        ),
    ),
    (
        "OneCycleLR-no-momentum",
        "Adagrad",
        {},
        lambda m, o: m.OneCycleLR(o, 0.3, total_steps=41, cycle_momentum=False),
    ),
    ("ReduceLROnPlateau", "SGD", {}, lambda m, o: m.ReduceLROnPlateau(o, patience=3)),
    (
        "ReduceLROnPlateau-options",
        "SGD",
        {},
        lambda m, o: m.ReduceLROnPlateau(
            o,
            factor=0.5,
            patience=2,
            threshold=1e-3,
            threshold_mode="abs",
            cooldown=2,
            min_lr=[0.02, 1e-3],
        ),
    ),
    (
        "ReduceLROnPlateau-max",
        "Adam",
        {},
        lambda m, o: m.ReduceLROnPlateau(o, mode="max", factor=0.7, patience=1, eps=1e-4),
    ),
]
SCHEDULER_STEPS = 40


def _scheduler_setup(lib, opt_name, opt_options, factory, values):
    tensor = torch.tensor if lib is torch else ember.tensor
    params = [tensor(v, requires_grad=True) for v in values]
    groups = [{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.02}]
    optimizer = getattr(lib.optim, opt_name)(groups, **opt_options)
    module = torch.optim.lr_scheduler if lib is torch else lr_scheduler
    return params, optimizer, factory(module, optimizer)


def _momenta(optimizer):
    return [g.get("momentum", g.get("betas", 0.0)) for g in optimizer.param_groups]


@pytest.mark.parametrize("case", SCHEDULER_CASES, ids=[c[0] for c in SCHEDULER_CASES])
def test_scheduler_matches_torch_across_a_state_dict_reload(case):
    name, opt_name, opt_options, factory = case
    values = [np.ones(3), np.ones(2)]
    plateau = name.startswith("ReduceLROnPlateau")
    metrics = _plateau_metrics(SCHEDULER_STEPS)
    if name.endswith("max"):
        metrics = [2 - m for m in metrics]
    t_params, t_opt, t_sched = _scheduler_setup(torch, opt_name, opt_options, factory, values)
    params, opt, sched = _scheduler_setup(ember, opt_name, opt_options, factory, values)
    assert sched.get_last_lr() == pytest.approx(t_sched.get_last_lr(), rel=1e-13)
    seen = set()

    for step in range(SCHEDULER_STEPS):
        for p, tp in zip(params, t_params):
            p.grad = ember.ones_like(p)
            tp.grad = torch.ones_like(tp)
        opt.step()
        t_opt.step()
        if plateau:
            sched.step(metrics[step])
            t_sched.step(metrics[step])
        else:
            sched.step()
            t_sched.step()
        expected = t_sched.get_last_lr()
        assert sched.get_last_lr() == pytest.approx(expected, rel=1e-13, abs=1e-16), step
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(expected, rel=1e-13, abs=0)
        seen.add(opt.param_groups[0]["lr"])
        for ours, theirs in zip(_momenta(opt), _momenta(t_opt)):
            assert ours == pytest.approx(theirs, rel=1e-13)
        for p, tp in zip(params, t_params):
            np.testing.assert_allclose(
                p.detach().numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-12
            )

        if step == SCHEDULER_STEPS // 2:
            opt_state = copy.deepcopy(opt.state_dict())
            sched_state = copy.deepcopy(sched.state_dict())
            params, opt, sched = _scheduler_setup(ember, opt_name, opt_options, factory, values)
            for p, saved in zip(params, [p.detach().numpy().copy() for p in t_params]):
                with ember.no_grad():
                    p.copy_(ember.tensor(saved))
            opt.load_state_dict(opt_state)
            sched.load_state_dict(sched_state)
            assert sched.get_last_lr() == pytest.approx(t_sched.get_last_lr(), rel=1e-13)

    assert len(seen) >= 3  # the schedule really moved the lr
    if not plateau:
        assert sched.last_epoch == t_sched.last_epoch == SCHEDULER_STEPS


def test_chained_schedulers_compose_like_torch():
    """The recursive forms work from the current lr, so two schedulers on one optimizer
    multiply their effects (warm-up then cosine decay, as people chain them)."""
    runs = []
    for lib, module in ((torch, torch.optim.lr_scheduler), (ember, lr_scheduler)):
        param = (torch.zeros if lib is torch else ember.zeros)(2, requires_grad=True)
        opt = lib.optim.SGD([param], lr=0.1)
        warmup = module.LinearLR(opt, start_factor=0.1, total_iters=5)
        cosine = module.CosineAnnealingLR(opt, T_max=15, eta_min=0.01)
        lrs = []
        for _ in range(35):
            opt.step()
            warmup.step()
            cosine.step()
            lrs.append(opt.param_groups[0]["lr"])
        runs.append(lrs)
    assert runs[1] == pytest.approx(runs[0], rel=1e-13)


@pytest.mark.parametrize(
    "factory",
    [
        lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
        lambda m, o: m.MultiStepLR(o, [3, 3, 9], gamma=0.5),
        lambda m, o: m.ExponentialLR(o, gamma=0.8),
        lambda m, o: m.CosineAnnealingLR(o, T_max=6, eta_min=0.01),
        lambda m, o: m.LinearLR(o, start_factor=0.5, total_iters=8),
    ],
    ids=["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR"],
)
def test_step_with_an_epoch_uses_the_closed_form_like_torch(factory):
    epochs = [1, 2, 5, 3, 11, 0, 7, 30]
    runs = []
    for lib, module in ((torch, torch.optim.lr_scheduler), (ember, lr_scheduler)):
        param = (torch.zeros if lib is torch else ember.zeros)(2, requires_grad=True)
        opt = lib.optim.SGD([param], lr=0.1)
        sched = factory(module, opt)
        lrs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for epoch in epochs:
                opt.step()
                sched.step(epoch)
                lrs.append(sched.get_last_lr()[0])
        runs.append(lrs)
    assert runs[1] == pytest.approx(runs[0], rel=1e-13)
    assert not all(math.isclose(lr, runs[1][0]) for lr in runs[1])


@pytest.mark.parametrize(
    "factory",
    [
        lambda m, o: m.StepLR(o, step_size=4, gamma=0.5, last_epoch=5),
        lambda m, o: m.ExponentialLR(o, gamma=0.8, last_epoch=5),
        lambda m, o: m.CosineAnnealingLR(o, T_max=6, eta_min=0.01, last_epoch=5),
        lambda m, o: m.LinearLR(o, start_factor=0.5, total_iters=8, last_epoch=5),
    ],
    ids=["StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR"],
)
def test_a_scheduler_resumed_with_last_epoch_matches_torch(factory):
    runs = []
    for lib, module in ((torch, torch.optim.lr_scheduler), (ember, lr_scheduler)):
        param = (torch.zeros if lib is torch else ember.zeros)(2, requires_grad=True)
        opt = lib.optim.SGD([{"params": [param], "lr": 0.05, "initial_lr": 0.1}])
        sched = factory(module, opt)
        lrs = [opt.param_groups[0]["lr"]]
        for _ in range(20):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        runs.append(lrs)
    assert runs[1] == pytest.approx(runs[0], rel=1e-13)
