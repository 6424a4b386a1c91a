"""What the native entry runs beyond plain convolutions and attention (runtime/graph_entry.py):
grouped and depthwise convolutions, convolutions reading an NHWC tensor permuted to NCHW in
place (no copy), attention under a bool or float mask, and batch-1 calls from many threads
at once; each equal to the eager kernels."""

import threading

import ember
import numpy as np
import pytest
from ember import nn
from ember.codegen.entry import AttentionCall, ConvCall, CopyCall, StridedConvCall
from ember.ir.specialize import specialize
from ember.runtime.graph_entry import NativeGraph, build_entry_program
from ember.runtime.program import Program


def _load(model, examples, path, dynamic=True):
    dims = {i: {0: "batch"} for i in range(len(examples))} if dynamic else None
    ember.export(model.eval(), tuple(ember.tensor(a) for a in examples), path, dynamic_dims=dims)
    return ember.runtime.load(str(path))


def _programs(loaded, batch=None):
    graph = loaded.graph if batch is None else specialize(loaded.graph, {"batch": batch})
    native = build_entry_program(graph, "t")
    assert isinstance(native, NativeGraph), native.describe()
    return native, Program(graph)


def _calls(program, kind):
    return [c for c in program.plan.calls if isinstance(c, kind)]


def _same(native, eager, inputs, rtol=1e-5, atol=1e-5):
    got, want = native(np, inputs), eager(np, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got


# -- grouped and depthwise convolutions ------------------------------------------------------


class _MobileBlock(nn.Module):
    """MobileNet's block: depthwise 3x3 (stride 2, padding 1), pointwise 1x1, then a grouped
    3x3 and a depthwise conv with a channel multiplier and dilation."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c, bias=False)
        self.pw = nn.Conv2d(c, 2 * c, 1)
        self.grouped = nn.Conv2d(2 * c, 3 * c, (3, 2), stride=(1, 2), padding=(2, 1),
                                 groups=c // 2)
        self.multiplier = nn.Conv2d(3 * c, 6 * c, 3, padding=2, dilation=2, groups=3 * c)

    def forward(self, x):
        x = ember.relu(self.pw(ember.relu(self.dw(x))))
        return self.multiplier(self.grouped(x))


@pytest.mark.parametrize("c,hw,dtype", [(8, (13, 11), np.float32), (4, (7, 9), np.float64),
                                        (32, (16, 16), np.float32)],
                         ids=["odd-sizes", "float64", "shared-planes"])
def test_depthwise_and_grouped_convolutions_equal_the_eager_kernels(tmp_path, c, hw, dtype):
    ember.manual_seed(20)
    model = _MobileBlock(c)
    if dtype == np.float64:
        model = model.double()
    x = np.random.default_rng(20).standard_normal((2, c, *hw)).astype(dtype)
    loaded = _load(model, [x], tmp_path / "m.ember")
    tol = 1e-12 if dtype == np.float64 else 1e-4
    for batch in (1, 3):
        native, eager = _programs(loaded, batch)
        convs = _calls(native, StridedConvCall)
        assert [c.groups for c in convs] == [c_ for c_ in (c, c // 2, 3 * c)]
        assert [c.depthwise for c in convs] == [True, False, True]
        x = np.random.default_rng(batch).standard_normal((batch, c, *hw)).astype(dtype)
        _same(native, eager, [x], tol, tol)
        with ember.no_grad():
            want = model(ember.tensor(x)).numpy()
        np.testing.assert_allclose(loaded(x), want, rtol=tol, atol=tol)


# -- channels last: an NHWC tensor permuted to NCHW ------------------------------------------


class _ChannelsLast(nn.Module):
    """A model over NHWC images, as one converted from a channels-last framework reads:
    each conv's input permuted to NCHW and its output back."""

    def __init__(self, c):
        super().__init__()
        self.a = nn.Conv2d(c, 6, 3, padding=1)
        self.pointwise = nn.Conv2d(c, 6, 1, bias=False)
        self.dw = nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=6)
        self.g = nn.Conv2d(12, 8, 1, groups=2)

    def forward(self, x):
        nchw = x.permute(0, 3, 1, 2)
        y = ember.relu(self.a(nchw) + self.pointwise(nchw)).permute(0, 2, 3, 1)
        y = self.dw(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.g(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def test_convolutions_read_an_nhwc_input_in_place(tmp_path):
    ember.manual_seed(21)
    model = _ChannelsLast(3)
    x = np.random.default_rng(21).standard_normal((2, 9, 7, 3)).astype(np.float32)
    loaded = _load(model, [x], tmp_path / "nhwc.ember")
    for batch in (1, 4):
        native, eager = _programs(loaded, batch)
        # no conv reads a copy: the input's permute is read through its strides, and the
        # only copy is the NHWC output's
        (copy,) = _calls(native, CopyCall)
        assert copy.dst.arg == 1
        assert not _calls(native, ConvCall)
        first, pointwise = _calls(native, StridedConvCall)[:2]
        assert first.x_strides == pointwise.x_strides == (9 * 7 * 3, 1, 7 * 3, 3)
        assert first.x.arg == pointwise.x.arg == 0
        assert pointwise.cols is None  # the channels of each position are the GEMM's B
        x = np.random.default_rng(batch).standard_normal((batch, 9, 7, 3)).astype(np.float32)
        _same(native, eager, [x], 1e-4, 1e-4)
        with ember.no_grad():
            want = model(ember.tensor(x)).numpy()
        np.testing.assert_allclose(loaded(x), want, rtol=1e-4, atol=1e-4)


def test_a_channels_last_array_is_read_in_place_by_the_first_conv(tmp_path):
    """An NCHW-shaped array whose bytes lie NHWC (what a channels_last torch tensor's .numpy()
    gives) runs through a program that reads those bytes where they lie, not a copy."""
    ember.manual_seed(24)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, groups=8))
    x = np.random.default_rng(24).standard_normal((2, 3, 9, 7)).astype(np.float32)
    loaded = _load(model, [x], tmp_path / "cl.ember")
    native, eager = _programs(loaded, 3)
    x = np.random.default_rng(25).standard_normal((3, 3, 9, 7)).astype(np.float32)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not nhwc.flags.c_contiguous
    (got,) = native(np, [nhwc])
    np.testing.assert_allclose(got, eager(np, [x])[0], rtol=1e-5, atol=1e-5)
    (variant,) = native._channels_last.values()
    assert isinstance(variant, NativeGraph) and not _calls(variant, CopyCall)
    first = _calls(variant, StridedConvCall)[0]
    assert first.x.arg == 0 and first.x_strides == (9 * 7 * 3, 1, 7 * 3, 3)
    np.testing.assert_allclose(loaded(nhwc), loaded(x), rtol=1e-5, atol=1e-5)


