"""The special functions (erfc, erfinv, lgamma, digamma, polygamma, and ember.special's
composites): the native kernels (inline IR in double precision) and the whole-array numpy
forms against Python's math module, identities and known values, IEEE special values and
poles as PyTorch gives them, float32 and float64, gradients (gradcheck in float64), and a
scripted function equal to eager."""

import math

import ember
import ember.special as special
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.runtime import windows
from ember.runtime.kernels import KERNELS
from ember.runtime.kernels import special as numpy_forms

EULER = 0.5772156649015329


@pytest.fixture(params=["native", "numpy"])
def path(request, monkeypatch):
    """Each check runs on the native kernels and again with native code switched off."""
    if request.param == "numpy":
        monkeypatch.setattr(windows, "_broken", True)
    else:
        assert windows.available()
    return request.param


def _ulps(got, want):
    """|got - want| in units of want's last place (subnormal results in the smallest one)."""
    want = np.asarray(want, dtype=np.float64)
    spacing = np.spacing(np.maximum(np.abs(want), np.finfo(np.float64).tiny))
    return np.abs(np.asarray(got, dtype=np.float64) - want) / spacing


def test_erfc_is_within_a_few_ulp_of_math_erfc(path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-6, 6, 4000), rng.uniform(-27, 27, 2000),
                        np.linspace(1.0, 3.5, 500), [0.0, -0.0, 1.5, 3.0, 26.5]])
    got = KERNELS["erfc"](np, x)
    want = np.array([math.erfc(v) for v in x])
    assert _ulps(got, want).max() <= 20
    x32 = x.astype(np.float32)
    got32 = KERNELS["erfc"](np, x32)
    assert got32.dtype == np.float32
    want32 = np.array([math.erfc(float(v)) for v in x32]).astype(np.float32)
    np.testing.assert_allclose(got32, want32, rtol=2e-7, atol=1e-44)


def test_erfc_special_values(path):
    x = np.array([np.inf, -np.inf, np.nan, 30.0, -30.0, 0.0])
    got = KERNELS["erfc"](np, x)
    np.testing.assert_array_equal(got[[0, 1, 3, 4, 5]], [0.0, 2.0, 0.0, 2.0, 1.0])
    assert np.isnan(got[2])


def test_erfinv_inverts_erf(path):
    rng = np.random.default_rng(1)
    y = np.concatenate([rng.uniform(-1, 1, 4000), 1 - 10.0 ** rng.uniform(-16, -1, 400),
                        -(1 - 10.0 ** rng.uniform(-16, -1, 400)), [0.5, -0.5, 1e-300]])
    x = KERNELS["erfinv"](np, y)
    # erf(x) == y to an ulp of y where erf is well conditioned; in the tails erfc(|x|)
    # equals 1 - |y|
    central = np.abs(y) <= 0.5
    back = np.array([math.erf(v) for v in x[central]])
    np.testing.assert_allclose(back, y[central], rtol=4e-16, atol=1e-300)
    tails = ~central
    q = 1.0 - np.abs(y[tails])
    got_q = np.array([math.erfc(v) for v in np.abs(x[tails])])
    np.testing.assert_allclose(got_q, q, rtol=1e-13)
    assert KERNELS["erfinv"](np, np.float32([0.25])).dtype == np.float32


def test_erfinv_special_values(path):
    got = KERNELS["erfinv"](np, np.array([1.0, -1.0, 0.0, -0.0, 1.5, -2.0, np.nan]))
    np.testing.assert_array_equal(got[:4], [np.inf, -np.inf, 0.0, -0.0])
    assert np.signbit(got[3])
    assert np.isnan(got[4:]).all()


def test_lgamma_equals_math_lgamma(path):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0.01, 40, 3000), rng.uniform(-40, 0.5, 3000),
                        10.0 ** rng.uniform(-300, 300, 500), [0.5, 1.0, 2.0, 3.0, 1e-300]])
    x = x[np.abs(x - np.round(x)) > 1e-9]
    got = KERNELS["lgamma"](np, x)
    want = np.array([math.lgamma(v) for v in x])
    # relative where lgamma is away from its zeros at 1 and 2, absolute near them
    np.testing.assert_allclose(got, want, rtol=2e-14, atol=2e-15)


def test_lgamma_poles_and_infinities(path):
    got = KERNELS["lgamma"](np, np.array([0.0, -1.0, -7.0, 1.0, 2.0, np.inf, -np.inf, np.nan]))
    np.testing.assert_array_equal(got[:7], [np.inf, np.inf, np.inf, 0.0, 0.0, np.inf, np.inf])
    assert np.isnan(got[7])


