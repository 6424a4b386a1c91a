"""The native window kernels (tiled max pooling, im2col, col2im) against plain numpy
references, and the pooling and convolution kernels that use them against their numpy paths."""

import ember
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


_GEOMETRIES = [((3, 3), (1, 1), (1, 1), (1, 1)),
               ((3, 3), (2, 2), (0, 0), (1, 1)),
               ((2, 3), (2, 1), (3, 0), (1, 2)),
               ((1, 1), (1, 1), (2, 2), (1, 1)),
               ((3, 2), (1, 3), (1, 2), (2, 1)),
               ((4, 4), (2, 2), (1, 1), (1, 1))]


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,dilation", _GEOMETRIES)
def test_max_pool_backward_over_any_windows_equals_the_tap_by_tap_rule(
        dtype, kernel, stride, padding, dilation, ceil_mode, monkeypatch):
    # overlapping, padded, dilated windows: the native pass adds each gradient at its
    # window's winner (first maximum, else first NaN); integer gradients make the sums exact
    # whatever order the two paths add in
    rng = np.random.default_rng(sum(kernel) + sum(stride))
    x = _input(rng, (2, 3, 9, 11), dtype)
    args = (kernel, stride, padding, ceil_mode, dilation)
    out = pool._max_pool2d(np, x, *args)
    g = rng.integers(-4, 5, out.shape).astype(dtype)
    native = pool._max_pool2d_backward(np, g, x, *args)
    monkeypatch.setattr(windows, "_broken", True)
    np.testing.assert_array_equal(native, pool._max_pool2d_backward(np, g, x, *args))
    assert native.shape == x.shape
    if all(p <= k // 2 for p, k in zip(padding, kernel)):  # PyTorch's bound on padding
        # every window then holds input elements: with finite inputs, no gradient is lost
        monkeypatch.setattr(windows, "_broken", False)
        finite = rng.standard_normal(x.shape).astype(dtype)
        assert pool._max_pool2d_backward(np, g, finite, *args).sum() == g.sum()


@pytest.mark.parametrize("native", [True, False])
def test_a_window_of_only_minus_inf_gives_its_gradient_to_its_first_input(native,
                                                                          monkeypatch):
    # ties go to a window's first tap; where that tap is the (-inf) padding PyTorch gives
    # the gradient to the window's first input element instead (torch 2.13's values)
    if not native:
        monkeypatch.setattr(windows, "_broken", True)
    x = np.full((1, 1, 4, 4), -np.inf, np.float32)
    g = np.ones((1, 1, 4, 4), np.float32)
    grad = pool._max_pool2d_backward(np, g, x, (3, 3), (1, 1), (1, 1), False)
    np.testing.assert_array_equal(grad[0, 0], [[4, 2, 2, 0], [2, 1, 1, 0], [2, 1, 1, 0],
                                               [0, 0, 0, 0]])
    x[0, 0, 2, 3] = 5.0  # the windows that hold it take it; the rest as before
    grad = pool._max_pool2d_backward(np, g, x, (3, 3), (1, 1), (1, 1), False)
    np.testing.assert_array_equal(grad[0, 0], [[4, 1, 1, 0], [2, 0, 0, 0], [2, 0, 0, 6],
                                               [0, 0, 0, 0]])


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,dilation", _GEOMETRIES)
def test_im2col_matches_the_padded_window_copy(dtype, kernel, stride, padding, dilation,
                                               per_image, monkeypatch):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 7, 9)).astype(dtype)
    native, hw = conv._columns(np, x, kernel, stride, padding, dilation, per_image)
    monkeypatch.setattr(windows, "_broken", True)  # numpy: a padded copy and a window view
    plain, plain_hw = conv._columns(np, x, kernel, stride, padding, dilation, per_image)
    assert hw == plain_hw
    np.testing.assert_array_equal(native, plain)
    # row (c, i, j) of image n holds x[n, c] read at tap (i, j): one row checked by hand
    n, c, i, j = 1, 3, kernel[0] - 1, kernel[1] - 1
    padded = np.pad(x[n, c], [(padding[0],) * 2, (padding[1],) * 2])
    r0, c0 = i * dilation[0], j * dilation[1]
    want = padded[r0::stride[0]][: hw[0], c0::stride[1]][:, : hw[1]].reshape(-1)
    row = (c * kernel[0] + i) * kernel[1] + j
    plane = hw[0] * hw[1]
    got = native[n, row] if per_image else native[row, n * plane : (n + 1) * plane]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,dilation", _GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(dtype, kernel, stride, padding, dilation, per_image):
    # <im2col(x), cols> == <x, col2im(cols)> for all x and cols: col2im adds every column
    # value back exactly where im2col read it, and drops the padding's
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 7, 9)).astype(dtype)
    cols, out_hw = conv._columns(np, x, kernel, stride, padding, dilation, per_image)
    other = rng.standard_normal(cols.shape).astype(dtype)
    back = windows.col2im(other, x.shape, kernel, stride, padding, dilation, out_hw, per_image)
    assert back.shape == x.shape
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(np.vdot(cols, other), np.vdot(x, back), rtol=tol)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,dilation", _GEOMETRIES)
def test_col2im_matches_the_tap_by_tap_sum(dtype, kernel, stride, padding, dilation, per_image,
                                           monkeypatch):
    rng = np.random.default_rng(5)
    x_shape = (2, 3, 8, 7)
    kh, kw = kernel
    out_hw = conv._out_hw(x_shape[2:], kernel, stride, padding, dilation)
    depth, plane = 3 * kh * kw, out_hw[0] * out_hw[1]
    shape = (2, depth, plane) if per_image else (depth, 2 * plane)
    cols = rng.standard_normal(shape).astype(dtype)
    args = (cols, x_shape, kernel, stride, padding, dilation, out_hw, per_image)
    native = windows.col2im(*args)
    monkeypatch.setattr(windows, "_broken", True)  # numpy: a padded sum, tap by tap
    plain = conv._col2im(np, *args)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(native, plain, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [2, 3])
