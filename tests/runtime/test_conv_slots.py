"""Convolutions whose columns are too large for a thread's stack (codegen/llvm/entry.py
STACK_COLUMNS_MAX) share their images with the pool all the same: the arena holds one slot of
columns per thread (ConvCall.slots), and each part of the batch makes its columns in its own
slot. The im2col products, the Winograd products and a fused epilogue are checked against
the convolution's definition and the step-by-step program, on one thread and on two."""

import ember
import numpy as np
import pytest
from ember import nn
from ember.codegen.entry import ConvCall, ImageChain
from ember.codegen.llvm import entry
from ember.ir.specialize import specialize
from ember.runtime import conv_entry, graph_entry, threads
from ember.runtime.graph_entry import NativeGraph, build_entry_program
from ember.runtime.kernels import conv
from ember.runtime.program import Program


def _convs(native):
    found = []
    for call in native.plan.calls:
        inside = call.calls if isinstance(call, ImageChain) else (call,)
        found += [c for c in inside if isinstance(c, ConvCall)]
    return found


def _reference(x, w, stride, padding, dilation):
    """conv2d by its definition in float64: each output a sum over its window."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2])
    oh, ow = conv._out_hw((h, wd), (kh, kw), stride, padding, dilation)
    out = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            rows = padded[:, :, i * dilation[0]: i * dilation[0] + stride[0] * (oh - 1) + 1:
                          stride[0],
                          j * dilation[1]: j * dilation[1] + stride[1] * (ow - 1) + 1: stride[1]]
            out += np.einsum("nchw,oc->nohw", rows, w[:, :, i, j].astype(np.float64))
    return out


# x shape, w shape, stride, padding, dilation: each image's columns over 512 KiB
GEOMETRIES = {
    "3x3-same-40x40": ((5, 16, 40, 40), (24, 16, 3, 3), (1, 1), (1, 1), (1, 1)),
    "strided-dilated": ((3, 12, 60, 44), (20, 12, 3, 3), (2, 1), (2, 1), (2, 2)),
    "ragged-plane": ((4, 9, 37, 41), (7, 9, 5, 3), (1, 1), (2, 1), (1, 1)),
}


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_columns_share_the_images_in_slots(geometry, dtype, monkeypatch):
    x_shape, w_shape, stride, padding, dilation = geometry
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    want = _reference(x, w, stride, padding, dilation)
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    results = []
    for budget in (1, 2):
        monkeypatch.setattr(conv_entry, "_programs", {})
        monkeypatch.setattr(graph_entry, "limit", lambda budget=budget: budget)
        monkeypatch.setattr(threads._budget, "now", lambda budget=budget: budget)
        got = conv_entry.conv2d(x, w, stride, padding, dilation)
        (program,) = conv_entry._programs.values()
        (call,) = _convs(program)
        assert entry.column_bytes(call) > entry.STACK_COLUMNS_MAX
        assert call.slots == (0 if budget == 1 else 2)
        assert entry.shares_images(call) == (budget == 2) and program.parallel == (budget == 2)
        np.testing.assert_allclose(got, want, rtol=tolerance,
                                   atol=tolerance * float(np.abs(want).max()))
        results.append(got)
    # each image is one thread's sums in one order either way: the same bits
    np.testing.assert_array_equal(results[0], results[1])


def test_slots_take_more_images_than_threads_and_fewer(monkeypatch):
    """Three slots over seven images (parts of 2, 2 and 3), and two images over the slots of a
    budget of four (one slot each)."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, 12, 3, 3)).astype(np.float32)
    for n, budget, slots in ((7, 3, 3), (2, 4, 2)):
        monkeypatch.setattr(conv_entry, "_programs", {})
        monkeypatch.setattr(graph_entry, "limit", lambda budget=budget: budget)
        monkeypatch.setattr(threads._budget, "now", lambda: 2)
        x = rng.standard_normal((n, 12, 48, 48)).astype(np.float32)
        got = conv_entry.conv2d(x, w, (1, 1), (1, 1), (1, 1))
        (call,) = _convs(next(iter(conv_entry._programs.values())))
        assert call.slots == slots
        want = _reference(x, w, (1, 1), (1, 1), (1, 1))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * float(np.abs(want).max()))


