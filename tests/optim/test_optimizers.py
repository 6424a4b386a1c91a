"""ember.optim on its own: param groups, zero_grad, state dicts, hooks, closures, and each
optimizer solving a small least-squares problem."""

import copy
import warnings

import ember
import numpy as np
import pytest
from ember import optim
from ember.errors import EmberError, EmberTypeError, EmberValueError
from ember.optim.optimizer import required

ALL_OPTIMIZERS = [
    (optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (optim.Adam, {"lr": 0.1}),
    (optim.AdamW, {"lr": 0.1}),
    (optim.RMSprop, {"lr": 0.01, "momentum": 0.5}),
    (optim.Adagrad, {"lr": 0.1}),
]
IDS = [cls.__name__ for cls, _ in ALL_OPTIMIZERS]


def _param(*shape, seed=0):
    rng = np.random.default_rng(seed)
    return ember.tensor(rng.standard_normal(shape), requires_grad=True)


# -- param groups ------------------------------------------------------------------------------


def test_a_list_of_tensors_becomes_one_group_with_the_defaults():
    a, b = _param(3), _param(2, 2)
    opt = optim.SGD((p for p in (a, b)), lr=0.5, momentum=0.9)
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["params"][0] is a and group["params"][1] is b
    assert group["lr"] == 0.5 and group["momentum"] == 0.9 and group["nesterov"] is False
    assert opt.defaults["lr"] == 0.5


def test_param_groups_override_the_defaults_per_group():
    a, b = _param(3), _param(2)
    opt = optim.Adam([{"params": [a]}, {"params": b, "lr": 0.5, "betas": (0.5, 0.6)}], lr=0.1)
    first, second = opt.param_groups
    assert first["lr"] == 0.1 and first["betas"] == (0.9, 0.999)
    assert second["lr"] == 0.5 and second["betas"] == (0.5, 0.6)
    assert second["params"] == [b] or second["params"][0] is b


def test_add_param_group_appends_a_group_with_defaults_filled_in():
    a, b = _param(3), _param(2)
    opt = optim.SGD([a], lr=0.1)
    opt.add_param_group({"params": [b], "momentum": 0.5})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["momentum"] == 0.5


def test_a_parameter_in_two_groups_is_an_error():
    a, b = _param(3), _param(2)
    opt = optim.SGD([a, b], lr=0.1)
    with pytest.raises(EmberValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [_param(4), b]})
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    assert len(opt.param_groups) == 1


def test_add_param_group_rejects_what_torch_rejects():
    a = _param(3)
    opt = optim.SGD([a], lr=0.1)
    with pytest.raises(EmberTypeError, match="must be a dict"):
        opt.add_param_group([_param(2)])
    with pytest.raises(EmberTypeError, match="ordered collections"):
        opt.add_param_group({"params": {_param(2)}})
    with pytest.raises(EmberTypeError, match="can only optimize Tensors"):
        opt.add_param_group({"params": [np.zeros(3)]})
    leaf = _param(2)
    with pytest.raises(EmberValueError, match="non-leaf"):
        opt.add_param_group({"params": [leaf * 2]})
    assert len(opt.param_groups) == 1


def test_a_required_option_must_be_given_by_every_group():
    class Plain(optim.Optimizer):
        def __init__(self, params, lr=required):
            super().__init__(params, {"lr": lr})

    with pytest.raises(EmberValueError, match="required optimization parameter lr"):
        Plain([_param(2)])
    assert Plain([{"params": [_param(2)], "lr": 0.3}]).param_groups[0]["lr"] == 0.3


def test_params_must_be_a_nonempty_iterable_of_tensors():
    with pytest.raises(EmberTypeError, match="iterable of Tensors"):
        optim.SGD(_param(3), lr=0.1)
    with pytest.raises(EmberValueError, match="empty parameter list"):
        optim.Adam([])


def test_duplicate_parameters_in_a_group_warn():
    a = _param(3)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optim.SGD([a, a], lr=0.1)