# -- batch-1 calls from many threads at once ------------------------------------------------


@pytest.mark.parametrize("budget", [1, 2], ids=["budget-1", "budget-2"])
def test_batch_1_calls_from_many_threads_at_once_each_get_their_own_results(tmp_path,
                                                                           monkeypatch, budget):
    """Callers share one loaded Program (their own arenas; with a budget of 2 the depthwise
    convs' planes go to the native pool from several callers at once)."""
    from ember.runtime import threads as budgets

    monkeypatch.setattr(budgets, "threads", lambda: budget)
    ember.manual_seed(23)
    model = _MobileBlock(32)
    x = np.random.default_rng(23).standard_normal((2, 32, 16, 16)).astype(np.float32)
    loaded = _load(model, [x], tmp_path / "m.ember")
    inputs = [np.random.default_rng(k).standard_normal((1, 32, 16, 16)).astype(np.float32)
              for k in range(6)]
    with ember.no_grad():
        wanted = [model(ember.tensor(x)).numpy() for x in inputs]
    native, _ = _programs(loaded, 1)
    assert any(c.depthwise for c in _calls(native, StridedConvCall)) and native.parallel
    failures = []
    start = threading.Barrier(len(inputs))

    def work(k):
        start.wait()
        for _ in range(40):
            if not np.allclose(loaded(inputs[k]), wanted[k], rtol=1e-4, atol=1e-4):
                failures.append(k)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not failures