def test_strided_rows_of_every_length_match_the_numpy_paths(dtype, stride, monkeypatch):
    """Rows read or written every 2nd or 3rd value go in vector steps of 8 and 4 outputs
    and one by one for the rest (codegen/llvm/columns.py): output rows of 1 to 21 values
    (each a kernel of its own), with and without padding cut from either end, equal the
    numpy paths'."""
    rng = np.random.default_rng(13)
    kernel = (3, 4)
    for out_width in (1, 5, 8, 12, 15, 21):
        for padding in (0, 1):
            width = stride * (out_width - 1) + kernel[1] - 2 * padding
            x = rng.standard_normal((2, 3, 6, width)).astype(dtype)
            geometry = (kernel, (1, stride), (1, padding), (1, 1))
            native, hw = conv._columns(np, x, *geometry, True)
            assert hw[1] == out_width
            cols = rng.standard_normal(native.shape).astype(dtype)
            back = windows.col2im(cols, x.shape, *geometry, hw, True)
            with monkeypatch.context() as m:
                m.setattr(windows, "_broken", True)
                plain, _ = conv._columns(np, x, *geometry, True)
                plain_back = conv._col2im(np, cols, x.shape, *geometry, hw, True)
            np.testing.assert_array_equal(native, plain)
            tol = 1e-6 if dtype == np.float32 else 1e-13
            np.testing.assert_allclose(back, plain_back, rtol=tol, atol=tol)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("groups,stride,padding,dilation", [(1, (1, 1), (1, 1), (1, 1)),
                                                            (2, (2, 1), (0, 2), (1, 2)),
                                                            (4, (1, 2), (2, 1), (2, 1)),
                                                            (1, (1, 1), (0, 0), (1, 1))])
