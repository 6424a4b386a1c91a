"""bfloat16 tensors: storage in ml_dtypes' bfloat16, arithmetic in float32 rounded back, PyTorch's
promotion rules, printing, limits, autograd, checkpoints and compiled code equal to eager."""

from __future__ import annotations

import copy

import ember
import ml_dtypes
import numpy as np
import pytest

BF16 = np.dtype(ml_dtypes.bfloat16)


def _round(array) -> np.ndarray:
    """float32 values rounded to bfloat16, as float32 again."""
    return np.asarray(array, np.float32).astype(BF16).astype(np.float32)


def _values(t) -> np.ndarray:
    return t.float().numpy()


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_bfloat16_is_a_floating_dtype_of_two_bytes():
    d = ember.bfloat16
    assert repr(d) == "ember.bfloat16"
    assert d.is_floating_point and d.itemsize == 2 and d.is_signed
    assert ember.half is ember.float16 and ember.half is not d
    t = ember.ones(3, dtype=d)
    assert t.dtype is d and t.element_size() == 2


def test_to_and_bfloat16_round_to_nearest_even(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    t = ember.tensor(x)
    for converted in (t.bfloat16(), t.to(ember.bfloat16), t.to(dtype=ember.bfloat16),
                      t.type(ember.bfloat16)):
        assert converted.dtype is ember.bfloat16
        np.testing.assert_array_equal(_values(converted), _round(x))
    assert t.bfloat16().float().dtype is ember.float32


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("bfloat16", "float16", "float32"),
        ("float16", "bfloat16", "float32"),
        ("bfloat16", "float32", "float32"),
        ("bfloat16", "float64", "float64"),
        ("bfloat16", "int64", "bfloat16"),
        ("uint8", "bfloat16", "bfloat16"),
        ("bfloat16", "bool", "bfloat16"),
        ("bfloat16", "bfloat16", "bfloat16"),
    ],
)
def test_promote_types_as_pytorch(a, b, expected):
    da, db = ember.ir.dtypes.from_name(a), ember.ir.dtypes.from_name(b)
    assert ember.promote_types(da, db).name == expected
    assert (ember.ones(2, dtype=da) + ember.ones(2, dtype=db)).dtype.name == expected


def test_python_scalars_and_zero_dim_tensors_keep_bfloat16():
    x = ember.ones(3, dtype=ember.bfloat16)
    assert (x + 1).dtype is ember.bfloat16
    assert (x * 1.5).dtype is ember.bfloat16
    assert (x * ember.tensor(2.0)).dtype is ember.bfloat16
    assert (x + ember.tensor(2.0, dtype=ember.float64)).dtype is ember.bfloat16


def test_elementwise_ops_compute_in_float32_and_round(rng):
    a = _round(rng.standard_normal(4096))
    b = _round(rng.standard_normal(4096))
    ta, tb = ember.tensor(a, dtype=ember.bfloat16), ember.tensor(b, dtype=ember.bfloat16)
    np.testing.assert_array_equal(_values(ta + tb), _round(a + b))
    np.testing.assert_array_equal(_values(ta * tb), _round(a * b))
    np.testing.assert_array_equal(_values(ta / tb), _round(a / b))
    np.testing.assert_array_equal(_values(ta.exp()), _round(np.exp(a)))
    np.testing.assert_array_equal(_values(ta.sigmoid()), _round(1 / (1 + np.exp(-a))))


def test_scalars_round_to_bfloat16_except_for_mul_and_div(rng):
    a = _round(rng.standard_normal(4096))
    t = ember.tensor(a, dtype=ember.bfloat16)
    scalar_bf16 = np.float32(np.float32(1.1).astype(BF16))
    np.testing.assert_array_equal(_values(t + 1.1), _round(a + scalar_bf16))
    np.testing.assert_array_equal(_values(t > 1.1), a > scalar_bf16)
    np.testing.assert_array_equal(_values(t * 1.1), _round(a * np.float32(1.1)))
    np.testing.assert_array_equal(_values(t / 1.1), _round(a / np.float32(1.1)))
    np.testing.assert_array_equal(
        _values(t * ember.tensor(1.1)), _round(a * np.float32(1.1))
    )


def test_reductions_accumulate_in_float32():
    x = ember.tensor([1.5, 2.25, 1e-5, 300.0], dtype=ember.bfloat16)
    assert x.sum().dtype is ember.bfloat16
    assert x.sum().item() == 304.0  # 303.75... rounded once, not after every addition
    assert x.mean().item() == 76.0
    ones = ember.ones(4096, dtype=ember.bfloat16)
    # bfloat16 accumulation would stall at 256
    assert ones.sum().item() == 4096.0


def test_matmul_multiplies_in_float32_and_rounds_once(rng):
    a = _round(rng.standard_normal((16, 64)))
    b = _round(rng.standard_normal((64, 8)))
    out = ember.tensor(a, dtype=ember.bfloat16) @ ember.tensor(b, dtype=ember.bfloat16)
    assert out.dtype is ember.bfloat16
    np.testing.assert_allclose(_values(out), _round(a @ b), rtol=2**-7)


def test_numpy_is_refused_as_pytorch_refuses_it():
    x = ember.ones(2, dtype=ember.bfloat16)
    with pytest.raises(TypeError, match="unsupported ScalarType BFloat16"):
        x.numpy()
    assert x.float().numpy().dtype == np.float32
    assert x.tolist() == [1.0, 1.0] and x[0].item() == 1.0