def test_named_parameters_record_param_names():
    a, b = _param(3), _param(2)
    opt = optim.SGD([("w", a), ("b", b)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.param_groups[0]["params"][0] is a
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]
    with pytest.raises(EmberValueError, match="with/without names"):
        opt.add_param_group({"params": [_param(4)]})


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: optim.SGD(p, lr=-1.0), "learning rate"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.1), "momentum"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.9)), "beta parameter at index 0"),
        (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), "beta parameter at index 1"),
        (lambda p: optim.Adam(p, eps=-1e-8), "epsilon"),
        (lambda p: optim.RMSprop(p, alpha=-0.5), "alpha"),
        (lambda p: optim.Adagrad(p, lr_decay=-1.0), "lr_decay"),
        (lambda p: optim.Adagrad(p, initial_accumulator_value=-1.0), "initial_accumulator"),
    ],
)
def test_invalid_hyperparameters_are_rejected(make, message):
    with pytest.raises(EmberValueError, match=message):
        make([_param(2)])


# -- gradients and steps -----------------------------------------------------------------------


def test_zero_grad_sets_grads_to_none_by_default():
    a, b = _param(3), _param(2)
    a.grad, b.grad = ember.ones(3, dtype=ember.float64), None
    opt = optim.SGD([a, b], lr=0.1)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_zero_grad_without_set_to_none_zeroes_the_same_tensor():
    a = _param(3)
    grad = ember.ones(3, dtype=ember.float64)
    a.grad = grad
    optim.SGD([a], lr=0.1).zero_grad(set_to_none=False)
    assert a.grad is grad
    assert a.grad.tolist() == [0.0, 0.0, 0.0]


def test_zero_grad_detaches_a_grad_that_has_history():
    a = _param(3)
    with ember.enable_grad():
        a.grad = _param(3, seed=1) * 2
    assert a.grad.grad_fn is not None
    optim.SGD([a], lr=0.1).zero_grad(set_to_none=False)
    assert a.grad.grad_fn is None and not a.grad.requires_grad
    assert a.grad.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("cls, options", ALL_OPTIMIZERS, ids=IDS)
def test_a_step_updates_in_place_without_recording_autograd(cls, options):
    p = _param(4)
    before = p.detach().numpy().copy()
    version = p._version_counter
    p.grad = ember.ones(4, dtype=ember.float64)
    cls([p], **options).step()
    assert p.grad_fn is None and p.is_leaf and p.requires_grad
    assert p._version_counter > version
    assert np.all(p.detach().numpy() < before)  # a positive gradient moves every entry down


@pytest.mark.parametrize("cls, options", ALL_OPTIMIZERS, ids=IDS)
def test_parameters_without_grad_are_left_alone(cls, options):
    a, b = _param(3), _param(2, seed=1)
    before = b.detach().numpy().copy()
    a.grad = ember.ones(3, dtype=ember.float64)
    opt = cls([a, b], **options)
    opt.step()
    np.testing.assert_array_equal(b.detach().numpy(), before)
    if cls is not optim.Adagrad:  # Adagrad, like PyTorch's, makes its state up front
        assert not opt.state.get(b)


def _least_squares(seed=0):
    rng = np.random.default_rng(seed)
    a = ember.tensor(rng.standard_normal((32, 6)))
    b = a @ ember.tensor(rng.standard_normal(6))
    return a, b


LEAST_SQUARES = [
    (optim.SGD, {"lr": 0.1}, 1e-10),
    (optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, 1e-10),
    (optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.5, "weight_decay": 1e-6}, 1e-6),
    (optim.Adam, {"lr": 0.1}, 1e-8),
    (optim.Adam, {"lr": 0.1, "amsgrad": True}, 1e-8),
    (optim.AdamW, {"lr": 0.1, "weight_decay": 1e-6}, 1e-6),
    (optim.RMSprop, {"lr": 0.01}, 1e-3),
    (optim.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}, 1e-8),
    (optim.Adagrad, {"lr": 0.5}, 1e-10),
    (optim.Adagrad, {"lr": 0.5, "lr_decay": 1e-3, "initial_accumulator_value": 0.1}, 1e-6),
]


