"""Adadelta, Adamax, NAdam, RAdam, ASGD, Rprop and LBFGS against torch.optim: the same
parameters and gradients give the same parameters and state step by step, across a
state_dict() save and load, in float64 and float32."""

import copy
import zlib

import ember
import numpy as np
import pytest

pytestmark = pytest.mark.oracle
torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,), (2, 3, 2), ()]
STEPS = 20
SAVE_AT = 9

CASES = [
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1}),
    ("Adadelta", {"lr": 0.3, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adamax", {"lr": 0.02, "maximize": True}),
    ("NAdam", {}),
    ("NAdam", {"lr": 0.01, "betas": (0.8, 0.95), "momentum_decay": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.2, "decoupled_weight_decay": True}),
    ("NAdam", {"lr": 0.02, "maximize": True, "eps": 1e-6}),
    ("RAdam", {}),
    ("RAdam", {"lr": 0.01, "betas": (0.5, 0.8), "weight_decay": 0.1}),  # rectified from step 6
    ("RAdam", {"lr": 0.01, "weight_decay": 0.2, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.02, "betas": (0.3, 0.6), "maximize": True}),
    ("ASGD", {}),
    ("ASGD", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 5, "weight_decay": 0.1}),
    ("ASGD", {"lr": 0.02, "t0": 3, "maximize": True}),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)}),
    ("Rprop", {"lr": 0.01, "maximize": True}),
]


def _case_id(case):
    name, options = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in options.items()) or "defaults")


def _make(lib, name, values, options, dtype):
    params = [lib.tensor(v, dtype=dtype, requires_grad=True) for v in values]
    second = {"params": params[2:]}
    if "lr" in options:
        second["lr"] = options["lr"] / 2
    return params, getattr(lib.optim, name)([{"params": params[:2]}, second], **options)


def _grads(rng, step):
    # the same signs often enough that Rprop's step sizes grow as well as shrink
    grads = [rng.standard_normal(shape) + (0.8 if step % 3 else 0.0) for shape in SHAPES]
    if step % 7 == 3:
        grads[1] = None  # a parameter without a gradient this step is skipped
    return grads


def _set_grads(params, grads, tensor, dtype):
    for p, g in zip(params, grads):
        p.grad = None if g is None else tensor(g, dtype=dtype)


def _numpy(x):
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


def _assert_state_matches(ours, theirs, rtol, atol):
    assert ours.keys() == theirs.keys()
    for index in theirs:
        assert list(ours[index]) == list(theirs[index])
        for key, value in theirs[index].items():
            np.testing.assert_allclose(_numpy(ours[index][key]), _numpy(value), rtol=rtol,
                                       atol=atol, err_msg=f"state[{index}][{key!r}]")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
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
            np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-11,
                                       atol=1e-13, err_msg=f"{name} step {step} param {i}")
        if step == SAVE_AT:
            saved = opt.state_dict()
            _assert_state_matches(saved["state"], torch_opt.state_dict()["state"], 1e-11, 1e-13)
            for group, torch_group in zip(saved["param_groups"], torch_opt.param_groups):
                assert set(group) == set(torch_group)
                for key, value in group.items():
                    if key != "params":
                        assert value == torch_group[key], key
            # both continue in a fresh model and optimizer from the saved state (loading casts
            # state to the parameters' dtype, so torch must reload too to stay comparable)
            saved, torch_saved = copy.deepcopy(saved), copy.deepcopy(torch_opt.state_dict())
            values_now = [p.detach().numpy().copy() for p in params]
            params, opt = _make(ember, name, values_now, options, ember.float64)
            opt.load_state_dict(saved)
            torch_values = [p.detach().numpy().copy() for p in torch_params]
            torch_params, torch_opt = _make(torch, name, torch_values, options, torch.float64)
            torch_opt.load_state_dict(torch_saved)
    _assert_state_matches(opt.state_dict()["state"], torch_opt.state_dict()["state"], 1e-11,
                          1e-13)


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"])
def test_optimizer_matches_torch_in_float32(name):
    options = {"lr": 0.01, "t0": 4} if name == "ASGD" else {"lr": 0.01}
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


# -- LBFGS ---------------------------------------------------------------------------------------


def _rosenbrock_problem(lib, dtype, seed):
    """A least-squares fit plus a Rosenbrock term: curved, not quadratic."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((12, 3)), rng.standard_normal(12)
    w = lib.tensor(rng.standard_normal(3) * 0.5, dtype=dtype, requires_grad=True)
    v = lib.tensor(np.array([-1.2, 1.0]), dtype=dtype, requires_grad=True)
    a, b = lib.tensor(a, dtype=dtype), lib.tensor(b, dtype=dtype)

    def loss_fn():
        fit = ((a @ w - b) ** 2).mean()
        rosen = (1 - v[0]) ** 2 + 10 * (v[1] - v[0] ** 2) ** 2
        return fit + rosen

    return [w, v], loss_fn


LBFGS_CASES = [
    {},
    {"lr": 0.5, "max_iter": 5, "history_size": 3},
    {"line_search_fn": "strong_wolfe"},
    {"line_search_fn": "strong_wolfe", "max_iter": 7, "history_size": 4, "lr": 0.8},
    {"tolerance_grad": 1e-3, "tolerance_change": 1e-4, "max_eval": 9},
]


def _run_lbfgs(lib, dtype, options, steps):
    params, loss_fn = _rosenbrock_problem(lib, getattr(lib, dtype), seed=3)
    opt = lib.optim.LBFGS(params, **options)
    evals = []

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        evals.append(loss.item())
        return loss

    losses = [opt.step(closure).item() for _ in range(steps)]
    return params, losses, evals, opt, loss_fn


@pytest.mark.parametrize("options", LBFGS_CASES, ids=str)
def test_lbfgs_matches_torch_evaluation_by_evaluation(options):
    t_params, t_losses, t_evals, t_opt, _ = _run_lbfgs(torch, "float64", options, 4)
    e_params, e_losses, e_evals, e_opt, _ = _run_lbfgs(ember, "float64", options, 4)
    assert len(e_evals) == len(t_evals)  # the same closure calls: the same branches taken
    np.testing.assert_allclose(e_evals, t_evals, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(e_losses, t_losses, rtol=1e-9, atol=1e-11)
    for p, tp in zip(e_params, t_params):
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-9,
                                   atol=1e-11)
    e_state = e_opt.state_dict()["state"][0]
    t_state = t_opt.state_dict()["state"][0]
    assert e_state["func_evals"] == t_state["func_evals"]
    assert e_state["n_iter"] == t_state["n_iter"]
    assert len(e_state["old_dirs"]) == len(t_state["old_dirs"])
    np.testing.assert_allclose(_numpy(e_state["d"]), _numpy(t_state["d"]), rtol=1e-8,
                               atol=1e-10)


@pytest.mark.parametrize("options", LBFGS_CASES, ids=str)
def test_lbfgs_in_float32_reaches_torchs_point(options):
    # float32 rounding (torch's and numpy's sums differ in the last bit) can send the line
    # search down another branch, so float32 compares where the runs end, not each evaluation
    t_params, _, _, _, t_loss = _run_lbfgs(torch, "float32", options, 6)
    e_params, _, _, _, e_loss = _run_lbfgs(ember, "float32", options, 6)
    for p, tp in zip(e_params, t_params):
        assert p.dtype == ember.float32
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=2e-2,
                                   atol=2e-2)
    np.testing.assert_allclose(e_loss().item(), t_loss().item(), rtol=2e-2, atol=1e-3)
