"""ember.optim.lr_scheduler on its own: each schedule's values by its formula, the base class's
bookkeeping, and state dicts."""

import itertools
import math
import warnings

import ember
import pytest
from ember import optim
from ember.errors import EmberTypeError, EmberValueError
from ember.optim import lr_scheduler


def _sgd(lr=1.0, groups=1, **options):
    params = [ember.zeros(2, requires_grad=True) for _ in range(groups)]
    for p in params:
        p.grad = ember.ones(2)
    return optim.SGD([{"params": [p]} for p in params], lr=lr, **options)


def _run(opt, sched, steps):
    """The lr of group 0 after construction and after each of `steps` steps."""
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_construction_records_initial_lr_and_base_lrs():
    opt = _sgd(lr=0.3, groups=2)
    opt.param_groups[1]["lr"] = 0.2
    sched = lr_scheduler.StepLR(opt, step_size=2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.3, 0.2]
    assert sched.base_lrs == [0.3, 0.2]
    assert sched.get_last_lr() == [0.3, 0.2]
    assert sched.last_epoch == 0


def test_resuming_without_initial_lr_is_an_error():
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(_sgd(), step_size=2, last_epoch=4)


def test_a_scheduler_needs_an_optimizer():
    with pytest.raises(EmberTypeError, match="is not an Optimizer"):
        lr_scheduler.ExponentialLR(object(), gamma=0.5)


def test_step_lr_multiplies_by_gamma_every_step_size_epochs():
    opt = _sgd()
    lrs = _run(opt, lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), 7)
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_multistep_lr_applies_a_repeated_milestone_twice():
    opt = _sgd()
    lrs = _run(opt, lr_scheduler.MultiStepLR(opt, [2, 4, 4], gamma=0.5), 5)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.125, 0.125]


def test_exponential_lr_is_a_geometric_sequence():
    opt = _sgd(lr=2.0)
    lrs = _run(opt, lr_scheduler.ExponentialLR(opt, gamma=0.9), 10)
    assert lrs == pytest.approx([2.0 * 0.9**t for t in range(11)], rel=1e-14)


def test_cosine_annealing_follows_the_closed_form_over_a_period():
    opt = _sgd(lr=0.5)
    t_max, eta_min = 12, 0.05
    lrs = _run(opt, lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min), 24)
    expected = [
        eta_min + (0.5 - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2 for t in range(25)
    ]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert lrs[t_max] == pytest.approx(eta_min) and lrs[2 * t_max] == pytest.approx(0.5)


def test_lambda_lr_scales_the_initial_lr_per_group():
    opt = _sgd(lr=0.1, groups=2)
    sched = lr_scheduler.LambdaLR(opt, [lambda e: e + 1, lambda e: 0.5**e])
    for _ in range(3):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.4, 0.1 * 0.125])
    with pytest.raises(EmberValueError, match="Expected 2 lr_lambdas, but got 1"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0])


def test_linear_lr_ramps_from_start_to_end_factor():
    opt = _sgd(lr=1.0)
    lrs = _run(opt, lr_scheduler.LinearLR(opt, start_factor=0.2, end_factor=0.6, total_iters=4), 6)
    assert lrs == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.6, 0.6], rel=1e-12)
    with pytest.raises(EmberValueError, match="Starting multiplicative factor"):
        lr_scheduler.LinearLR(_sgd(), start_factor=0.0)


def test_one_cycle_lr_warms_up_to_max_lr_then_anneals_to_the_floor():
    opt = _sgd(lr=0.0, momentum=0.9)
    sched = lr_scheduler.OneCycleLR(
        opt, max_lr=1.0, total_steps=20, pct_start=0.25, div_factor=10.0, final_div_factor=100.0
    )
    lrs, momenta = [opt.param_groups[0]["lr"]], [opt.param_groups[0]["momentum"]]
    for _ in range(19):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        momenta.append(opt.param_groups[0]["momentum"])
    peak = lrs.index(max(lrs))
    assert lrs[0] == pytest.approx(0.1) and peak == 4 and lrs[peak] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1 / 100.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a > b for a, b in itertools.pairwise(lrs[peak:]))
    assert momenta[0] == pytest.approx(0.95) and momenta[peak] == pytest.approx(0.85)
    assert momenta[-1] == pytest.approx(0.95)
    opt.step()
    sched.step()  # PyTorch allows one step past the end
    with pytest.raises(EmberValueError, match="Tried to step 21 times"):
        sched.step()


def test_one_cycle_lr_cycles_adams_beta1_and_keeps_beta2():
    p = ember.zeros(2, requires_grad=True)
    opt = optim.Adam([p], betas=(0.9, 0.99))
    lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10, base_momentum=0.7, max_momentum=0.8)
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)
    with pytest.raises(EmberValueError, match="momentum or beta1"):
        lr_scheduler.OneCycleLR(
            optim.Adagrad([ember.zeros(1, requires_grad=True)]), 0.1, total_steps=10
        )
    with pytest.raises(EmberValueError, match="total_steps OR"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.01)


def test_reduce_on_plateau_waits_patience_then_cools_down_and_respects_min_lr():
    opt = _sgd(lr=1.0)
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    lrs = []
    for metric in [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]:
        sched.step(metric)
        lrs.append(sched.get_last_lr()[0])
    # 3 bad epochs (> patience) reduce; one cooldown epoch does not count; then 3 more
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2]
    assert opt.param_groups[0]["lr"] == 0.2


def test_reduce_on_plateau_in_max_mode_with_an_absolute_threshold():
    opt = _sgd(lr=1.0)
    sched = lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=0.1, patience=0, threshold=0.5, threshold_mode="abs"
    )
    sched.step(ember.tensor(1.0))  # a 0-d tensor is a metric too
    sched.step(1.4)  # not better by 0.5: a bad epoch, and patience is 0
    assert sched.get_last_lr() == pytest.approx([0.1])
    sched.step(2.0)
    assert sched.best == 2.0 and sched.get_last_lr() == pytest.approx([0.1])
    with pytest.raises(EmberValueError, match="mode sideways is unknown"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="sideways")


def test_stepping_the_scheduler_before_the_optimizer_warns():
    opt = _sgd()
    sched = lr_scheduler.StepLR(opt, step_size=1)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt2 = _sgd()
    sched2 = lr_scheduler.StepLR(opt2, step_size=1)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()


def test_state_dict_round_trip_restores_the_schedule():
    opt = _sgd(lr=1.0)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    _run(opt, sched, 4)
    saved = sched.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 4
    opt_saved = opt.state_dict()
    rest = _run(opt, sched, 5)

    opt2 = _sgd(lr=1.0)
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    opt2.load_state_dict(opt_saved)
    sched2.load_state_dict(saved)
    assert _run(opt2, sched2, 5) == rest


class _Warmup:
    def __init__(self, steps):
        self.steps = steps

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.steps)


def test_lambda_lr_saves_the_state_of_callable_objects_but_not_functions():
    opt = _sgd(groups=2)
    sched = lr_scheduler.LambdaLR(opt, [_Warmup(5), lambda e: 1.0])
    saved = sched.state_dict()
    assert saved["lr_lambdas"] == [{"steps": 5}, None]
    fresh = _Warmup(100)
    sched2 = lr_scheduler.LambdaLR(_sgd(groups=2), [fresh, lambda e: 1.0])
    sched2.load_state_dict(saved)
    assert fresh.steps == 5
    assert "lr_lambdas" in saved  # loading leaves the dict as it was
