"""Eager dispatch reuses an elementwise call's type-rule answer per (op, dtypes, number
classes) (_tensor/dispatch.py, _PLANS): a planned call must equal the general way's in
values, dtype, autograd and errors."""

from __future__ import annotations

import importlib
import itertools

import ember
import numpy as np
import pytest

dispatch_module = importlib.import_module("ember._tensor.dispatch")  # (the package's
# `dispatch` attribute is the function)

DTYPES = [ember.float32, ember.float64, ember.int64, ember.int32, ember.bool, ember.float16]
OPS = ["add", "sub", "mul", "div", "maximum", "eq", "lt", "logical_and", "pow", "remainder"]
NUMBERS = [2, 0.5, True, -3]


def _operand(kind, rng):
    if isinstance(kind, ember.dtype):
        values = rng.integers(1, 4, (3, 4)) if kind is not ember.bool else rng.integers(0, 2,
                                                                                          (3, 4))
        return ember.tensor(values).to(kind)
    return kind


def _outcome(op, a, b):
    try:
        out = getattr(ember, op)(a, b)
    except ember.EmberError as exc:
        return ("error", type(exc), str(exc).split(" (at ")[0])
    return ("value", out.dtype, out.numpy())


@pytest.mark.parametrize("op", OPS)
def test_planned_calls_equal_the_general_way(op, monkeypatch):
    rng = np.random.default_rng(0)
    kinds = DTYPES + NUMBERS
    for left, right in itertools.product(kinds, kinds):
        if not isinstance(left, ember.dtype) and not isinstance(right, ember.dtype):
            continue
        a, b = _operand(left, rng), _operand(right, rng)
        monkeypatch.setattr(dispatch_module, "_PLANS", {})
        first = _outcome(op, a, b)  # the general way (and the plan made, where one may be)
        again = _outcome(op, a, b)  # planned, where a plan was made
        assert again[:2] == first[:2], (op, left, right)
        if first[0] == "value":
            assert again[2].dtype == first[2].dtype
            np.testing.assert_array_equal(again[2], first[2], err_msg=f"{op} {left} {right}")
        else:
            assert again[2] == first[2]


def test_planned_where_calls_equal_the_general_way(monkeypatch):
    """where casts from its second input on (its condition keeps bool): its plans cast the
    numbers among them as the general way does, and a number as the condition stays an
    error."""
    rng = np.random.default_rng(1)
    cond = ember.tensor(rng.integers(0, 2, (3, 4)).astype(bool))
    kinds = [ember.float32, ember.float64, ember.int64, ember.float16, 2, 0.5, True]
    for left, right in itertools.product(kinds, kinds):
        a, b = _operand(left, rng), _operand(right, rng)
        monkeypatch.setattr(dispatch_module, "_PLANS", {})
        outcomes = []
        for _ in range(2):  # the general way, then the plan where one was made
            try:
                out = ember.where(cond, a, b)
                outcomes.append(("value", out.dtype, out.numpy()))
            except ember.EmberError as exc:
                outcomes.append(("error", type(exc), str(exc).split(" (at ")[0]))
        first, again = outcomes
        assert again[:2] == first[:2], (left, right)
        if first[0] == "value":
            assert again[2].dtype == first[2].dtype
            np.testing.assert_array_equal(again[2], first[2], err_msg=f"{left} {right}")
        tensors = [k for k in (left, right) if isinstance(k, ember.dtype)]
        if first[0] == "value" and tensors and all(k is first[1] for k in tensors):
            # nothing cast but numbers: the call was planned
            assert any(key[0] == "where" for key in dispatch_module._PLANS), (left, right)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="where expected condition to be a boolean"):
            ember.where(True, ember.ones(2), 0.0)


def test_a_plan_never_skips_a_rule_that_reads_a_numbers_value():
    x = ember.tensor([2, 3])
    assert (x ** 2).tolist() == [4, 9]
    for _ in range(2):
        with pytest.raises(RuntimeError, match="Integers to negative integer powers"):
            x ** -1


def test_planned_calls_record_autograd_and_run_the_current_kernel(monkeypatch):
    a = ember.randn(3, 4, requires_grad=True)
    b = ember.randn(3, 4)
    for _ in range(3):
        out = a * b + 1.5
        (grad,) = ember.autograd.grad(out.sum(), a)
        np.testing.assert_allclose(grad.numpy(), b.numpy())
    ran = []
    kernel = dispatch_module.KERNELS["mul"]
    monkeypatch.setitem(dispatch_module.KERNELS, "mul",
                        lambda *args, **kw: ran.append(1) or kernel(*args, **kw))
    a * b
    assert ran == [1]


def test_calls_a_plan_cannot_take_go_the_general_way():
    a = ember.ones(2, 3)
    with pytest.raises(RuntimeError, match="must match the size"):
        a + ember.ones(2, 4)  # same dtypes as a planned call, other shapes
    assert (a + ember.ones(3)).shape == (2, 3)  # broadcasting
    assert (ember.tensor([1], dtype=ember.int8) + 300).tolist() == [45]  # wraps, as PyTorch
    assert (ember.tensor(1.0) + ember.tensor(2.0)).item() == 3.0  # 0-d


