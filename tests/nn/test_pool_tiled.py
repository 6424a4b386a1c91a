"""Pooling whose windows tile the plane (stride == kernel, no padding, no ceil_mode overhang)
sums each window as a block of a reshape (runtime/kernels/pool.py _tiled), and global
adaptive average pooling is one mean: the same numbers as the windows' tap-by-tap sums, for
planes the windows cover exactly and planes with rows and columns past the last window."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.runtime.kernels import pool


def _by_taps(x, kernel, divisor=None):
    """avg_pool2d with stride == kernel by its definition: each window's mean, in float64."""
    kh, kw = kernel
    oh, ow = x.shape[-2] // kh, x.shape[-1] // kw
    out = np.zeros((*x.shape[:-2], oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = x[..., i * kh:(i + 1) * kh, j * kw:(j + 1) * kw].astype(np.float64)
            out[..., i, j] = window.sum(axis=(-2, -1)) / (divisor or kh * kw)
    return out


CASES = {
    "global-32x32": ((2, 3, 32, 32), (32, 32)),
    "2x2-exact": ((2, 4, 8, 6), (2, 2)),
    "3x3-rows-and-columns-left-over": ((2, 3, 11, 10), (3, 3)),
    "2x4-unequal": ((1, 2, 9, 13), (2, 4)),
    "unbatched": ((5, 7, 7), (7, 7)),
}


@pytest.mark.parametrize("shape,kernel", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("divisor", [None, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_average_equals_the_windows_means(shape, kernel, divisor, dtype):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    assert pool._tiled(kernel, kernel, (0, 0), (0, 0))
    got = pool._avg_pool2d(np, x, kernel, kernel, (0, 0), False, True, divisor)
    assert got.dtype == dtype
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, _by_taps(x, kernel, divisor), rtol=tolerance,
                               atol=tolerance)
    g = rng.standard_normal(got.shape).astype(dtype)
    grad = pool._avg_pool2d_backward(np, g, shape, kernel, kernel, (0, 0), False, True, divisor)
    kh, kw = kernel
    oh, ow = got.shape[-2:]
    want = np.zeros(shape)
    want[..., : oh * kh, : ow * kw] = np.repeat(np.repeat(g, kh, -2), kw, -1) / (divisor or kh * kw)
    assert grad.shape == shape and grad.dtype == dtype and grad.flags.c_contiguous
    np.testing.assert_allclose(grad, want, rtol=tolerance, atol=tolerance)


def test_padding_and_ceil_mode_keep_the_taps():
    assert not pool._tiled((2, 2), (2, 2), (1, 0), (0, 0))
    assert not pool._tiled((2, 2), (2, 2), (0, 0), (1, 0))  # ceil_mode's overhang
    assert not pool._tiled((3, 3), (2, 2), (0, 0), (0, 0))


def test_gradcheck_of_tiled_and_global_pooling():
    rng = np.random.default_rng(1)
    x = ember.tensor(rng.standard_normal((2, 2, 7, 9)), requires_grad=True)
    assert gradcheck(lambda x: F.avg_pool2d(x, 3), (x,))
    assert gradcheck(lambda x: F.avg_pool2d(x, (7, 9)), (x,))
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, 1), (x,))


@pytest.mark.parametrize("size", [1, (1, 1), (None, 1), (1, None)])
def test_global_adaptive_average_is_the_planes_mean(size):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 6))
    got = F.adaptive_avg_pool2d(ember.tensor(x), size).numpy()
    want = x
    if size in (1, (1, 1), (1, None)):
        want = want.mean(axis=-2, keepdims=True)
    if size in (1, (1, 1), (None, 1)):
        want = want.mean(axis=-1, keepdims=True)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