@pytest.mark.parametrize(
    "cls, options, threshold",
    LEAST_SQUARES,
    ids=[f"{c.__name__}-{'-'.join(o)}" for c, o, _ in LEAST_SQUARES],
)
def test_each_optimizer_solves_least_squares(cls, options, threshold):
    a, b = _least_squares()
    x = ember.zeros(6, dtype=ember.float64, requires_grad=True)
    opt = cls([x], **options)
    initial = ((a @ x - b) ** 2).mean().item()
    for _ in range(300):
        opt.zero_grad()
        loss = ((a @ x - b) ** 2).mean()
        loss.backward()
        opt.step()
    final = ((a @ x - b) ** 2).mean().item()
    assert initial > 1.0
    assert final < threshold


@pytest.mark.parametrize("cls, options", ALL_OPTIMIZERS, ids=IDS)
def test_maximize_moves_the_other_way(cls, options):
    options = {**options, "weight_decay": 0.0}
    down, up = _param(5), _param(5)
    start = down.detach().numpy().copy()
    opt_down, opt_up = cls([down], **options), cls([up], maximize=True, **options)
    rng = np.random.default_rng(1)
    for _ in range(5):
        g = rng.standard_normal(5)
        down.grad, up.grad = ember.tensor(g), ember.tensor(g)
        opt_down.step()
        opt_up.step()
    step_down = down.detach().numpy() - start
    step_up = up.detach().numpy() - start
    assert np.abs(step_down).min() > 0
    np.testing.assert_allclose(step_up, -step_down, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cls, options", ALL_OPTIMIZERS, ids=IDS)
def test_maximize_climbs_a_concave_function(cls, options):
    x = ember.zeros(3, dtype=ember.float64, requires_grad=True)
    target = ember.tensor([1.0, -2.0, 0.5], dtype=ember.float64)
    opt = cls([x], maximize=True, **options)
    value = None
    for _ in range(200):
        opt.zero_grad()
        value = -((x - target) ** 2).sum()
        value.backward()
        opt.step()
    assert value.item() > -0.1  # from -5.25 at the start


@pytest.mark.parametrize("cls, options", ALL_OPTIMIZERS, ids=IDS)
def test_step_calls_the_closure_with_grad_enabled_and_returns_its_loss(cls, options):
    a, b = _least_squares(seed=2)
    x = ember.zeros(6, dtype=ember.float64, requires_grad=True)
    opt = cls([x], **options)
    calls = []

    def closure():
        calls.append(ember.is_grad_enabled())
        opt.zero_grad()
        loss = ((a @ x - b) ** 2).mean()
        loss.backward()
        return loss

    with ember.no_grad():
        first = opt.step(closure)
    assert calls == [True]
    assert first.item() == pytest.approx(((b) ** 2).mean().item())
    losses = [opt.step(closure).item() for _ in range(50)]
    assert losses[-1] < first.item()
    assert opt.step() is None


def test_step_hooks_run_around_step_and_can_be_removed():
    p = _param(2)
    p.grad = ember.ones(2, dtype=ember.float64)
    opt = optim.SGD([p], lr=0.1)
    events = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: events.append(("pre", p.tolist())))
    opt.register_step_post_hook(lambda o, args, kwargs: events.append(("post", p.tolist())))
    start = p.tolist()
    opt.step()
    assert [e[0] for e in events] == ["pre", "post"]
    assert events[0][1] == start and events[1][1] == p.tolist() != start
    pre.remove()
    opt.step()
    assert [e[0] for e in events] == ["pre", "post", "post"]


