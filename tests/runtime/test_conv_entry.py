"""Eager convolutions through one-node native entries (runtime/conv_entry.py): conv2d, the
stride-1 input gradient as the convolution with the flipped weight, and the weight gradient as
a convolution of the images by the gradient's planes. Each path is taken where it should be,
equals the convolution's definition and the numpy paths, gives the same numbers on one thread
and on two, sees a weight changed in place, and passes gradcheck in float64."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.runtime import conv_entry, threads, windows
from ember.runtime.kernels import conv


def _reference_conv(x, w, stride, padding, dilation, groups):
    """conv2d by its definition in float64: every output is a sum over its window."""
    assert groups == 1
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2])
    oh, ow = conv._out_hw((h, wd), (kh, kw), stride, padding, dilation)
    out = np.zeros((n, o, oh, ow))
    for y in range(oh):
        for xx in range(ow):
            rows = slice(y * stride[0], y * stride[0] + dilation[0] * (kh - 1) + 1, dilation[0])
            cols = slice(xx * stride[1], xx * stride[1] + dilation[1] * (kw - 1) + 1, dilation[1])
            out[:, :, y, xx] = np.einsum("ncij,ocij->no", padded[:, :, rows, cols],
                                         w.astype(np.float64))
    return out

# x shape, w shape, stride, padding, dilation
FORWARD = {
    "dcgan-discriminator": ((3, 16, 16, 16), (32, 16, 4, 4), (2, 2), (1, 1), (1, 1)),
    "digits-3x3": ((4, 32, 8, 8), (64, 32, 3, 3), (1, 1), (1, 1), (1, 1)),
    "ragged-rows-and-positions": ((2, 5, 9, 7), (7, 5, 3, 2), (1, 2), (2, 0), (1, 1)),
    "dilated": ((2, 3, 11, 13), (9, 3, 3, 3), (2, 1), (2, 2), (2, 2)),
    # strided columns copied row by row (codegen/llvm/entry.py _im2col_rows), and rows too
    # wide for it (value by value)
    "first-layer-32x32": ((2, 3, 32, 32), (16, 3, 4, 4), (2, 2), (1, 1), (1, 1)),
    "stride-3-dilated-columns": ((2, 4, 10, 17), (5, 4, 3, 3), (2, 3), (1, 2), (1, 2)),
    "padding-past-the-taps": ((2, 2, 5, 6), (3, 2, 2, 3), (3, 2), (3, 4), (1, 1)),
    "rows-too-wide-for-vectors": ((2, 3, 9, 70), (4, 3, 3, 3), (1, 2), (1, 1), (1, 1)),
}
# stride-1 geometries whose input gradient is the flipped convolution (8 or more channels in)
FLIPPED = {
    "same-3x3": ((3, 8, 8, 8), (12, 8, 3, 3), (1, 1), (1, 1)),
    "valid-4x2": ((2, 9, 9, 7), (5, 9, 4, 2), (0, 0), (1, 1)),
    "padding-at-its-most": ((2, 8, 6, 6), (4, 8, 3, 3), (2, 2), (1, 1)),
    "dilated": ((2, 10, 12, 11), (6, 10, 3, 2), (1, 2), (2, 3)),
}
# weight-gradient geometries whose taps fill whole vectors (16 float32 lanes, 8 float64)
BY_CONVOLUTION = {
    "dcgan-4x4": ((4, 16, 16, 16), (32, 16, 4, 4), (2, 2), (1, 1), (1, 1)),
    "first-layer": ((2, 3, 32, 32), (16, 3, 4, 4), (2, 2), (1, 1), (1, 1)),
    "taps-past-the-kernel": ((3, 6, 7, 8), (5, 6, 4, 3), (1, 2), (0, 0), (1, 1)),
    "dilated-2x8": ((2, 4, 9, 20), (3, 4, 2, 8), (1, 1), (0, 1), (2, 1)),
}


def _arrays(rng, x_shape, w_shape, dtype):
    return (rng.standard_normal(x_shape).astype(dtype),
            rng.standard_normal(w_shape).astype(dtype))


def _gradient_case(seed, x_shape, w_shape, dtype, args):
    """x, w, their convolution by args and an output gradient g, drawn from one seed."""
    rng = np.random.default_rng(seed)
    x, w = _arrays(rng, x_shape, w_shape, dtype)
    out = _reference_conv(x, w, *args)
    return x, w, out, rng.standard_normal(out.shape).astype(dtype)


def _tolerance(dtype):
    return 2e-5 if dtype == np.float32 else 1e-12


def _numpy_paths(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(windows, "_broken", True)
        return fn()


@pytest.mark.parametrize("geometry", FORWARD.values(), ids=FORWARD.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_runs_as_an_entry_equal_to_the_definition(geometry, dtype, monkeypatch):
    x_shape, w_shape, stride, padding, dilation = geometry
    x, w = _arrays(np.random.default_rng(1), x_shape, w_shape, dtype)
    assert conv_entry.conv2d(x, w, stride, padding, dilation) is not None
    out = conv._conv2d(np, x, w, stride, padding, dilation, 1)
    assert out.dtype == dtype
    tol = _tolerance(dtype)
    np.testing.assert_allclose(out, _reference_conv(x, w, stride, padding, dilation, 1),
                               rtol=tol, atol=tol)
    plain = _numpy_paths(monkeypatch, lambda: conv._conv2d(np, x, w, stride, padding,
                                                           dilation, 1))
    np.testing.assert_allclose(out, plain, rtol=tol, atol=tol)


def test_strided_columns_go_row_by_row_where_the_rows_fit_vectors():
    from ember.codegen.entry import ConvCall
    from ember.codegen.llvm.entry import strided_rows_fit

    def call(x_shape, w_shape, stride, padding, dilation):
        out_hw = conv._out_hw(x_shape[2:], w_shape[2:], stride, padding, dilation)
        return ConvCall("float32", *x_shape, w_shape[0], tuple(w_shape[2:]), stride, padding,
                        dilation, out_hw, None, None, None, None)

    for name in ("dcgan-discriminator", "first-layer-32x32", "stride-3-dilated-columns"):
        assert strided_rows_fit(call(*FORWARD[name])), name
    assert not strided_rows_fit(call(*FORWARD["rows-too-wide-for-vectors"]))


@pytest.mark.parametrize("geometry", FLIPPED.values(), ids=FLIPPED.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stride_one_input_gradient_is_the_flipped_convolution(geometry, dtype, monkeypatch):
    x_shape, w_shape, padding, dilation = geometry
    args = ((1, 1), padding, dilation, 1)
    x, w, out, g = _gradient_case(2, x_shape, w_shape, dtype, args)
    assert conv._flipped_conv(g, w, x_shape, *args) is not None
    dx = conv._conv2d_backward_input(np, g, w, x_shape, *args)
    assert dx.shape == x_shape and dx.dtype == dtype
    tol = _tolerance(dtype)
    plain = _numpy_paths(monkeypatch,
                         lambda: conv._conv2d_backward_input(np, g, w, x_shape, *args))
    np.testing.assert_allclose(dx, plain, rtol=tol, atol=tol)
    # the adjoint of the convolution: <conv(x, w), g> = <x, dx>
    np.testing.assert_allclose(np.vdot(x.astype(np.float64), dx), np.vdot(out, g), rtol=1e-4)


@pytest.mark.parametrize("geometry", BY_CONVOLUTION.values(), ids=BY_CONVOLUTION.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_by_convolution_where_taps_fill_vectors(geometry, dtype, monkeypatch):
    x_shape, w_shape, stride, padding, dilation = geometry
    args = (stride, padding, dilation, 1)
    x, w, out, g = _gradient_case(3, x_shape, w_shape, dtype, args)
    assert conv_entry.conv2d_weight_gradient(x, g, w_shape, stride, padding,
                                             dilation) is not None
    dw = conv._conv2d_backward_weight(np, x, g, w_shape, *args)
    assert dw.shape == w_shape and dw.dtype == dtype
    tol = _tolerance(dtype)
    plain = _numpy_paths(monkeypatch,
                         lambda: conv._conv2d_backward_weight(np, x, g, w_shape, *args))
    np.testing.assert_allclose(dw, plain, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(np.vdot(w.astype(np.float64), dw), np.vdot(out, g), rtol=1e-4)


# weight-gradient geometries whose output channels fill whole vectors (16 float32 lanes,
# 8 float64): one product in register tiles by the batch's columns
BY_COLUMNS = {
    "digits-3x3": ((8, 32, 8, 8), (64, 32, 3, 3), (1, 1), (1, 1), (1, 1)),
    "digits-first-layer": ((8, 1, 8, 8), (32, 1, 3, 3), (1, 1), (1, 1), (1, 1)),
    "strided-dilated": ((3, 6, 11, 10), (16, 6, 3, 2), (2, 1), (1, 2), (2, 1)),
}


@pytest.mark.parametrize("geometry", BY_COLUMNS.values(), ids=BY_COLUMNS.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_by_columns_where_channels_fill_vectors(geometry, dtype, monkeypatch):
    x_shape, w_shape, stride, padding, dilation = geometry
    args = (stride, padding, dilation, 1)
    x, w, out, g = _gradient_case(5, x_shape, w_shape, dtype, args)
    taken = []
    original = conv_entry._weight_gradient_by_columns
    monkeypatch.setattr(conv_entry, "_weight_gradient_by_columns",
                        lambda *a: taken.append(1) or original(*a))
    dw = conv._conv2d_backward_weight(np, x, g, w_shape, *args)
    assert taken and dw.shape == w_shape and dw.dtype == dtype and dw.flags.c_contiguous
    tol = _tolerance(dtype)
    plain = _numpy_paths(monkeypatch,
                         lambda: conv._conv2d_backward_weight(np, x, g, w_shape, *args))
    np.testing.assert_allclose(dw, plain, rtol=tol, atol=tol * 10)
    # <w, dw> is <conv(x, w), g> for every w: the gradient's definition
    np.testing.assert_allclose(np.vdot(w.astype(np.float64), dw), np.vdot(out, g), rtol=1e-4)


def test_other_geometries_keep_their_gemms():
    """Taps that leave a vector part empty (3x3 in float32), a 1x1 kernel read as it lies,
    few input channels for the flipped convolution, and groups: the GEMM paths."""
    rng = np.random.default_rng(4)
    x, w = _arrays(rng, (2, 8, 8, 8), (6, 8, 3, 3), np.float32)
    g = rng.standard_normal((2, 6, 8, 8)).astype(np.float32)
    assert conv_entry.conv2d_weight_gradient(x, g, w.shape, (1, 1), (1, 1), (1, 1)) is None
    few = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    assert conv._flipped_conv(g, few, (2, 4, 8, 8), (1, 1), (1, 1), (1, 1), 1) is None
    assert conv._flipped_conv(g, w, x.shape, (1, 1), (1, 1), (1, 1), 2) is None
    calls = []
    original = conv_entry.conv2d
    try:
        conv_entry.conv2d = lambda *a: calls.append(a) or original(*a)
        pointwise = rng.standard_normal((6, 8, 1, 1)).astype(np.float32)
        out = conv._conv2d(np, x, pointwise, (1, 1), (0, 0), (1, 1), 1)
        grouped = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
        conv._conv2d(np, x, grouped, (1, 1), (1, 1), (1, 1), 2)
    finally:
        conv_entry.conv2d = original
    assert calls == []
    np.testing.assert_allclose(out, _reference_conv(x, pointwise, (1, 1), (0, 0), (1, 1), 1),
                               rtol=1e-5, atol=1e-5)


def test_switched_off_compilation_and_other_dtypes_take_the_numpy_paths(monkeypatch):
    rng = np.random.default_rng(5)
    x, w = _arrays(rng, (2, 3, 6, 6), (4, 3, 3, 3), np.float32)
    monkeypatch.setenv("EMBER_COMPILE", "0")
    assert conv_entry.conv2d(x, w, (1, 1), (1, 1), (1, 1)) is None
    monkeypatch.setenv("EMBER_COMPILE", "1")
    monkeypatch.setenv("EMBER_NATIVE_ENTRY", "0")
    assert conv_entry.conv2d(x, w, (1, 1), (1, 1), (1, 1)) is None
    monkeypatch.delenv("EMBER_NATIVE_ENTRY")
    assert conv_entry.conv2d(x.astype(np.float16), w.astype(np.float16), (1, 1), (1, 1),
                             (1, 1)) is None
    assert conv_entry.conv2d(x, w.astype(np.float64), (1, 1), (1, 1), (1, 1)) is None
    assert conv_entry.conv2d(x, w, (1, 1), (1, 1), (1, 1)) is not None


def test_a_weight_changed_in_place_is_read_again():
    """The entry keeps the last call's arrays and their pointers; an optimizer writes the
    weight in place between calls, and the next call must multiply by the new values."""
    rng = np.random.default_rng(6)
    x, w = _arrays(rng, (2, 8, 8, 8), (16, 8, 3, 3), np.float32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    first = conv._conv2d(np, x, w, *args)
    w *= -0.5
    x += 1.0
    second = conv._conv2d(np, x, w, *args)
    np.testing.assert_allclose(second, _reference_conv(x, w, *args), rtol=1e-4, atol=1e-4)
    assert not np.allclose(first, second)


def _all_three(dtype, seed=7):
    rng = np.random.default_rng(seed)
    x, w = _arrays(rng, (6, 16, 16, 16), (32, 16, 4, 4), dtype)
    args = ((2, 2), (1, 1), (1, 1), 1)
    g = rng.standard_normal((6, 32, 8, 8)).astype(dtype)
    x1, w1 = _arrays(rng, (6, 8, 9, 9), (12, 8, 3, 3), dtype)
    g1 = rng.standard_normal((6, 12, 9, 9)).astype(dtype)
    one = ((1, 1), (1, 1), (1, 1), 1)
    # the weight gradient as one product by columns, its weight rows shared with the pool
    x2 = rng.standard_normal((16, 32, 8, 8)).astype(dtype)
    g2 = rng.standard_normal((16, 16, 8, 8)).astype(dtype)
    return (conv._conv2d(np, x, w, *args),
            conv._conv2d_backward_weight(np, x, g, w.shape, *args),
            conv._conv2d_backward_input(np, g1, w1, x1.shape, *one),
            conv._conv2d_backward_weight(np, x2, g2, (16, 32, 3, 3), *one))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_thread_and_two_give_the_same_numbers(dtype, monkeypatch):
    """With a budget of two threads the entries share the images with the pool; every image
    is still one thread's sums in one order, so the numbers are the same bits."""
    from ember.runtime import native

    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    alone = _all_three(dtype)
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    shared = _all_three(dtype)
    if native._pool.started_threads() > 1:
        assert native._pool.threads() == 2  # the pool had a second thread to share with
    for a, b in zip(alone, shared):
        np.testing.assert_array_equal(a, b)