def test_conv_kernels_match_their_numpy_paths(groups, stride, padding, dilation, per_image,
                                              monkeypatch):
    # per image or over the whole batch (the GEMMs' layout follows the thread budget)
    monkeypatch.setattr(conv, "_per_image", lambda xp, channels, plane: per_image)
    rng = np.random.default_rng(3)
    x_shape = (3, 8, 9, 10)
    w = rng.standard_normal((12, 8 // groups, 3, 3)).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    args = (stride, padding, dilation, groups)
    out = conv._conv2d(np, x, w, *args)
    g = rng.standard_normal(out.shape).astype(np.float32)
    native = (out, conv._conv2d_backward_input(np, g, w, x_shape, *args),
              conv._conv2d_backward_weight(np, x, g, w.shape, *args))
    monkeypatch.setattr(windows, "_broken", True)  # the numpy paths
    plain = (conv._conv2d(np, x, w, *args),
             conv._conv2d_backward_input(np, g, w, x_shape, *args),
             conv._conv2d_backward_weight(np, x, g, w.shape, *args))
    for a, b in zip(native, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, _reference_conv(x, w, *args), rtol=1e-4, atol=1e-4)
    # the two gradients are the convolution's adjoints: <conv(x, w), g> is linear in each
    product = np.vdot(out.astype(np.float64), g)
    np.testing.assert_allclose(np.vdot(x.astype(np.float64), native[1]), product, rtol=1e-4)
    np.testing.assert_allclose(np.vdot(w.astype(np.float64), native[2]), product, rtol=1e-4)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("kernel,groups", [((1, 1), 1), ((1, 1), 2), ((6, 5), 1), ((6, 5), 2)])
def test_convs_whose_images_are_their_own_columns_match_the_definition(kernel, groups,
                                                                       per_image, monkeypatch):
    # a 1x1 kernel at stride 1, or one covering the whole unpadded image: no im2col copy
    monkeypatch.setattr(conv, "_per_image", lambda xp, channels, plane: per_image)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 6, 5)).astype(np.float64)
    w = rng.standard_normal((6, 4 // groups, *kernel))
    args = ((1, 1), (0, 0), (1, 1), groups)
    out = conv._conv2d(np, x, w, *args)
    np.testing.assert_allclose(out, _reference_conv(x, w, *args), rtol=1e-12)
    g = rng.standard_normal(out.shape)
    product = np.vdot(out, g)
    dx = conv._conv2d_backward_input(np, g, w, x.shape, *args)
    dw = conv._conv2d_backward_weight(np, x, g, w.shape, *args)
    np.testing.assert_allclose([np.vdot(x, dx), np.vdot(w, dw)], [product, product], rtol=1e-12)
    dx[...] = 7.0  # a fresh array, not a view of g: writing it leaves g alone
    assert not (g == 7.0).any()


def _reference_conv(x, w, stride, padding, dilation, groups):
    """conv2d by its definition: every output is a sum over its window, group by group."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2])
    oh, ow = conv._out_hw((h, wd), (kh, kw), stride, padding, dilation)
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for y in range(oh):
        for xx in range(ow):
            rows = slice(y * stride[0], y * stride[0] + dilation[0] * (kh - 1) + 1, dilation[0])
            cols = slice(xx * stride[1], xx * stride[1] + dilation[1] * (kw - 1) + 1, dilation[1])
            for k in range(groups):
                window = padded[:, k * cg:(k + 1) * cg, rows, cols]
                out[:, k * og:(k + 1) * og, y, xx] = np.einsum(
                    "ncij,ocij->no", window, w[k * og:(k + 1) * og].astype(np.float64))
    return out


@pytest.mark.parametrize("x_shape,w_shape", [((0, 3, 6, 6), (4, 3, 3, 3)),
                                             ((2, 0, 6, 6), (4, 0, 3, 3)),
                                             ((2, 3, 6, 6), (0, 3, 3, 3))])
def test_conv_kernels_take_empty_batches_and_channels(x_shape, w_shape):
    x = np.ones(x_shape, np.float32)
    w = np.ones(w_shape, np.float32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    out = conv._conv2d(np, x, w, *args)
    assert out.shape == (x_shape[0], w_shape[0], 6, 6) and not out.any()
    g = np.ones(out.shape, np.float32)
    dx = conv._conv2d_backward_input(np, g, w, x_shape, *args)
    dw = conv._conv2d_backward_weight(np, x, g, w_shape, *args)
    assert dx.shape == x_shape and not dx.any()
    assert dw.shape == w_shape and not dw.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,n", [((512, 128), 512), ((7, 3, 5), 40), ((10,), 30),
                                     ((3, 1000), 200), ((4, 2), 0)])
def test_index_add_rows_adds_in_index_order_bit_for_bit(dtype, shape, n):
    """out[index[i]] += src[i], each row in turn (PyTorch's CPU order): bit for bit what a
    Python loop over the rows gives, repeated indices and a nonzero out included, on the pool
    (512 x 128) and on the calling thread alike."""
    rng = np.random.default_rng(n)
    out = rng.standard_normal(shape).astype(dtype)
    index = rng.integers(0, shape[0], n)
    src = rng.standard_normal((n, *shape[1:])).astype(dtype)
    want = out.copy()
    for i in range(n):
        want[index[i]] += src[i]
    assert windows.available(out, src)
    windows.index_add_rows(out, index, src)
    assert np.array_equal(out, want)


def test_eager_index_add_along_dim_0_is_the_native_row_add():
    """index_add along dim 0 (an embedding's backward) takes the native row add: its rounding
    is the row-by-row order's, where the sorted reduction would round the group sums."""
    import ember

    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 32)).astype(np.float32)
    index = rng.integers(0, 4, 300)
    src = rng.standard_normal((300, 32)).astype(np.float32)
    want = x.copy()
    for i in range(300):
        want[index[i]] += src[i]
    got = ember.tensor(x).index_add(0, ember.tensor(index), ember.tensor(src))
    assert np.array_equal(got.numpy(), want)


def _bits_of(a):
    return a.view(np.int32 if a.dtype == np.float32 else np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sides", ["aa", "as", "sa", "ss"])
@pytest.mark.parametrize("shape", [(64, 64, 8, 8), (5, 1031), (4096,)])
def test_native_select_copies_the_chosen_bits(dtype, sides, shape):
    rng = np.random.default_rng(len(shape))
    cond = rng.random(shape) < 0.5

    def side(kind):
        if kind == "s":
            return np.asarray(dtype(rng.standard_normal()))
        x = rng.standard_normal(shape).astype(dtype)
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 7)] = np.nan
        flat[rng.integers(0, flat.size, 7)] = -0.0
        flat[rng.integers(0, flat.size, 3)] = -np.inf
        return x

    a, b = side(sides[0]), side(sides[1])
    if sides == "ss":
        b = np.asarray(dtype(-0.0))
    out = windows.select(cond, a, b)
    assert out.dtype == dtype and out.shape == shape
    want = np.where(cond, a, b)
    np.testing.assert_array_equal(_bits_of(out), _bits_of(want))


def test_where_kernel_takes_the_native_pass_only_where_it_applies(monkeypatch):
    from ember.runtime.kernels import elementwise

    calls = []
    native = windows.select
    monkeypatch.setattr(windows, "select", lambda *a: calls.append(a) or native(*a))
    rng = np.random.default_rng(3)
    cond = rng.random((64, 128)) < 0.3
    g = rng.standard_normal((64, 128)).astype(np.float32)
    zero = np.float32(0.0)
    out = elementwise.select(np, cond, g, zero)
    assert len(calls) == 1
    np.testing.assert_array_equal(out, np.where(cond, g, zero))
    # broadcast sides, a small array, a strided condition, mixed dtypes: the numpy blend
    elementwise.select(np, cond, g[:1], zero)
    elementwise.select(np, cond[:4, :4], g[:4, :4], zero)
    elementwise.select(np, cond.T, g.T.copy(), zero)
    np.testing.assert_array_equal(elementwise.select(np, cond, g, np.float64(1.5)),
                                  np.where(cond, g, np.float32(1.5)))
    assert len(calls) == 1


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,kernel,stride,padding,dilation", [
    ((2, 3, 8, 7), *geometry) for geometry in _GEOMETRIES] + [
    ((3, 16, 16, 16), (4, 4), (2, 2), (1, 1), (1, 1)),  # a DCGAN's transposed convolutions
    ((2, 3, 32, 32), (4, 4), (2, 2), (1, 1), (1, 1)),
    ((2, 4, 4, 4), (4, 4), (1, 1), (0, 0), (1, 1)),
    ((2, 2, 5, 3), (5, 5), (1, 1), (3, 3), (1, 1)),  # padding wider than the rows
])
def test_col2im_and_im2col_by_rows_match_the_tap_by_tap_kernels_bit_for_bit(
        x_shape, kernel, stride, padding, dilation, dtype, per_image):
    from ember.codegen.llvm import columns

    rng = np.random.default_rng(17)
    out_hw = conv._out_hw(x_shape[2:], kernel, stride, padding, dilation)
    n, c = x_shape[:2]
    depth, plane = c * kernel[0] * kernel[1], out_hw[0] * out_hw[1]
    cols = rng.standard_normal((n, depth, plane) if per_image else (depth, n * plane))
    cols = cols.astype(dtype)
    cols.reshape(-1)[rng.integers(0, cols.size, 9)] = -0.0
    geometry = (*x_shape[1:], *kernel, *out_hw, *stride, *padding, *dilation)
    assert columns.rows_fit(geometry)
    results = []
    for kind, make_ir in (("col2im_rows", columns.col2im_rows_ir),
                          ("col2im", columns.col2im_ir)):
        x = np.full(x_shape, np.nan, dtype)  # every value written
        windows._columns_task(kind, make_ir, x_shape, cols, kernel, stride, padding, dilation,
                              out_hw, per_image, x, cols.size)
        results.append(x)
    rows, taps = results
    assert not np.isnan(rows).any()
    np.testing.assert_array_equal(rows.view(np.uint8), taps.view(np.uint8))
    # and im2col's row by row copies are the tap by tap kernel's, zeros of the padding too
    x = rng.standard_normal(x_shape).astype(dtype)
    x.reshape(-1)[rng.integers(0, x.size, 5)] = -0.0
    x.reshape(-1)[rng.integers(0, x.size, 3)] = np.nan
    # (the copies are the same at any stride; at stride 1 im2col_ir is the one taken)
    assert columns.im2col_rows_fit(geometry) == (stride[1] > 1)
    copies = []
    for kind, make_ir in (("im2col_rows", columns.im2col_rows_ir),
                          ("im2col", columns.im2col_ir)):
        out = np.full(cols.shape, 7.0, dtype)
        windows._columns_task(kind, make_ir, x_shape, out, kernel, stride, padding, dilation,
                              out_hw, per_image, x, out.size)
        copies.append(out)
    np.testing.assert_array_equal(copies[0].view(np.uint8), copies[1].view(np.uint8))