def test_a_step_pre_hook_can_replace_the_arguments():
    p = _param(2)
    p.grad = ember.ones(2, dtype=ember.float64)
    opt = optim.Adam([p])
    seen = []

    def closure():
        seen.append(True)
        return ember.tensor(1.5)

    opt.register_step_pre_hook(lambda o, args, kwargs: ((closure,), {}))
    assert opt.step().item() == 1.5 and seen == [True]
    opt.register_step_pre_hook(lambda o, args, kwargs: "nonsense")
    with pytest.raises(EmberError, match="pre-hook must return None or a tuple"):
        opt.step()


def test_hooks_run_once_when_a_subclass_step_calls_its_parent():
    class LoggingSGD(optim.SGD):
        def step(self, closure=None):
            return super().step(closure)

    p = _param(2)
    p.grad = ember.ones(2, dtype=ember.float64)
    opt = LoggingSGD([p], lr=0.1)
    count = []
    opt.register_step_post_hook(lambda o, a, k: count.append(1))
    opt.step()
    assert count == [1]


# -- state dicts -------------------------------------------------------------------------------


def _stepped(cls, options, steps=3, groups=None):
    a, b, c = _param(3), _param(2, 2, seed=1), _param(4, seed=2)
    params = [a, b, c]
    if groups is None:
        groups = [{"params": [a, b]}, {"params": [c], "lr": 0.01}]
    opt = cls(groups, **options)
    rng = np.random.default_rng(5)
    for _ in range(steps):
        for p in params:
            p.grad = ember.tensor(rng.standard_normal(tuple(p.shape)))
        opt.step()
    return params, opt


def test_state_dict_names_parameters_by_index_across_groups():
    params, opt = _stepped(optim.Adam, {"lr": 0.1, "amsgrad": True})
    saved = opt.state_dict()
    assert set(saved) == {"state", "param_groups"}
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2]]
    assert saved["param_groups"][1]["lr"] == 0.01 and saved["param_groups"][0]["lr"] == 0.1
    assert saved["param_groups"][0]["amsgrad"] is True
    assert sorted(saved["state"]) == [0, 1, 2]
    state = saved["state"][1]
    assert list(state) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    assert state["step"].item() == 3.0 and state["step"].shape == ()
    assert tuple(state["exp_avg"].shape) == (2, 2)
    # the state's tensors are the optimizer's own, as in PyTorch
    assert state["exp_avg"] is opt.state[params[1]]["exp_avg"]
    # the groups are copies: editing them does not change the optimizer
    saved["param_groups"][0]["lr"] = 123.0
    assert opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("cls, options", ALL_OPTIMIZERS, ids=IDS)
def test_load_state_dict_continues_exactly_where_the_saved_optimizer_was(cls, options):
    params, opt = _stepped(cls, options)
    saved = copy.deepcopy(opt.state_dict())
    fresh = [ember.tensor(p.detach().numpy().copy(), requires_grad=True) for p in params]
    opt2 = cls([{"params": fresh[:2]}, {"params": fresh[2:], "lr": 0.5}], **options)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[1]["lr"] == 0.01  # the saved options win
    assert opt2.param_groups[0]["params"][0] is fresh[0]
    rng = np.random.default_rng(9)
    for _ in range(4):
        for p, q in zip(params, fresh):
            g = rng.standard_normal(tuple(p.shape))
            p.grad, q.grad = ember.tensor(g), ember.tensor(g)
        opt.step()
        opt2.step()
    for p, q in zip(params, fresh):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_loading_copies_the_tensors():
    params, opt = _stepped(optim.SGD, {"lr": 0.1, "momentum": 0.9})
    saved = opt.state_dict()
    opt2 = optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.9)
    opt2.load_state_dict(saved)
    loaded = opt2.state[params[0]]["momentum_buffer"]
    assert loaded is not saved["state"][0]["momentum_buffer"]
    before = loaded.tolist()
    with ember.no_grad():
        saved["state"][0]["momentum_buffer"].mul_(100.0)
    assert loaded.tolist() == before
    assert opt2.param_groups[0] is not saved["param_groups"][0]