# -- attention under a mask -------------------------------------------------------------------


class _Masked(nn.Module):
    def __init__(self, transpose_mask=False, scale=None):
        super().__init__()
        self.transpose_mask, self.scale = transpose_mask, scale

    def forward(self, q, k, v, mask):
        if self.transpose_mask:  # given as (..., s, l): read in place through its strides
            mask = mask.transpose(-1, -2)
        return ember.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                 scale=self.scale)


@pytest.mark.parametrize("case", [
    dict(batch=(2, 3), mask=(5, 9), kind="bool"),
    dict(batch=(2, 3), mask=(2, 1, 5, 9), kind="float"),
    dict(batch=(2, 3), mask=(2, 3, 5, 1), kind="float"),  # one value per query row
    dict(batch=(3,), mask=(2, 3, 5, 9), kind="bool"),  # the mask adds a batch dim
    dict(batch=(4, 5), mask=(4, 1, 5, 9), kind="bool", scale=0.5),  # shared with the pool
    dict(batch=(2, 2), mask=(2, 2, 9, 5), kind="float", transpose=True),
    dict(batch=(2, 2), mask=(5, 9), kind="float", dtype=np.float64),
], ids=["bool-LS", "float-B1LS", "float-row", "mask-batch", "pool-bool", "strided-float",
        "float64"])
def test_masked_attention_equals_the_eager_kernel(tmp_path, case):
    dtype = case.get("dtype", np.float32)
    rng = np.random.default_rng(22)
    b, l, s, e, ev = case["batch"], 5, 9, 8, 4
    q = rng.standard_normal((*b, l, e)).astype(dtype)
    k = rng.standard_normal((*b, s, e)).astype(dtype)
    v = rng.standard_normal((*b, s, ev)).astype(dtype)
    shape = case["mask"]
    if case["kind"] == "bool":
        mask = rng.random(shape) > 0.4
        mask[..., 1, :] = False  # a query that attends no key: zeros, as in eager
    else:
        mask = rng.standard_normal(shape).astype(dtype)
        mask[..., -1] = -np.inf
        mask[..., 0, :] = -np.inf  # every key of the first query masked
    model = _Masked(case.get("transpose", False), case.get("scale"))
    loaded = _load(model, [q, k, v, mask], tmp_path / "a.ember", dynamic=False)
    native, eager = _programs(loaded)
    (call,) = _calls(native, AttentionCall)
    assert call.mask is not None and call.mask.is_bool == (case["kind"] == "bool")
    assert (call.scratch is None) == (np.prod(call.batch) >= 16)
    assert not _calls(native, CopyCall)  # the mask, transposed or not, read where it lies
    tol = 1e-12 if dtype == np.float64 else 1e-5
    (got,) = _same(native, eager, [q, k, v, mask], tol, tol)
    # the formula itself (float64): masked keys weigh 0; a row with none left gives zeros
    scores = (q.astype(np.float64) @ np.swapaxes(k, -1, -2)) * (case.get("scale") or e ** -0.5)
    full = np.swapaxes(mask, -1, -2) if case.get("transpose") else mask
    scores = np.where(full, scores, -np.inf) if full.dtype == bool else scores + full
    top = scores.max(-1, keepdims=True)
    p = np.exp(scores - np.where(np.isneginf(top), 0, top))
    total = p.sum(-1, keepdims=True)
    want = (p / np.where(total > 0, total, 1)) @ v
    np.testing.assert_allclose(got, want, rtol=tol * 10, atol=tol * 10)
    if case["kind"] == "bool":
        assert (got[..., 1, :] == 0).all()