def test_col2im_of_large_planes_keeps_the_tap_by_tap_kernel(monkeypatch):
    from ember.codegen.llvm import columns

    assert not columns.rows_fit((3, 96, 96, 3, 3, 96, 96, 1, 1, 1, 1, 1, 1))
    assert not columns.rows_fit((3, 48, 48, 5, 5, 48, 48, 1, 1, 2, 2, 1, 1))  # 1200 sums
    kinds = []
    task = windows._columns_task
    monkeypatch.setattr(windows, "_columns_task", lambda kind, *a: kinds.append(kind)
                        or task(kind, *a))
    rng = np.random.default_rng(2)
    for hw in (8, 72):
        cols = rng.standard_normal((1, 9, hw * hw)).astype(np.float32)
        back = windows.col2im(cols, (1, 1, hw, hw), (3, 3), (1, 1), (1, 1), (1, 1), (hw, hw),
                              True)
        monkeypatch.setattr(windows, "_broken", True)
        np.testing.assert_allclose(back, conv._col2im(np, cols, (1, 1, hw, hw), (3, 3),
                                                      (1, 1), (1, 1), (1, 1), (hw, hw), True),
                                   rtol=1e-6, atol=1e-6)
        monkeypatch.setattr(windows, "_broken", False)
    assert kinds == ["col2im_rows", "col2im"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_kernels_and_select_give_the_same_bits_on_one_thread_and_two(dtype, monkeypatch):
    """Each pool row (a plane, a stretch of elements) is one thread's work in one order."""
    from ember.runtime import native, threads

    rng = np.random.default_rng(21)
    x = rng.standard_normal((16, 16, 16, 16)).astype(dtype)
    geometry = ((4, 4), (2, 2), (1, 1), (1, 1))
    cond = x > 0.3
    g = rng.standard_normal(x.shape).astype(dtype)

    def run():
        cols, hw = conv._columns(np, x, *geometry, True)
        back = windows.col2im(cols * 0.5, x.shape, *geometry, hw, True)
        return cols, back, windows.select(cond, g, np.asarray(dtype(0.0)))

    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    alone = run()
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    shared = run()
    if native._pool.started_threads() > 1:
        assert native._pool.threads() == 2  # the pool had a second thread to share with
    for a, b in zip(alone, shared):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sides", ["as", "sa"])
@pytest.mark.parametrize("shape, cond_shape", [
    ((32, 4, 16, 16), (1, 1, 16, 16)),  # makemore's causal mask over its scores
    ((6, 3, 128, 128), (128, 128)),
    ((7, 5, 33), (1, 5, 33)),
    ((3, 4099), (4099,)),
])
def test_native_select_reads_a_repeating_condition_again_for_each_row(dtype, sides, shape,
                                                                       cond_shape):
    rng = np.random.default_rng(len(shape))
    cond = rng.random(cond_shape) < 0.5
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 7)] = np.nan
    flat[rng.integers(0, flat.size, 7)] = -0.0
    one = np.asarray(dtype(-np.inf))
    a, b = (x, one) if sides == "as" else (one, x)
    out = windows.select(cond, a, b, shape)
    want = np.where(cond, a, b)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_array_equal(_bits_of(out), _bits_of(want))


