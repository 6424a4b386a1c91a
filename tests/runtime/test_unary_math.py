"""erf's eager kernel on the CPU (and sigmoid's, on large arrays) is the compiled kernels' own
inline function mapped natively over the array: within its ulps of the reference, IEEE on the
special values, and bit for bit what a compiled graph computes."""

import math

import ember
import numpy as np
import pytest
from ember.runtime import windows
from ember.runtime.kernels import KERNELS

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 5.9, -5.9, 6.0, 30.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_erf_is_within_an_ulp_of_math_erf(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000) * 3, rng.uniform(-1e-3, 1e-3, 2000),
                        np.array(SPECIAL)]).astype(dtype)
    assert windows.available(x)
    out = KERNELS["erf"](np, x)
    assert out.dtype == dtype and out.shape == x.shape
    expected = np.array([math.erf(float(v)) for v in x]).astype(dtype)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    ulps = np.abs(out[finite].astype(np.float64) - expected[finite]) / np.spacing(
        np.abs(expected[finite])).astype(np.float64)
    assert ulps.max() <= 1.0
    np.testing.assert_array_equal(np.signbit(out[:2]), np.signbit(x[:2]))  # erf(-0.0) is -0.0


def test_erf_falls_back_for_arrays_native_code_cannot_take():
    for x in (np.linspace(-3, 3, 7, dtype=np.float16), np.linspace(-3, 3, 14)[::2],
              np.array(0.5)):
        expected = np.array([math.erf(float(v)) for v in np.ravel(x)]).reshape(np.shape(x))
        np.testing.assert_allclose(KERNELS["erf"](np, x), expected.astype(x.dtype),
                                   rtol=1e-3 if x.dtype == np.float16 else 1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eager_erf_equals_compiled_erf_bit_for_bit(dtype):
    x = ember.tensor(np.random.default_rng(1).standard_normal(4096) * 4, dtype=dtype)
    compiled = ember.script(lambda t: ember.erf(t * 1.0))
    np.testing.assert_array_equal(compiled(x).numpy(), ember.erf(x).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_without_native_code_is_whole_array_numpy_within_an_ulp(dtype, monkeypatch):
    # no llvmlite: the same polynomials in numpy (runtime/kernels/special.py); its speed is
    # checked with every other kernel's in test_no_python_loops.py
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(20000) * 3, rng.uniform(-1e-3, 1e-3, 2000),
                        10.0 ** rng.uniform(-300, 1, 2000), np.array(SPECIAL)]).astype(dtype)
    native = KERNELS["erf"](np, x)
    monkeypatch.setattr(windows, "_broken", True)
    out = KERNELS["erf"](np, x)
    strided = KERNELS["erf"](np, np.repeat(x, 2)[::2])
    monkeypatch.undo()
    assert out.dtype == dtype
    expected = np.array([math.erf(float(v)) for v in x]).astype(dtype)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))
    finite = np.isfinite(expected)
    for got in (out, native):
        ulps = np.abs(got[finite].astype(np.float64) - expected[finite]) / np.spacing(
            np.abs(expected[finite])).astype(np.float64)
        assert ulps.max() <= 1.0
    np.testing.assert_array_equal(strided, out)
    np.testing.assert_array_max_ulp(out, native, maxulp=2)  # each within 1 of the truth


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eager_sigmoid_of_a_large_array_is_the_compiled_one_within_its_ulps(dtype):
    """From a few thousand elements, eager sigmoid is the compiled kernels' own (one native
    pass, not numpy's three): within 2.5 ulp of the float64 formula (float32) or of the
    long-double one (float64), 0 and 1 at the tails, NaN through, and bit for bit what a
    compiled graph computes."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(20000) * 10, np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1000.0, -1000.0, 1e-30, -80.0])]).astype(dtype)
    out = KERNELS["sigmoid"](np, x)
    assert out.dtype == dtype
    wide = np.longdouble if dtype == np.float64 else np.float64
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-x.astype(wide)))
    finite = np.isfinite(x)
    ulps = np.abs(out[finite].astype(wide) - expected[finite]) / np.spacing(
        expected[finite].astype(dtype)).astype(wide)
    assert ulps.max() <= 2.5
    assert np.isnan(out[np.isnan(x)]).all()
    assert out[x == np.inf].tolist() == [1.0] and out[x == -np.inf].tolist() == [0.0]
    compiled = ember.script(lambda t: ember.sigmoid(t * 1.0))
    np.testing.assert_array_equal(compiled(ember.tensor(x)).numpy(), out)
    small = KERNELS["sigmoid"](np, x[:100])  # numpy's formula below the native size
    np.testing.assert_allclose(small, expected[:100].astype(dtype), rtol=4e-7 if dtype ==
                               np.float32 else 1e-15, atol=0)