CASES = {
    "conv2d-4x4-stride-2": (lambda x, w: F.conv2d(x, w, stride=2, padding=1),
                            (2, 8, 8, 8), (4, 8, 4, 4)),
    "conv2d-3x3-same": (lambda x, w: F.conv2d(x, w, padding=1), (2, 8, 5, 5), (3, 8, 3, 3)),
    "conv2d-2x4-dilated": (lambda x, w: F.conv2d(x, w, padding=(1, 0), dilation=(2, 1)),
                           (2, 8, 6, 7), (3, 8, 2, 4)),
    "conv_transpose2d-stride-1": (lambda x, w: F.conv_transpose2d(x, w, padding=1),
                                  (2, 8, 5, 5), (8, 3, 4, 4)),
    "conv2d-3x3-8-channels-out": (lambda x, w: F.conv2d(x, w, padding=1), (2, 3, 5, 5),
                                  (8, 3, 3, 3)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_gradcheck_through_the_entries(case, monkeypatch):
    fn, x_shape, w_shape = case
    taken = []
    for name in ("conv2d", "conv2d_weight_gradient"):
        original = getattr(conv_entry, name)

        def spy(*args, original=original, name=name):
            out = original(*args)
            if out is not None:
                taken.append(name)
            return out

        monkeypatch.setattr(conv_entry, name, spy)
    rng = np.random.default_rng(8)
    x = ember.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = ember.tensor(rng.standard_normal(w_shape) * 0.5, requires_grad=True)
    assert gradcheck(fn, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert "conv2d" in taken
    if w_shape[-2] * w_shape[-1] in (8, 16) or w_shape[0] == 8:  # whole float64 vectors
        assert "conv2d_weight_gradient" in taken


STRIDED = {
    "dcgan-4x4-stride-2": ((3, 16, 16, 16), (32, 16, 4, 4), (2, 2), (1, 1), (1, 1)),
    "dilated-stride-3": ((2, 5, 17, 14), (7, 5, 3, 2), (3, 2), (1, 0), (2, 1)),
}


@pytest.mark.parametrize("geometry", STRIDED.values(), ids=STRIDED.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_input_gradient_columns_through_the_entry_on_two_threads(geometry, dtype,
                                                                        monkeypatch):
    """With a budget of two threads the other input gradients take their columns from a
    pointwise convolution in the entry, then col2im: equal to the numpy paths, and to the
    one-thread GEMM's to the rounding of the sums."""
    x_shape, w_shape, stride, padding, dilation = geometry
    args = (stride, padding, dilation, 1)
    x, w, out, g = _gradient_case(9, x_shape, w_shape, dtype, args)
    taken = []
    original = conv_entry.gradient_columns
    monkeypatch.setattr(conv_entry, "gradient_columns",
                        lambda *a: taken.append(1) or original(*a))
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    dx = conv._conv2d_backward_input(np, g, w, x_shape, *args)
    assert taken and dx.shape == x_shape and dx.dtype == dtype
    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    again = conv._conv2d_backward_input(np, g, w, x_shape, *args)
    assert len(taken) == 1  # one thread: the GEMM
    tol = _tolerance(dtype)
    np.testing.assert_allclose(dx, again, rtol=tol, atol=tol)
    plain = _numpy_paths(monkeypatch,
                         lambda: conv._conv2d_backward_input(np, g, w, x_shape, *args))
    np.testing.assert_allclose(dx, plain, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.vdot(x.astype(np.float64), dx), np.vdot(out, g), rtol=1e-4)


def test_an_eager_call_leaves_no_reference_to_its_arrays():
    """The entry keeps nothing of the caller's: the input is freed with the caller's last
    reference to it (a geometry's entry would otherwise hold its last input alive)."""
    import gc
    import weakref

    rng = np.random.default_rng(10)
    x, w = _arrays(rng, (2, 8, 8, 8), (16, 8, 3, 3), np.float32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    conv._conv2d(np, x, w, *args)
    gone = weakref.ref(x)
    del x
    gc.collect()
    assert gone() is None