def test_masked_fill_by_a_causal_mask_takes_the_repeating_pass(monkeypatch):
    calls = []
    native = windows.select
    monkeypatch.setattr(windows, "select",
                        lambda *a: calls.append(len(a) == 4) or native(*a))
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((8, 4, 16, 16))
    mask = np.tril(np.ones((16, 16))).reshape(1, 1, 16, 16) == 0
    x = ember.tensor(scores, requires_grad=True)
    y = x.masked_fill(ember.tensor(mask), float("-inf")).softmax(-1)
    g = rng.standard_normal(y.shape)
    y.backward(ember.tensor(g))
    want = np.where(mask, -np.inf, scores)
    want = np.exp(want - want.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12)
    dy = (g - (g * want).sum(-1, keepdims=True)) * want
    np.testing.assert_allclose(x.grad.numpy(), np.where(mask, 0.0, dy), rtol=1e-10,
                               atol=1e-12)
    assert calls.count(True) == 2, calls  # the forward's fill and the gradient's


def test_conditions_that_do_not_repeat_whole_keep_numpys_way(monkeypatch):
    from ember.runtime.kernels import elementwise

    calls = []
    monkeypatch.setattr(windows, "select", lambda *a: calls.append(a))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 4, 16, 16)).astype(np.float32)
    inf = np.asarray(np.float32(-np.inf))
    for cond in (rng.random((8, 1, 16, 16)) < 0.5,  # repeats along a middle dim
                 rng.random((1, 4, 1, 16)) < 0.5,
                 (rng.random((16, 16)) < 0.5).T):  # not contiguous
        np.testing.assert_array_equal(elementwise.select(np, cond, inf, x),
                                      np.where(cond, inf, x))
    assert calls == []