class _ConvNormRelu(nn.Module):
    def __init__(self, c, o):
        super().__init__()
        self.conv = nn.Conv2d(c, o, 3, padding=1)
        self.norm = nn.BatchNorm2d(o)

    def forward(self, x):
        return ember.relu(self.norm(self.conv(x)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_scratch_in_slots_with_an_epilogue(tmp_path, monkeypatch, dtype):
    """72 channels in and out over 16x16 planes: the Winograd scratch of one image is over
    512 KiB; the batch's parts each fill their slot, and batch norm and relu finish the
    products in registers."""
    monkeypatch.setattr(graph_entry, "limit", lambda: 2)
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    ember.manual_seed(11)
    model = _ConvNormRelu(72, 72)
    model.norm.running_mean.data = ember.tensor(np.linspace(-0.5, 0.5, 72).astype(np.float32))
    model.norm.running_var.data = ember.tensor(np.linspace(0.5, 2.0, 72).astype(np.float32))
    if dtype == np.float64:
        model = model.double()
    rng = np.random.default_rng(11)
    path = tmp_path / "slots.ember"
    ember.export(model.eval(), (ember.tensor(rng.standard_normal((2, 72, 16, 16)).astype(dtype)),),
                 path, dynamic_dims={0: {0: "batch"}})
    loaded = ember.runtime.load(str(path))
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for batch in (2, 5):
        native = build_entry_program(specialize(loaded.graph, {"batch": batch}), "slots")
        assert isinstance(native, NativeGraph), native.describe()
        (call,) = _convs(native)
        assert call.winograd and call.epilogue is not None and call.slots == 2
        x = rng.standard_normal((batch, 72, 16, 16)).astype(dtype)
        want = Program(native.graph)(np, [x])[0]
        for _ in range(3):
            (got,) = native(np, [x])
            np.testing.assert_allclose(got, want, rtol=tolerance,
                                       atol=tolerance * max(1.0, float(np.abs(want).max())))


def _weight_reference(x, g, weight_shape, stride, padding, dilation):
    """The weight gradient by its definition in float64: each tap's sum over the batch."""
    o, c, kh, kw = weight_shape
    oh, ow = g.shape[2:]
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2])
    gw = np.zeros(weight_shape)
    for i in range(kh):
        for j in range(kw):
            rows = padded[:, :, i * dilation[0]: i * dilation[0] + stride[0] * (oh - 1) + 1:
                          stride[0],
                          j * dilation[1]: j * dilation[1] + stride[1] * (ow - 1) + 1: stride[1]]
            gw[:, :, i, j] = np.einsum("nchw,nohw->oc", rows, g.astype(np.float64))
    return gw


# x shape, weight shape, stride, padding, dilation: at least 256 output positions per image
WEIGHT_GEOMETRIES = {
    "resnet-3x3-32x32": ((4, 16, 32, 32), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1)),
    "odd-channels-ragged-plane": ((3, 5, 19, 23), (7, 5, 3, 3), (1, 1), (1, 1), (1, 1)),
    "strided-dilated": ((5, 6, 41, 37), (9, 6, 3, 2), (2, 1), (2, 0), (2, 3)),
    "5x5-valid": ((2, 3, 24, 26), (4, 3, 5, 5), (1, 1), (0, 0), (1, 1)),
}


def _weight_calls(program):
    from ember.codegen.entry import ConvWeightCall

    return [c for c in program.plan.calls if isinstance(c, ConvWeightCall)]


@pytest.mark.parametrize("geometry", WEIGHT_GEOMETRIES.values(), ids=WEIGHT_GEOMETRIES.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_sums_the_images_in_parts(geometry, dtype, monkeypatch):
    """conv2d_backward_weight's eager kernel runs the entry's ConvWeightCall: one part of the
    images per slot, each image's columns and GEMM, the slots' sums added after; equal to the
    definition on one thread (one part) and on two."""
    x_shape, w_shape, stride, padding, dilation = geometry
    rng = np.random.default_rng(sum(w_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    oh, ow = conv._out_hw(x_shape[2:], w_shape[2:], stride, padding, dilation)
    g = rng.standard_normal((x_shape[0], w_shape[0], oh, ow)).astype(dtype)
    want = _weight_reference(x, g, w_shape, stride, padding, dilation)
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for budget in (1, 2):
        monkeypatch.setattr(conv_entry, "_programs", {})
        monkeypatch.setattr(graph_entry, "limit", lambda budget=budget: budget)
        monkeypatch.setattr(threads._budget, "now", lambda budget=budget: budget)
        got = conv._conv2d_backward_weight(np, x, g, w_shape, stride, padding, dilation, 1)
        (program,) = conv_entry._programs.values()
        (call,) = _weight_calls(program)
        assert call.conv.slots == (0 if budget == 1 else 2)
        assert got.shape == w_shape and got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tolerance,
                                   atol=tolerance * float(np.abs(want).max()))


def test_small_planes_keep_the_batch_gemm(monkeypatch):
    """Under 256 positions per image the entry refuses the weight gradient (one GEMM per
    image would be short): the eager kernel's GEMM over the batch gives it."""
    monkeypatch.setattr(conv_entry, "_programs", {})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8, 15, 15)).astype(np.float32)
    g = rng.standard_normal((4, 6, 15, 15)).astype(np.float32)
    assert conv_entry._weight_gradient_by_images(x, g, (6, 8, 3, 3), (1, 1), (1, 1),
                                                 (1, 1)) is None
    got = conv._conv2d_backward_weight(np, x, g, (6, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(got, _weight_reference(x, g, (6, 8, 3, 3), (1, 1), (1, 1),
                                                      (1, 1)), rtol=2e-5, atol=2e-4)


def test_gradcheck_of_the_weight_through_the_parts(monkeypatch):
    from ember.autograd import gradcheck

    monkeypatch.setattr(graph_entry, "limit", lambda: 2)
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    taken = []
    original = conv_entry._weight_gradient_by_images

    def spy(*args):
        out = original(*args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(conv_entry, "_weight_gradient_by_images", spy)
    rng = np.random.default_rng(5)
    x = ember.tensor(rng.standard_normal((3, 2, 16, 16)))
    w = ember.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    assert gradcheck(lambda w: ember.nn.functional.conv2d(x, w, padding=1), (w,))
    assert taken and all(taken)
