"""Convolutions in the native entry multiply in LLVM register tiles (codegen/llvm/tiles.py),
and the elementwise kernel after one (bias, batch norm, ReLU) runs on the tiles while they are
in registers: equal to the eager kernels for every geometry (tile remainders in channels and
positions, stride, padding, dilation, batch sizes), NaN kept as eager keeps it, and a kernel
that cannot be an epilogue still runs after the convolution. Max pooling whose windows tile
the plane runs on whole rows as vectors, equal to eager to the sign of zero."""

import ember
import numpy as np
import pytest
from ember import nn
from ember.codegen.entry import ConvCall, ImageChain, PoolCall
from ember.codegen.llvm import entry
from ember.codegen.llvm.entry import shares_rows, whole_row_pool
from ember.ir.specialize import specialize
from ember.runtime.graph_entry import NativeGraph, build_entry_program
from ember.runtime.program import Program


def _load(model, example, path):
    ember.export(model.eval(), (ember.tensor(example),), path, dynamic_dims={0: {0: "batch"}})
    return ember.runtime.load(str(path))


def _run(loaded, x):
    graph = specialize(loaded.graph, {"batch": x.shape[0]})
    native = build_entry_program(graph, "t")
    assert isinstance(native, NativeGraph), native.describe()
    (got,) = native(np, [x])
    (want,) = Program(graph)(np, [x])
    return native, got, want


def _calls(native, kind):
    """The plan's calls of a kind, those inside image chains too."""
    found = []
    for call in native.plan.calls:
        inside = call.calls if isinstance(call, ImageChain) else (call,)
        found += [c for c in inside if isinstance(c, kind)]
    return found


def _convs(native):
    return _calls(native, ConvCall)


class _Chain(nn.Module):
    """conv -> batch norm -> relu -> conv -> relu: the second convolution reads the first's
    epilogue output from the arena."""

    def __init__(self, c, o, kernel, stride, padding, dilation):
        super().__init__()
        self.a = nn.Conv2d(c, o, kernel, stride=stride, padding=padding, dilation=dilation)
        self.norm = nn.BatchNorm2d(o)
        self.b = nn.Conv2d(o, o + 3, 3, padding=1)  # wider: placed first in the arena

    def forward(self, x):
        return ember.relu(self.b(ember.relu(self.norm(self.a(x)))))


