"""The activation modules and functions added for PyTorch parity (CELU, Softsign, Softmin,
Hardswish, Hardsigmoid, Mish, GLU, LogSigmoid, ELU, SELU, Softplus, Hardtanh, ReLU6, PReLU)
and F.bilinear: torch's values, gradients and reprs; gradcheck; compiled equal to eager."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import nn
from ember.autograd import gradcheck

# (module name, constructor args, kwargs)
MODULES = [
    ("CELU", (), {}),
    ("CELU", (0.5,), {}),
    ("CELU", (), {"alpha": 2.0, "inplace": True}),
    ("ELU", (), {"alpha": 0.7}),
    ("SELU", (), {}),
    ("Softsign", (), {}),
    ("Softmin", (), {"dim": 1}),
    ("Softmin", (0,), {}),
    ("Hardswish", (), {}),
    ("Hardsigmoid", (), {"inplace": True}),
    ("Mish", (), {}),
    ("GLU", (), {}),
    ("GLU", (), {"dim": 0}),
    ("LogSigmoid", (), {}),
    ("Softplus", (), {"beta": 2.0, "threshold": 5.0}),
    ("Hardtanh", (-0.5, 2.0), {}),
    ("ReLU6", (), {"inplace": True}),
    ("PReLU", (), {}),
    ("PReLU", (4,), {"init": 0.1}),
]


def _id(case):
    name, args, kwargs = case
    return "-".join([name, *map(str, args), *(f"{k}={v}" for k, v in kwargs.items())])


def _input(seed=0):
    values = np.random.default_rng(seed).standard_normal((6, 4)) * 4
    values[0, :2] = (0.0, -3.0)  # the kinks of relu6, hardswish, hardsigmoid, celu
    return values


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", MODULES, ids=_id)
def test_module_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    name, args, kwargs = case
    theirs = getattr(torch.nn, name)(*args, **kwargs).to(getattr(torch, dtype))
    ours = getattr(nn, name)(*args, **kwargs).to(getattr(ember, dtype))
    assert repr(ours) == repr(theirs)
    ours.load_state_dict({k: ember.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    x = _input()
    results = []
    for lib, module in ((torch, theirs), (ember, ours)):
        leaf = lib.tensor(x, dtype=getattr(lib, dtype), requires_grad=True)
        # in-place modules need a non-leaf input
        out = module(leaf * 1.0)
        (out * lib.tensor(np.linspace(-1, 2, out.numel()).reshape(tuple(out.shape)),
                          dtype=getattr(lib, dtype))).sum().backward()
        results.append((out, leaf, module))
    (t_out, t_x, _), (e_out, e_x, _) = results
    rtol, atol = (1e-5, 1e-6) if dtype == "float32" else (1e-12, 1e-13)
    np.testing.assert_allclose(e_out.detach().numpy(), t_out.detach().numpy(), rtol=rtol,
                               atol=atol)
    if name in ("Hardsigmoid", "Hardswish") and dtype == "float64":
        rtol = 1e-7  # torch's backward kernels use the float constant 1.0f / 6.0f
    np.testing.assert_allclose(e_x.grad.numpy(), t_x.grad.numpy(), rtol=rtol, atol=atol)
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.oracle
@pytest.mark.parametrize("fn,kwargs", [("celu", {"alpha": 0.3}), ("softsign", {}),
                                       ("celu", {})])
def test_functions_match_torch(fn, kwargs):
    torch = pytest.importorskip("torch")
    x = _input(1)
    want = getattr(torch.nn.functional, fn)(torch.tensor(x), **kwargs).numpy()
    got = getattr(F, fn)(ember.tensor(x), **kwargs).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.oracle
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bilinear_matches_torch(bias, dtype):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Bilinear(3, 5, 4, bias=bias).to(getattr(torch, dtype))
    ours = nn.Bilinear(3, 5, 4, bias=bias).to(getattr(ember, dtype))
    assert repr(ours) == repr(theirs)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    ours.load_state_dict({k: ember.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 5))
    results = []
    for lib, module in ((torch, theirs), (ember, ours)):
        x1, x2 = (lib.tensor(v, dtype=getattr(lib, dtype), requires_grad=True) for v in (a, b))
        out = module(x1, x2)
        (out * out).sum().backward()
        results.append([out, x1.grad, x2.grad] + [p.grad for p in module.parameters()])
    rtol = 1e-5 if dtype == "float32" else 1e-11
    for e, t in zip(results[1], results[0]):
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("case", MODULES, ids=_id)
def test_module_gradients_match_finite_differences(case):
    name, args, kwargs = case
    module = getattr(nn, name)(*args, **kwargs).double()
    x = ember.tensor(_input(3) + 0.01).requires_grad_()  # off the kinks
    params = list(module.parameters())
    assert gradcheck(lambda x, *ps: module(x * 1.0), (x, *params))


def test_bilinear_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    tensors = [ember.tensor(rng.standard_normal(s)).requires_grad_()
               for s in ((3, 2), (3, 4), (5, 2, 4), (5,))]
    assert gradcheck(F.bilinear, tensors)


@pytest.mark.parametrize("case", MODULES, ids=_id)
def test_scripted_module_equals_eager(case):
    name, args, kwargs = case
    module = getattr(nn, name)(*args, **kwargs)

    def step(x):
        x = x.detach().requires_grad_()
        out = module(x * 1.0)
        out.sum().backward()
        return out, x.grad

    scripted = ember.script(step)
    for seed in range(3):
        x = ember.tensor(_input(seed).astype(np.float32))
        for got, want in zip(scripted(x), step(x)):
            np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                                       atol=1e-6)
    assert scripted.fallbacks == []


def test_celu_is_elu_of_x_over_alpha_scaled():
    x = ember.tensor(_input(5))
    np.testing.assert_allclose(F.celu(x, 2.0).numpy(), (2.0 * F.elu(x / 2.0)).numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(F.softsign(ember.tensor([-3.0, 0.0, 1.0])).numpy(),
                               [-0.75, 0.0, 0.5])


def test_bad_arguments_raise_torchs_errors():
    with pytest.raises(AssertionError, match=r"max_val \(1.0\) must be greater than min_val"):
        nn.Hardtanh(2.0, 1.0)
    with pytest.raises(ember.errors.EmberRuntimeError, match="Halving dimension must be even"):
        nn.GLU()(ember.randn(3, 5))
    with pytest.raises(ember.errors.EmberRuntimeError, match=r"input1 \(2, 4\), input2 "):
        nn.Bilinear(3, 5, 2)(ember.randn(2, 4), ember.randn(2, 5))
    with pytest.warns(FutureWarning, match="min_value"):
        assert nn.Hardtanh(min_value=-2.0).min_val == -2.0


def test_modules_are_exported_where_torch_has_them():
    from ember.nn.modules import activation

    for name in ("CELU", "Softsign", "Softmin", "Hardswish", "Hardsigmoid", "Mish", "GLU",
                 "LogSigmoid", "ELU", "SELU", "Softplus", "Hardtanh", "ReLU6", "PReLU"):
        assert getattr(activation, name) is getattr(nn, name)
    assert F.celu and F.softsign and F.bilinear