def test_loading_casts_state_to_each_parameters_dtype_but_keeps_step():
    params, opt = _stepped(optim.Adam, {"lr": 0.1})
    saved = opt.state_dict()
    singles = [
        ember.tensor(p.detach().numpy().copy(), dtype=ember.float32, requires_grad=True)
        for p in params
    ]
    opt2 = optim.Adam([{"params": singles[:2]}, {"params": singles[2:]}])
    opt2.load_state_dict(saved)
    state = opt2.state[singles[2]]
    assert state["exp_avg"].dtype == ember.float32
    assert state["step"].dtype == saved["state"][2]["step"].dtype
    assert state["step"].item() == 3.0


def test_loading_into_a_different_number_of_groups_is_a_clear_error():
    params, opt = _stepped(optim.SGD, {"lr": 0.1, "momentum": 0.9})
    saved = opt.state_dict()
    other = optim.SGD(params, lr=0.1, momentum=0.9)
    with pytest.raises(EmberValueError, match="different number of parameter groups: it has 2"):
        other.load_state_dict(saved)


def test_loading_groups_of_different_sizes_is_a_clear_error():
    params, opt = _stepped(optim.SGD, {"lr": 0.1, "momentum": 0.9})
    saved = opt.state_dict()
    other = optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    with pytest.raises(EmberError, match="group 0 has 2 parameters in the state dict and 1"):
        other.load_state_dict(saved)
    assert not other.state  # nothing was loaded


def test_loading_something_that_is_not_a_state_dict_is_a_clear_error():
    opt = optim.SGD([_param(2)], lr=0.1)
    with pytest.raises(EmberValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"param_groups": []})


def test_adagrad_has_state_before_the_first_step_and_for_groups_added_later():
    a, b = _param(3), _param(2)
    opt = optim.Adagrad([a], initial_accumulator_value=0.25)
    assert opt.state[a]["sum"].tolist() == [0.25] * 3
    assert opt.state[a]["step"].item() == 0.0
    opt.add_param_group({"params": [b]})
    b.grad = ember.ones(2, dtype=ember.float64)
    opt.step()
    assert opt.state[b]["sum"].tolist() == [1.25, 1.25]


def test_adamw_decays_weights_without_touching_the_moments():
    p = ember.ones(3, dtype=ember.float64, requires_grad=True)
    p.grad = ember.zeros(3, dtype=ember.float64)
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    opt.step()
    assert p.tolist() == pytest.approx([0.95] * 3, abs=1e-15)
    assert opt.state[p]["exp_avg"].tolist() == [0.0] * 3
    coupled = ember.ones(3, dtype=ember.float64, requires_grad=True)
    coupled.grad = ember.zeros(3, dtype=ember.float64)
    opt = optim.Adam([coupled], lr=0.1, weight_decay=0.5)
    opt.step()
    assert opt.state[coupled]["exp_avg"].tolist() == pytest.approx([0.05] * 3)


def test_repr_lists_each_group_options():
    opt = optim.SGD([{"params": [_param(2)]}, {"params": [_param(2)], "lr": 0.5}], lr=0.1)
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 1" in text and "lr: 0.5" in text


def test_ember_optim_is_reachable_as_an_attribute():
    import ember as fresh

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fresh.optim.SGD is optim.SGD
        assert fresh.optim.lr_scheduler.StepLR is not None