@pytest.mark.parametrize("op", ["add", "mul", "div", "eq", "pow", "maximum"])
def test_planned_broadcasting_calls_equal_the_general_way(op, monkeypatch):
    """Calls whose shapes differ are planned per shapes: each pair of shapes, broadcasting
    or not, gives the general way's answer (or error) again."""
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (4,), (3, 1), (1, 4), (2, 3, 4), (3,), (1,)]
    monkeypatch.setattr(dispatch_module, "_PLANS", {})
    for left, right in itertools.product(shapes, shapes):
        for dtypes in ((ember.float32, ember.float32), (ember.int64, ember.float64)):
            a = ember.tensor(rng.integers(1, 4, left)).to(dtypes[0])
            b = ember.tensor(rng.integers(1, 4, right)).to(dtypes[1])
            first, again = _outcome(op, a, b), _outcome(op, a, b)
            assert again[:2] == first[:2], (op, left, right)
            if first[0] == "value":
                assert again[2].shape == first[2].shape
                np.testing.assert_array_equal(again[2], first[2])
            else:
                assert again[2] == first[2]
    assert any(len(key) > 3 for key in dispatch_module._PLANS)  # broadcasting plans were made


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "prod", "all", "logsumexp",
                                  "argmax", "cumsum"])
def test_planned_reductions_equal_the_general_way(name, monkeypatch):
    """Reductions are planned per shape and attrs (dims, keepdim): full and partial, empty
    inputs (amax refuses them by name), integer and bool inputs."""
    rng = np.random.default_rng(2)
    monkeypatch.setattr(dispatch_module, "_PLANS", {})
    calls = [((), {}), ((-1,), {}), ((0,), {"keepdim": True}), ((1,), {"keepdim": True})]
    if name in ("argmax", "cumsum", "logsumexp"):
        calls = [((1,), {}), ((0,), {})]
    for shape in ((3, 4), (0, 4), (5, 1)):
        for dtype in (ember.float32, ember.float64, ember.int64, ember.bool):
            x = ember.tensor(rng.integers(0, 3, shape)).to(dtype)
            for args, kwargs in calls:
                outcomes = []
                for _ in range(2):
                    try:
                        out = getattr(ember, name)(x, *args, **kwargs)
                        outcomes.append(("value", out.dtype, out.numpy()))
                    except ember.EmberError as exc:
                        outcomes.append(("error", type(exc), str(exc).split(" (at ")[0]))
                first, again = outcomes
                assert again[:2] == first[:2], (name, shape, dtype, args, kwargs)
                if first[0] == "value":
                    assert again[2].shape == first[2].shape
                    np.testing.assert_array_equal(again[2], first[2])
                else:
                    assert again[2] == first[2]


def test_planned_extern_calls_equal_the_general_way(monkeypatch):
    """matmul, linear, conv2d and pooling are planned per shapes and attrs: a planned call
    gives the general way's values and gradients, and shapes that do not fit still fail."""
    F = ember.nn.functional
    monkeypatch.setattr(dispatch_module, "_PLANS", {})
    rng = np.random.default_rng(3)

    def t(*shape, grad=False):
        return ember.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=grad)

    x, w, b = t(4, 5, grad=True), t(3, 5, grad=True), t(3)
    image, kernel = t(2, 3, 8, 8, grad=True), t(4, 3, 3, 3)
    calls = [lambda: x @ w.t(), lambda: F.linear(x, w, b), lambda: F.conv2d(image, kernel),
             lambda: F.max_pool2d(image, 2), lambda: F.avg_pool2d(image, 2, 1)]
    for call in calls:
        results = []
        for _ in range(2):
            out = call()
            (grad,) = ember.autograd.grad(out.sum(), [image if out.ndim == 4 else x])
            results.append((out.detach().numpy(), grad.numpy()))
        (a, ga), (b2, gb) = results
        np.testing.assert_array_equal(a, b2)
        np.testing.assert_array_equal(ga, gb)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="cannot be multiplied|shapes"):
            x @ w


@pytest.mark.parametrize("make", [lambda t: t.view(4, 6), lambda t: t.transpose(0, 1),
                                  lambda t: t[:, 1:3], lambda t: t.T, lambda t: t.unsqueeze(1),
                                  lambda t: t.reshape(2, 12)])
def test_a_repeated_view_is_a_view_as_the_first(make, monkeypatch):
    """The second call of a view takes the view plan (_planned_view): it shares storage and
    the version counter with its base, writes through it reach the base, autograd flows back
    through it; the same as the first call, which took the general way."""
    taken = []
    planned = dispatch_module._planned_view

    def spy(op, inputs, attrs):
        out = planned(op, inputs, attrs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(dispatch_module, "_planned_view", spy)
    # a fresh table: the suite's earlier tests may have filled the process's (_MAX_PLANS)
    monkeypatch.setattr(dispatch_module, "_VIEW_TYPES", {})
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = ember.tensor(rng.standard_normal((4, 6))).requires_grad_()
        v = make(x)
        assert v._base is x and v._version is x._version
        weights = ember.tensor(rng.standard_normal(tuple(v.shape)))
        (v * weights).sum().backward()
        want = ember.zeros(4, 6, dtype=ember.float64)
        make(want)[...] = weights  # where the view reads x, its gradient lands
        np.testing.assert_array_equal(x.grad.numpy(), want.numpy())
        base = ember.tensor(rng.standard_normal((4, 6)))
        before = base.numpy().copy()
        make(base).mul_(2)
        doubled = ember.tensor(before)
        make(doubled).mul_(2)
        assert base._version[0] == 1
        np.testing.assert_array_equal(base.numpy(), doubled.numpy())
    assert taken[-1] is True  # the later calls took the plan
