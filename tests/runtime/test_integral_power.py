"""pow of a float tensor to a whole-number power (x ** 3, x ** -3) runs apart from numpy's
float power (see runtime/kernels/elementwise.py _integral_power): its values against numpy's,
its special values, PyTorch's x * x * x for x ** 3, in place, and its gradient."""

import ember
import numpy as np
import pytest

SPECIAL = [-2.0, -0.0, 0.0, 1.5, np.inf, -np.inf, np.nan, -1e30, 3e-20, -1.0, 1e-45]
EXPONENTS = [3.0, 3, -3.0, 4.0, -4, 5, -1.0, -2.0, 0.0, 1.0, 7, 2.0, 0.5, 2.5]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("exponent", EXPONENTS)
def test_random_values_match_numpy(dtype, exponent):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(4099) * 3).astype(dtype)
    got = (ember.from_numpy(x) ** exponent).numpy()
    with np.errstate(all="ignore"):
        expected = np.power(x.astype(np.float64), float(exponent))
    assert got.dtype == np.dtype(dtype)
    finite = np.isfinite(expected) & (np.abs(expected) < np.finfo(dtype).max)
    # within 2 units in the last place of the dtype (subnormals included)
    ulp = np.spacing(np.abs(expected[finite]).astype(dtype)).astype(np.float64)
    error = np.abs(got[finite].astype(np.float64) - expected[finite])
    assert (error <= 2 * ulp).all(), f"{(error / ulp).max():.2f} ulp"
    with np.errstate(all="ignore"):
        numpy_own = np.power(x, np.dtype(dtype).type(exponent))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(numpy_own))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(numpy_own))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("exponent", EXPONENTS)
def test_special_values_as_numpy_gives_them(dtype, exponent):
    x = np.array(SPECIAL, dtype=dtype)
    got = (ember.from_numpy(x) ** exponent).numpy()
    with np.errstate(all="ignore"):
        expected = np.power(x, np.dtype(dtype).type(exponent))
    special = ~np.isfinite(expected) | (expected == 0) | ~np.isfinite(x) | (x == 0)
    np.testing.assert_array_equal(got[special], expected[special])
    np.testing.assert_array_equal(np.signbit(got[special]), np.signbit(expected[special]))


def test_cube_is_pytorchs_product():
    x = (np.random.default_rng(5).standard_normal(10000) * 10).astype(np.float32)
    np.testing.assert_array_equal((ember.from_numpy(x) ** 3).numpy(), x * x * x)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(ember.pow(ember.from_numpy(x), 3.0).numpy(),
                                  torch.pow(torch.from_numpy(x), 3.0).numpy())


@pytest.mark.parametrize("exponent", [3.0, -3.0, 4.0, 5])
def test_every_float16_is_numpys(exponent):
    # float16 powers round once from float32, as numpy's (and PyTorch's) do: (x*x)*x in
    # float16 rounds twice and differed on 5176 of the 63488 finite values
    bits = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    x = bits[np.isfinite(bits)]
    with np.errstate(all="ignore"):
        expected = np.power(x, np.float16(exponent))
    np.testing.assert_array_equal((ember.from_numpy(x) ** exponent).numpy(), expected)


@pytest.mark.parametrize("exponent", [3.0, -3.0, 4.0, 5])
def test_in_place(exponent):
    x = np.random.default_rng(6).standard_normal((8, 9)).astype(np.float32)
    t = ember.tensor(x)
    view = t[:, 1:5]
    view.pow_(exponent)
    expected = x.copy()
    with np.errstate(all="ignore"):
        expected[:, 1:5] = np.power(x[:, 1:5].astype(np.float64), exponent)
    np.testing.assert_allclose(t.numpy(), expected, rtol=3e-7)
    assert t._version[0] == 1


@pytest.mark.parametrize("exponent", [3.0, -3.0, 4.0, 5])
def test_gradient(exponent):
    x = ember.tensor(np.random.default_rng(7).uniform(0.5, 1.5, 6) * np.array([1, -1] * 3),
                     dtype=ember.float64, requires_grad=True)
    assert ember.autograd.gradcheck(lambda t: t ** exponent, (x,))