GEOMETRIES = {
    # c, o, (h, w), kernel, stride, padding, dilation
    "digits-conv1": (1, 32, (8, 8), 3, 1, 1, 1),
    "tail-rows-and-ragged-positions": (3, 7, (5, 7), 3, 1, 1, 1),
    "many-channels": (33, 37, (9, 6), (2, 3), 1, (0, 1), 1),
    "strided-dilated": (2, 9, (13, 11), 3, 2, 2, 2),
    "more-than-one-tile-of-positions": (2, 6, (12, 12), 3, 1, 1, 1),
    "tiles-of-positions-ending-ragged": (3, 8, (12, 10), 3, 1, 1, 1),  # 120: 7.5 vectors
}


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_convolutions_with_their_epilogues_equal_the_eager_kernels(tmp_path, geometry,
                                                                         dtype):
    c, o, (h, w), kernel, stride, padding, dilation = geometry
    ember.manual_seed(0)
    model = _Chain(c, o, kernel, stride, padding, dilation)
    # statistics away from 0 and 1, so the epilogue's scale and shift matter
    model.norm.running_mean.data = ember.tensor(np.linspace(-0.5, 0.5, o).astype(np.float32))
    model.norm.running_var.data = ember.tensor(np.linspace(0.5, 2.0, o).astype(np.float32))
    if dtype == np.float64:
        model = model.double()
    rng = np.random.default_rng(c * o)
    loaded = _load(model, rng.standard_normal((2, c, h, w)).astype(dtype), tmp_path / "c.ember")
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for batch in (1, 3, 17):  # 17: images shared with the pool, not a multiple of its chunks
        x = rng.standard_normal((batch, c, h, w)).astype(dtype)
        native, got, want = _run(loaded, x)
        convs = _convs(native)
        assert len(convs) == 2 and all(call.epilogue is not None for call in convs), \
            native.describe()
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def test_nan_and_inf_pass_through_a_relu_epilogue_as_in_eager(tmp_path):
    ember.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU())
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    loaded = _load(model, x, tmp_path / "n.ember")
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 4, 4] = np.inf
    native, got, want = _run(loaded, x)
    assert _convs(native)[0].epilogue is not None
    assert np.isnan(want).any() and np.isinf(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


class _Both(nn.Module):
    """The convolution's output is an output too: the ReLU cannot take its place."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)

    def forward(self, x):
        y = self.conv(x)
        return y, ember.relu(y) * 2.0


def test_a_kernel_that_is_not_the_only_reader_of_the_product_runs_after_it(tmp_path):
    ember.manual_seed(2)
    x = np.random.default_rng(2).standard_normal((3, 2, 7, 7)).astype(np.float32)
    loaded = _load(_Both(), x, tmp_path / "b.ember")
    graph = specialize(loaded.graph, {"batch": 3})
    native = build_entry_program(graph, "t")
    assert isinstance(native, NativeGraph)
    assert _convs(native)[0].epilogue is None
    for got, want in zip(native(np, [x]), Program(graph)(np, [x])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,kernel", [
    ((3, 8, 8), 2),  # the digits CNN's: every plane's rows in one loop
    ((2, 9, 7), 2),  # a last row and column outside every window: plane by plane
    ((4, 12, 40), (3, 2)),  # wide rows, an uneven window
    ((1, 5, 5), 5),  # one window per plane
], ids=["digits", "ragged", "wide", "whole-plane"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pooling_by_whole_rows_equals_eager_with_nan_inf_and_signed_zeros(tmp_path, shape,
                                                                             kernel, dtype):
    model = nn.Sequential(nn.MaxPool2d(kernel))
    if dtype == np.float64:
        model = model.double()
    rng = np.random.default_rng(sum(shape))
    loaded = _load(model, rng.standard_normal((2, *shape)).astype(dtype), tmp_path / "p.ember")
    x = rng.standard_normal((3, *shape)).astype(dtype)
    x[0, 0, 0, 0], x[1, -1, 1, 1], x[2, 0, -1, -1] = np.nan, np.inf, -np.inf
    x[2, -1, :2, :2] = [[0.0, -0.0], [-0.0, 0.0]]
    x[0, -1] = -np.inf  # a plane of -inf
    native, got, want = _run(loaded, x)
    (pool,) = _calls(native, PoolCall)
    assert whole_row_pool(pool)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


class _Stages(nn.Module):
    """Two stages of conv, ReLU and pooling, then a reshape between two more convolutions."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 6, 3, padding=1)
        self.c = nn.Conv2d(6 * 7, 4, 3, padding=1)

    def forward(self, x):
        x = nn.functional.max_pool2d(ember.relu(self.a(x)), 2)
        x = nn.functional.avg_pool2d(ember.relu(self.b(x)), 2, stride=1, padding=1)
        n, c, h, w = x.shape
        return self.c(x.reshape(n, c * h, 1, w))


def test_image_chains_run_convolutions_and_poolings_image_by_image_as_eager(tmp_path):
    ember.manual_seed(4)
    rng = np.random.default_rng(4)
    loaded = _load(_Stages(), rng.standard_normal((2, 3, 12, 10)).astype(np.float32),
                   tmp_path / "s.ember")
    for batch in (2, 5, 17):
        x = rng.standard_normal((batch, 3, 12, 10)).astype(np.float32)
        native, got, want = _run(loaded, x)
        chains = [c for c in native.plan.calls if isinstance(c, ImageChain)]
        # conv, pool, conv, pool in one chain; the reshape ends it
        assert [[type(c).__name__ for c in chain.calls] for chain in chains] == \
            [["ConvCall", "PoolCall", "ConvCall", "PoolCall"]], native.describe()
        assert chains[0].n == batch
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    one = build_entry_program(specialize(loaded.graph, {"batch": 1}), "t")
    assert not [c for c in one.plan.calls if isinstance(c, ImageChain)]  # nothing to share


@pytest.mark.parametrize("c,o,hw", [(32, 64, (8, 8)), (32, 37, (9, 7))],
                         ids=["digits-conv2", "tail-rows-ragged-positions"])
def test_one_image_shares_its_blocks_of_weight_rows_with_the_pool(tmp_path, monkeypatch, c, o,
                                                                  hw):
    from ember.runtime import threads

    monkeypatch.setattr(threads._budget, "now", lambda: 2)  # a budget of 2, however busy
    # the sharing this checks, at the size it was first measured to gain (entry.py)
    monkeypatch.setattr(entry, "SHARED_ROWS_MIN", 1 << 19)
    ember.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(c, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())
    rng = np.random.default_rng(5)
    loaded = _load(model, rng.standard_normal((2, c, *hw)).astype(np.float32),
                   tmp_path / "r.ember")
    x = rng.standard_normal((1, c, *hw)).astype(np.float32)
    native, got, want = _run(loaded, x)
    (conv,) = _convs(native)
    assert shares_rows(conv) and conv.epilogue is not None and native.parallel
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for _ in range(20):  # chunks claimed by the workers and the caller alike
        np.testing.assert_allclose(native(np, [x])[0], want, rtol=1e-5, atol=1e-5)