def _assert_array_path_equals_tensor_path(module, make, dtype, monkeypatch):
    """Run an optimizer 10 steps on its array path, then with `module.on_arrays` answering
    no (the tensor ops): parameters and state must agree bit for bit."""

    def run(fast: bool):
        if not fast:
            monkeypatch.setattr(module, "on_arrays", lambda *a: False)
        else:
            monkeypatch.undo()
        rng = np.random.default_rng(0)
        params = [ember.tensor(rng.standard_normal(s), dtype=getattr(ember, dtype),
                               requires_grad=True) for s in [(5, 3), (3,), ()]]
        opt = make(params)
        for step in range(10):
            for p in params:
                p.grad = ember.tensor(rng.standard_normal(p.shape) * (step + 1),
                                      dtype=getattr(ember, dtype))
            opt.step()
        return params, opt

    fast_params, fast_opt = run(True)
    slow_params, slow_opt = run(False)
    for a, b in zip(fast_params, slow_params):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        sa, sb = fast_opt.state.get(a, {}), slow_opt.state.get(b, {})
        assert sorted(sa) == sorted(sb)
        for key in sa:
            np.testing.assert_array_equal(sa[key].numpy(), sb[key].numpy(), err_msg=key)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "cls, options",
    [
        ("Adam", {}),
        ("Adam", {"weight_decay": 0.1, "amsgrad": True}),
        ("Adam", {"maximize": True, "betas": (0.8, 0.9)}),
        ("AdamW", {"weight_decay": 0.05}),
        ("AdamW", {"amsgrad": True, "eps": 1e-3}),
    ],
)
def test_adams_array_path_equals_its_tensor_ops_bit_for_bit(cls, options, dtype, monkeypatch):
    """Eagerly, Adam updates each parameter on its numpy arrays in one go; the result must be
    the tensor ops' own, bit for bit, parameters and state, over 10 steps."""
    import ember.optim.adam as adam_module

    _assert_array_path_equals_tensor_path(
        adam_module, lambda params: getattr(ember.optim, cls)(params, lr=0.05, **options),
        dtype, monkeypatch)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
     {"momentum": 0.8, "nesterov": True}, {"momentum": 0.5, "maximize": True}],
)
def test_sgds_array_path_equals_its_tensor_ops_bit_for_bit(options, dtype, monkeypatch):
    """Eagerly, SGD updates each parameter on its numpy arrays; the result must be the
    tensor ops' own, bit for bit, parameters and momentum buffers, over 10 steps."""
    import ember.optim.sgd as sgd_module

    _assert_array_path_equals_tensor_path(
        sgd_module, lambda params: ember.optim.SGD(params, lr=0.05, **options), dtype,
        monkeypatch)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "cls, options",
    [
        ("Adam", {"weight_decay": 0.1}),
        ("Adam", {"weight_decay": 0.1, "amsgrad": True}),
        ("AdamW", {"weight_decay": 0.05, "amsgrad": True}),
        ("SGD", {"momentum": 0.9, "weight_decay": 0.01, "nesterov": True}),
        ("SGD", {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ],
)
def test_native_updates_equal_the_numpy_passes_bit_for_bit(cls, options, dtype, monkeypatch):
    """The one-pass native update (runtime/updates.py) against numpy's passes, on a parameter
    large enough to be shared by the native pool's threads, with NaN and inf in the grads."""
    from ember.runtime import updates

    calls = []
    native = updates.adam if cls != "SGD" else updates.sgd
    monkeypatch.setattr(updates, native.__name__,
                        lambda *a, **k: calls.append(1) or native(*a, **k))

    def run(fast: bool):
        if not fast:
            monkeypatch.setattr(updates, "usable", lambda *a: False)
        rng = np.random.default_rng(1)
        params = [ember.tensor(rng.standard_normal(s), dtype=getattr(ember, dtype),
                               requires_grad=True) for s in [(300, 300), (7,)]]
        opt = getattr(ember.optim, cls)(params, lr=0.05, **options)
        for step in range(4):
            for p in params:
                g = rng.standard_normal(p.shape) * (step + 1)
                if step == 3:
                    g.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
                p.grad = ember.tensor(g, dtype=getattr(ember, dtype))
            opt.step()
        return params, opt

    with np.errstate(invalid="ignore", over="ignore"):  # numpy's passes meet inf - inf
        fast_params, fast_opt = run(True)
        assert calls  # the native pass ran
        slow_params, slow_opt = run(False)
    for a, b in zip(fast_params, slow_params):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        for key in fast_opt.state[a]:
            np.testing.assert_array_equal(fast_opt.state[a][key].numpy(),
                                          slow_opt.state[b][key].numpy(), err_msg=key)