def test_repr_as_pytorch():
    x = ember.tensor([1.5, 2.25, 1e-5, 300.0], dtype=ember.bfloat16)
    assert repr(x) == (
        "tensor([1.5000e+00, 2.2500e+00, 1.0014e-05, 3.0000e+02], dtype=ember.bfloat16)"
    )
    assert repr(ember.tensor([1.0, 2.0], dtype=ember.bfloat16)) == (
        "tensor([1., 2.], dtype=ember.bfloat16)"
    )


def test_finfo_and_iinfo():
    f = ember.finfo(ember.bfloat16)
    assert (f.bits, f.eps, f.resolution, f.dtype) == (16, 0.0078125, 0.01, "bfloat16")
    assert f.max == float(ml_dtypes.finfo(BF16).max) and f.min == -f.max
    assert f.tiny == f.smallest_normal == 2.0**-126
    assert repr(f) == (
        "finfo(resolution=0.01, min=-3.38953e+38, max=3.38953e+38, eps=0.0078125, "
        "smallest_normal=1.17549e-38, tiny=1.17549e-38, dtype=bfloat16)"
    )
    assert ember.finfo().eps == float(np.finfo(np.float32).eps)
    assert ember.finfo(ember.float16).max == 65504.0
    i = ember.iinfo(ember.int32)
    assert (i.min, i.max, i.bits) == (-(2**31), 2**31 - 1, 32)
    with pytest.raises(TypeError):
        ember.finfo(ember.int32)
    with pytest.raises(TypeError):
        ember.iinfo(ember.bfloat16)


def test_factories_make_bfloat16():
    assert ember.zeros(2, 3, dtype=ember.bfloat16).dtype is ember.bfloat16
    assert ember.arange(4, dtype=ember.bfloat16).tolist() == [0.0, 1.0, 2.0, 3.0]
    r = ember.rand(100, dtype=ember.bfloat16)
    assert r.dtype is ember.bfloat16 and 0 <= r.min().item() and r.max().item() <= 1
    assert ember.full((2,), 1.1, dtype=ember.bfloat16).tolist() == [1.1015625] * 2


def test_autograd_on_bfloat16_leaves(rng):
    w0 = _round(rng.standard_normal((4, 3)))
    x0 = _round(rng.standard_normal((2, 4)))
    w = ember.tensor(w0, dtype=ember.bfloat16, requires_grad=True)
    x = ember.tensor(x0, dtype=ember.bfloat16)
    (x @ w).sum().backward()
    assert w.grad.dtype is ember.bfloat16
    # d/dw sum(x @ w) = x.T @ ones
    np.testing.assert_array_equal(_values(w.grad), _round(x0.T @ np.ones((2, 3), np.float32)))


def test_module_bfloat16_casts_parameters():
    m = ember.nn.Linear(4, 3).bfloat16()
    assert {p.dtype for p in m.parameters()} == {ember.bfloat16}
    assert m(ember.ones(2, 4, dtype=ember.bfloat16)).dtype is ember.bfloat16


def test_save_and_load_keep_bfloat16_bits(tmp_path, rng):
    x = ember.tensor(rng.standard_normal((3, 5)).astype(np.float32)).bfloat16()
    path = tmp_path / "bf16.safetensors"
    ember.save({"x": x}, path)
    y = ember.load(path)["x"]
    assert y.dtype is ember.bfloat16
    assert ember.equal(x, y)
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        assert f.get_slice("x").get_dtype() == "BF16"


def test_scripted_bfloat16_graph_equals_eager(rng):
    def f(x, w):
        y = (x @ w) * 1.1 + 0.3
        z = y.relu().exp() - 2
        return z.sum(-1), z.mean(), z > 1.0, z.float() * 3, y.softmax(-1)

    x = ember.tensor(rng.standard_normal((5, 4)).astype(np.float32)).bfloat16()
    w = ember.tensor(rng.standard_normal((4, 6)).astype(np.float32)).bfloat16()
    compiled = ember.script(f)
    for _ in range(2):  # the trace, then the compiled graph
        for eager, graph in zip(f(x, w), compiled(x, w)):
            assert eager.dtype is graph.dtype
            assert ember.equal(eager, graph)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "AdamW"])
def test_scripted_bfloat16_training_step_equals_eager(optimizer):
    ember.manual_seed(0)
    x = ember.randn(5, 4).bfloat16()
    model = ember.nn.Sequential(ember.nn.Linear(4, 3), ember.nn.LayerNorm(3)).bfloat16()
    start = copy.deepcopy(model.state_dict())
    options = {"momentum": 0.9} if optimizer == "SGD" else {}

    def run(compile_it):
        model.load_state_dict(start)
        opt = getattr(ember.optim, optimizer)(model.parameters(), lr=1e-2, **options)

        def step(x):
            opt.zero_grad()
            loss = model(x).pow(2).sum()
            loss.backward()
            opt.step()
            return loss

        fn = ember.script(step) if compile_it else step
        losses = [fn(x).item() for _ in range(3)]
        return losses, [p.detach().clone() for p in model.parameters()]

    eager_losses, eager_params = run(False)
    graph_losses, graph_params = run(True)
    assert eager_losses == graph_losses
    assert eager_losses[0] != eager_losses[-1]
    for a, b in zip(eager_params, graph_params):
        assert a.dtype is ember.bfloat16 and ember.equal(a, b)