def test_digamma_identities_and_values(path):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0.05, 30, 2000), rng.uniform(-30, 0.5, 2000)])
    # (numpy's tan(pi x), the reference below, loses digits next to the integers)
    x = x[np.abs(x - np.round(x)) > 1e-3]
    psi = KERNELS["digamma"](np, x)
    # the recurrence psi(x + 1) = psi(x) + 1/x and the reflection
    np.testing.assert_allclose(KERNELS["digamma"](np, x + 1), psi + 1 / x, rtol=1e-12,
                               atol=1e-12)
    mirrored = KERNELS["digamma"](np, 1 - x)
    np.testing.assert_allclose(mirrored - psi, np.pi / np.tan(np.pi * x), rtol=1e-11,
                               atol=1e-11)
    known = KERNELS["digamma"](np, np.array([1.0, 0.5, 2.0, 1e6]))
    np.testing.assert_allclose(known, [-EULER, -EULER - 2 * math.log(2), 1 - EULER,
                                       math.log(1e6) - 0.5e-6 - 1 / 12e12], rtol=1e-15)
    # the derivative of lgamma, by central differences
    h = 1e-6
    probe = np.array([0.3, 1.7, 4.2, 11.5, -2.5])
    slope = (KERNELS["lgamma"](np, probe + h) - KERNELS["lgamma"](np, probe - h)) / (2 * h)
    np.testing.assert_allclose(KERNELS["digamma"](np, probe), slope, rtol=1e-7)


def test_digamma_special_values(path):
    got = KERNELS["digamma"](np, np.array([0.0, -1.0, -3.0, np.inf, -np.inf, np.nan]))
    assert got[0] == -np.inf and got[3] == np.inf
    assert np.isnan(got[[1, 2, 4, 5]]).all()


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_polygamma_is_the_series(n, path):
    """psi^(n)(x) = (-1)^(n+1) n! sum over k of 1/(x + k)^(n+1), summed to 10^6 terms with
    the integral tail; trigamma's known value pi^2/6 at 1."""
    x = np.array([0.3, 1.0, 2.5, 7.25, 40.0, -0.5, -3.3])
    got = KERNELS["polygamma"](np, x, n=n)
    k = np.arange(1_000_000, dtype=np.float64)
    want = []
    for v in x:
        terms = 1.0 / (v + k) ** (n + 1)
        tail = 1.0 / (n * (v + k[-1] + 0.5) ** n)
        want.append((-1) ** (n + 1) * math.factorial(n) * (terms.sum() + tail))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    if n == 1:
        assert abs(KERNELS["polygamma"](np, np.array([1.0]), n=1)[0] - math.pi ** 2 / 6) < 1e-15


def test_polygamma_zero_is_digamma_and_poles(path):
    x = np.array([0.7, 3.0])
    np.testing.assert_array_equal(KERNELS["polygamma"](np, x, n=0), KERNELS["digamma"](np, x))
    got = KERNELS["polygamma"](np, np.array([0.0, -2.0, np.inf]), n=1)
    np.testing.assert_array_equal(got, [np.inf, np.inf, 0.0])


def test_native_and_numpy_forms_agree():
    rng = np.random.default_rng(4)
    x = rng.uniform(-8, 8, 20000)
    y = rng.uniform(-1, 1, 20000)
    for name, data, form in (("erfc", x, numpy_forms.erfc), ("erfinv", y, numpy_forms.erfinv),
                             ("lgamma", x, numpy_forms.lgamma),
                             ("digamma", x, numpy_forms.digamma)):
        native = KERNELS[name](np, data)
        np.testing.assert_allclose(native, form(data), rtol=1e-13, atol=1e-13, err_msg=name)


def test_integers_compute_in_the_default_float_dtype():
    assert ember.lgamma(ember.tensor([1, 2, 3])).dtype == ember.float32
    np.testing.assert_allclose(ember.lgamma(ember.tensor([1, 2, 3, 4])).numpy(),
                               [0, 0, math.log(2), math.log(6)], atol=1e-6)


@pytest.mark.parametrize("fn", [
    ember.erfc, ember.lgamma, ember.digamma, ember.tan,
    lambda t: ember.erfinv(t * 0.4),
    lambda t: ember.polygamma(1, t), lambda t: ember.polygamma(2, t),
    lambda t: special.ndtr(t), lambda t: special.log_ndtr(t - 2),
    lambda t: special.ndtri(t * 0.1 + 0.5), lambda t: special.entr(t.abs() + 0.1),
    lambda t: special.xlog1py(t, t.abs()), lambda t: ember.sinc(t),
    lambda t: ember.logit(t * 0.2 + 0.5), lambda t: ember.mvlgamma(t.abs() + 2, p=3),
], ids=["erfc", "lgamma", "digamma", "tan", "erfinv", "trigamma", "polygamma2", "ndtr",
        "log_ndtr", "ndtri", "entr", "xlog1py", "sinc", "logit", "mvlgamma"])
