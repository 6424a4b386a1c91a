"""bfloat16 against PyTorch: the same inputs give the same bfloat16 bits (elementwise ops,
scalar operands, reductions) or values within bfloat16 rounding (matmul)."""

from __future__ import annotations

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle


def _pair(array):
    t = torch.tensor(array).bfloat16()
    return ember.tensor(t.float().numpy()).bfloat16(), t


def _same(e, t):
    assert e.dtype.name == str(t.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(e.float().numpy(), t.float().numpy())


@pytest.fixture
def inputs():
    rng = np.random.default_rng(3)
    a = rng.standard_normal(5000).astype(np.float32) * 3
    b = np.abs(rng.standard_normal(5000).astype(np.float32)) + 0.05
    return _pair(a), _pair(b)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "atan2", "pow"])
def test_binary_ops_match_pytorch(inputs, op):
    (ea, ta), (eb, tb) = inputs
    if op == "pow":
        ea, ta = ea.abs(), ta.abs()
    _same(getattr(ember, op)(ea, eb), getattr(torch, op)(ta, tb))


@pytest.mark.parametrize("op", ["exp", "log1p", "tanh", "sigmoid", "sqrt", "neg"])
def test_unary_ops_match_pytorch(inputs, op):
    _, (eb, tb) = inputs
    _same(getattr(ember, op)(eb), getattr(torch, op)(tb))


@pytest.mark.parametrize("scalar", [1.1, 0.3, 3.7, -2])
@pytest.mark.parametrize(
    "fn",
    [
        lambda x, s: x + s,
        lambda x, s: x - s,
        lambda x, s: s - x,
        lambda x, s: x * s,
        lambda x, s: x / s,
        lambda x, s: x > s,
        lambda x, s: x == s,
        lambda x, s: x**2 + s,
    ],
)
def test_python_scalar_operands_match_pytorch(inputs, fn, scalar):
    (ea, ta), _ = inputs
    _same(fn(ea, scalar), fn(ta, scalar))


@pytest.mark.parametrize("value", [1.1, 0.3])
def test_zero_dim_float32_operands_match_pytorch(inputs, value):
    (ea, ta), _ = inputs
    _same(ea * ember.tensor(value), ta * torch.tensor(value))
    _same(ea / ember.tensor(value), ta / torch.tensor(value))
    _same(ea + ember.tensor(value), ta + torch.tensor(value))


def test_reductions_match_pytorch(inputs):
    (ea, ta), _ = inputs
    e2, t2 = ea.reshape(50, 100), ta.reshape(50, 100)
    _same(e2.sum(1), t2.sum(1))
    _same(e2.mean(0), t2.mean(0))
    _same(e2.amax(1), t2.amax(1))
    assert ea.sum().dtype is ember.bfloat16
    np.testing.assert_allclose(ea.sum().item(), ta.sum().item(), rtol=2**-7)


def test_matmul_matches_pytorch_within_rounding():
    rng = np.random.default_rng(5)
    (ea, ta), (eb, tb) = _pair(rng.standard_normal((32, 64))), _pair(
        rng.standard_normal((64, 16)))
    e, t = ea @ eb, ta @ tb
    assert e.dtype is ember.bfloat16
    np.testing.assert_allclose(e.float().numpy(), t.float().numpy(), rtol=2**-7, atol=1e-2)


def test_repr_and_finfo_read_as_pytorch():
    values = [1.5, 2.25, 1e-5, 300.0]
    e = repr(ember.tensor(values, dtype=ember.bfloat16)).replace("ember.", "torch.")
    assert e == repr(torch.tensor(values, dtype=torch.bfloat16))
    for name in ("bfloat16", "float16", "float32", "float64"):
        assert repr(ember.finfo(getattr(ember, name))) == repr(torch.finfo(getattr(torch, name)))
    assert repr(ember.iinfo(ember.int64)) == repr(torch.iinfo(torch.int64))


def test_pytorch_reads_ember_bfloat16_checkpoints(tmp_path):
    from safetensors.torch import load_file

    x = ember.randn(4, 3).bfloat16()
    ember.save({"x": x}, tmp_path / "x.safetensors")
    loaded = load_file(str(tmp_path / "x.safetensors"))["x"]
    assert loaded.dtype == torch.bfloat16
    np.testing.assert_array_equal(loaded.float().numpy(), x.float().numpy())
