"""The native window kernels (tiled max pooling, col2im) against plain numpy references, and
the pooling and convolution kernels that use them against their numpy paths."""

import numpy as np
import pytest
from ember.runtime import windows
from ember.runtime.kernels import conv, pool


def _windows(x, kh, kw):
    *lead, h, w = x.shape
    v = x.reshape(*lead, h // kh, kh, w // kw, kw)
    v = np.moveaxis(v, -3, -2)  # (..., OH, OW, kh, kw)
    return v.reshape(*v.shape[:-2], kh * kw)


def _winner(flat):
    """PyTorch's winning tap per window: the first NaN, else the first maximum."""
    nan = np.isnan(flat)
    return np.where(nan.any(-1), nan.argmax(-1), np.nanargmax(np.where(nan, 0, flat), -1))


def _reference_backward(x, g, kh, kw):
    flat = _windows(x, kh, kw)
    win = _winner(flat)
    one_hot = np.arange(kh * kw) == win[..., None]
    grad = np.where(one_hot, g[..., None], 0).astype(x.dtype)
    *lead, oh, ow, _ = grad.shape
    grad = grad.reshape(*lead, oh, ow, kh, kw)
    return np.moveaxis(grad, -2, -3).reshape(x.shape)


def _input(rng, shape, dtype):
    x = np.maximum(rng.standard_normal(shape), 0).astype(dtype)  # ties: zeros after a relu
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 5)] = np.nan
    flat[rng.integers(0, flat.size, 5)] = -0.0
    flat[rng.integers(0, flat.size, 3)] = np.inf
    flat[rng.integers(0, flat.size, 3)] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel", [((2, 3, 8, 8), (2, 2)), ((4, 6, 9), (3, 3)),
                                          ((3, 2, 4, 6), (2, 3)), ((1, 1, 2, 8), (1, 2)),
                                          ((64, 64, 8, 8), (2, 2))])
def test_tiled_max_pool_matches_the_reference(dtype, shape, kernel, monkeypatch):
    rng = np.random.default_rng(sum(shape))
    x = _input(rng, shape, dtype)
    kh, kw = kernel
    out = windows.max_pool_tiled(x, kh, kw)
    flat = _windows(x, kh, kw)
    want = np.where(np.isnan(flat).any(-1), np.nan, np.max(np.where(np.isnan(flat), -np.inf,
                                                                      flat), -1))
    np.testing.assert_array_equal(out, want.astype(dtype))
    g = rng.standard_normal(out.shape).astype(dtype)
    grad = windows.max_pool_tiled(x, kh, kw, g)
    np.testing.assert_array_equal(grad, _reference_backward(x, g, kh, kw))
    # the kernels' own numpy paths agree bit for bit
    args = (kernel, kernel, (0, 0), False)
    monkeypatch.setattr(windows, "_broken", True)
    np.testing.assert_array_equal(pool._max_pool2d(np, x, *args), out)
    np.testing.assert_array_equal(pool._max_pool2d_backward(np, g, x, *args), grad)


def test_max_pool_keeps_negative_zero_and_numpy_paths_serve_the_rest():
    x = np.full((1, 1, 2, 2), -0.0, np.float32)
    assert np.signbit(windows.max_pool_tiled(x, 2, 2)).all()
    rng = np.random.default_rng(0)
    odd = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)  # not divisible: numpy path
    out = pool._max_pool2d(np, odd, (2, 2), (2, 2), (0, 0), False)
    np.testing.assert_array_equal(out, _windows(odd[..., :6, :8], 2, 2).max(-1))
    g = rng.standard_normal(out.shape).astype(np.float32)
    grad = pool._max_pool2d_backward(np, g, odd, (2, 2), (2, 2), (0, 0), False)
    np.testing.assert_array_equal(grad[..., :6, :8], _reference_backward(odd[..., :6, :8], g,
                                                                         2, 2))
    assert not grad[..., 6:, :].any() and not grad[..., :, 8:].any()
    view = rng.standard_normal((2, 3, 8, 16)).astype(np.float32)[..., ::2]  # strided
    assert not windows.available(view)
    np.testing.assert_array_equal(pool._max_pool2d(np, view, (2, 2), (2, 2), (0, 0), False),
                                  _windows(np.ascontiguousarray(view), 2, 2).max(-1))


def _col2im_reference(cols, padded_shape, stride, dilation):
    _, oh, ow, kh, kw, _ = cols.shape
    out = np.zeros(padded_shape, cols.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            out[:, r0: r0 + stride[0] * (oh - 1) + 1: stride[0],
                c0: c0 + stride[1] * (ow - 1) + 1: stride[1]] += cols[:, :, :, i, j]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,dilation", [((3, 3), (1, 1), (1, 1)),
                                                    ((3, 3), (2, 2), (1, 1)),
                                                    ((2, 3), (2, 1), (1, 2)),
                                                    ((1, 1), (1, 1), (1, 1)),
                                                    ((3, 2), (1, 3), (2, 1))])
def test_col2im_matches_the_tap_by_tap_sum(dtype, kernel, stride, dilation):
    rng = np.random.default_rng(7)
    n, c, oh, ow = 3, 5, 4, 6
    kh, kw = kernel
    hp = stride[0] * (oh - 1) + dilation[0] * (kh - 1) + 1 + 1
    wp = stride[1] * (ow - 1) + dilation[1] * (kw - 1) + 1
    cols = rng.standard_normal((n, oh, ow, kh, kw, c)).astype(dtype)
    got = windows.col2im(cols, (n, hp, wp, c), stride, dilation)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, _col2im_reference(cols, (n, hp, wp, c), stride, dilation),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("groups,stride,padding,dilation", [(1, (1, 1), (1, 1), (1, 1)),
                                                            (2, (2, 1), (0, 2), (1, 2)),
                                                            (4, (1, 2), (2, 1), (2, 1))])
def test_conv_backward_input_matches_its_numpy_col2im(groups, stride, padding, dilation,
                                                      monkeypatch):
    rng = np.random.default_rng(3)
    x_shape = (3, 8, 9, 10)
    w = rng.standard_normal((12, 8 // groups, 3, 3)).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    out = conv._conv2d(np, x, w, stride, padding, dilation, groups)
    g = rng.standard_normal(out.shape).astype(np.float32)
    native = conv._conv2d_backward_input(np, g, w, x_shape, stride, padding, dilation, groups)
    monkeypatch.setattr(windows, "_broken", True)  # the numpy path
    plain = conv._conv2d_backward_input(np, g, w, x_shape, stride, padding, dilation, groups)
    np.testing.assert_allclose(native, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,dilation", [((3, 3), (1, 1), (1, 1), (1, 1)),
                                                            ((3, 3), (2, 2), (0, 0), (1, 1)),
                                                            ((2, 3), (2, 1), (3, 0), (1, 2)),
                                                            ((1, 1), (1, 1), (2, 2), (1, 1)),
                                                            ((3, 2), (1, 3), (1, 2), (2, 1))])
def test_im2col_matches_the_padded_window_copy(dtype, kernel, stride, padding, dilation,
                                               monkeypatch):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 7, 9)).astype(dtype)
    native, hw = conv._columns(np, x, kernel, stride, padding, dilation)
    monkeypatch.setattr(windows, "_broken", True)  # numpy: a padded copy and a window view
    plain, plain_hw = conv._columns(np, x, kernel, stride, padding, dilation)
    assert hw == plain_hw
    np.testing.assert_array_equal(native, plain)