def test_gradcheck(fn):
    x = ember.tensor(np.array([0.3, 1.7, -0.4, 2.2, 0.9]), requires_grad=True)
    assert gradcheck(fn, (x,))


def test_methods_and_in_place_forms():
    x = ember.tensor([0.3, 1.5, 4.0])
    np.testing.assert_array_equal(x.lgamma().numpy(), ember.lgamma(x).numpy())
    np.testing.assert_array_equal(x.polygamma(2).numpy(), ember.polygamma(2, x).numpy())
    y = x.clone()
    y.digamma_()
    np.testing.assert_array_equal(y.numpy(), ember.digamma(x).numpy())
    y = x.clone()
    y.polygamma_(1)
    np.testing.assert_array_equal(y.numpy(), ember.polygamma(1, x).numpy())
    z = ember.tensor([np.nan, np.inf, -np.inf, 2.0])
    z.nan_to_num_(nan=1.0, posinf=5.0, neginf=-5.0)
    np.testing.assert_array_equal(z.numpy(), [1.0, 5.0, -5.0, 2.0])
    assert special.gammaln is ember.lgamma and special.psi is ember.digamma


def test_bad_arguments_are_ember_errors():
    with pytest.raises(ember.EmberError, match="negative n"):
        ember.polygamma(-1, ember.tensor([1.0]))
    with pytest.raises(ember.EmberError, match="greater than"):
        ember.mvlgamma(ember.tensor([0.5]), p=3)
    with pytest.raises(ember.EmberError, match="must be Tensor"):
        special.ndtr([0.5])


def test_nan_to_num_defaults_and_gradient():
    x = ember.tensor(np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32),
                     requires_grad=True)
    out = ember.nan_to_num(x)
    big = float(np.finfo(np.float32).max)
    np.testing.assert_array_equal(out.detach().numpy(), np.float32([0.0, big, -big, 1.5]))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0, 1.0])
    ints = ember.tensor([1, 2])
    assert ember.nan_to_num(ints).dtype == ember.int64


def test_scripted_special_functions_equal_eager():
    def f(x):
        return ember.lgamma(x.abs() + 0.5) + ember.erfc(x) * ember.digamma(x.abs() + 1) \
            + ember.polygamma(1, x.abs() + 0.5) + ember.erfinv(x * 0.3)

    scripted = ember.script(f)
    rng = np.random.default_rng(5)
    for _ in range(2):
        x = ember.tensor(rng.standard_normal(64).astype(np.float32), requires_grad=True)
        want = f(x)
        (g_want,) = ember.autograd.grad(want.sum(), x)
        got = scripted(x)
        (g_got,) = ember.autograd.grad(got.sum(), x)
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_ndtr_keeps_its_digits_above_zero(dtype):
    """log(ndtr(x)) for x > 0 is log1p of minus the upper tail: -7.6e-24 at 10, not 0."""
    x = np.array([0.5, 2.0, 4.0, 6.0, 8.0, 10.0], dtype=dtype)
    want = np.array([math.log1p(-0.5 * math.erfc(float(v) / math.sqrt(2))) for v in x])
    got = special.log_ndtr(ember.tensor(x)).numpy()
    np.testing.assert_allclose(got, want.astype(dtype), rtol=2e-6 if dtype == np.float32
                               else 1e-13)


def test_edges_of_ndtri_lgamma_and_sinc():
    got = special.ndtri(ember.tensor([-1e-20, 1.5, 0.0, 1.0, 0.5], dtype=ember.float64)).numpy()
    assert np.isnan(got[:2]).all() and got[2] == -np.inf and got[3] == np.inf and got[4] == 0
    tiny = np.array([5e-324, -5e-324, 1e-310, 2.0 ** -70])
    for path_broken in (False, True):
        if path_broken:
            np.testing.assert_allclose(numpy_forms.lgamma(tiny), -np.log(np.abs(tiny)))
        else:
            np.testing.assert_allclose(KERNELS["lgamma"](np, tiny), -np.log(np.abs(tiny)))
    half = ember.sinc(ember.tensor([1.0, 2.0, 3.0, 0.5], dtype=ember.float16)).numpy()
    assert half.dtype == np.float16
    np.testing.assert_allclose(half[:3], 0.0, atol=1e-6)
    np.testing.assert_allclose(half[3], 2 / math.pi, rtol=1e-3)
