"""3x3 stride-1 convolutions with a constant weight run in the native entry as Winograd
F(2x2, 3x3) products (codegen/llvm/winograd.py): equal to the eager convolution within
float tolerance for random geometries (padding 0 to 2, odd and non-square planes, tiles that
do not fill a vector, channel counts that do not fill a tile of rows), with and without a
fused epilogue, one image (its channels shared with the pool) and many (image chains); the
weight's transform is made once per arena, and a changed arena tag makes it again."""

import ember
import numpy as np
import pytest
from ember import nn
from ember.codegen.entry import ConvCall, ImageChain, WinogradWeightCall
from ember.codegen.llvm import entry, winograd
from ember.codegen.llvm.entry import shares_rows
from ember.ir.specialize import specialize
from ember.runtime import graph_entry
from ember.runtime.graph_entry import NativeGraph, build_entry_program
from ember.runtime.program import Program


def _load(model, example, path):
    ember.export(model.eval(), (ember.tensor(example),), path, dynamic_dims={0: {0: "batch"}})
    return ember.runtime.load(str(path))


def _convs(native):
    found = []
    for call in native.plan.calls:
        inside = call.calls if isinstance(call, ImageChain) else (call,)
        found += [c for c in inside if isinstance(c, ConvCall)]
    return found


def _native(loaded, batch):
    native = build_entry_program(specialize(loaded.graph, {"batch": batch}), "w")
    assert isinstance(native, NativeGraph), native.describe()
    return native


class _ConvNormRelu(nn.Module):
    """conv -> batch norm -> relu: the two after the convolution are its epilogue."""

    def __init__(self, c, o, padding):
        super().__init__()
        self.conv = nn.Conv2d(c, o, 3, padding=padding)
        self.norm = nn.BatchNorm2d(o)

    def forward(self, x):
        return ember.relu(self.norm(self.conv(x)))


def _random_geometries(count):
    rng = np.random.default_rng(19)
    found = []
    while len(found) < count:
        c, o = (int(v) for v in rng.integers(winograd.CHANNELS_MIN, 41, 2))
        padding = int(rng.integers(0, 3))
        h, w = (int(v) for v in rng.integers(3, 15, 2))
        out_hw = (h + 2 * padding - 2, w + 2 * padding - 2)
        if min(out_hw) >= 1 and winograd.applies("float32", c, o, (3, 3), (1, 1), (1, 1),
                                                 out_hw):
            found.append((c, o, (h, w), padding))
    return found


GEOMETRIES = {
    "digits-conv2": (32, 64, (8, 8), 1),
    "no-padding-odd-outputs": (16, 17, (7, 9), 0),
    "padding-2-more-tiles-than-a-vector": (20, 33, (9, 10), 2),
    **{f"random-{i}": g for i, g in enumerate(_random_geometries(6))},
}


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_convolutions_with_epilogues_equal_eager(tmp_path, monkeypatch, geometry,
                                                         dtype):
    from ember.runtime import threads

    monkeypatch.setattr(threads._budget, "now", lambda: 2)  # the pool's workers take chunks too
    c, o, (h, w), padding = geometry
    ember.manual_seed(c + o)
    model = _ConvNormRelu(c, o, padding)
    model.norm.running_mean.data = ember.tensor(np.linspace(-0.5, 0.5, o).astype(np.float32))
    model.norm.running_var.data = ember.tensor(np.linspace(0.5, 2.0, o).astype(np.float32))
    if dtype == np.float64:
        model = model.double()
    rng = np.random.default_rng(c * o + padding)
    loaded = _load(model, rng.standard_normal((2, c, h, w)).astype(dtype), tmp_path / "w.ember")
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for batch in (1, 3, 17):
        x = rng.standard_normal((batch, c, h, w)).astype(dtype)
        native = _native(loaded, batch)
        (conv,) = _convs(native)
        assert conv.winograd and conv.epilogue is not None, native.describe()
        want = Program(native.graph)(np, [x])[0]
        scale = max(1.0, float(np.abs(want).max()))
        for _ in range(3):  # the first call makes the weight's transform, the others reuse it
            (got,) = native(np, [x])
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale)


def test_without_an_epilogue_and_as_an_output_equals_eager(tmp_path):
    ember.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(24, 18, 3, padding=1, bias=False))
    rng = np.random.default_rng(3)
    loaded = _load(model, rng.standard_normal((2, 24, 6, 5)).astype(np.float32),
                   tmp_path / "o.ember")
    for batch in (1, 4):
        x = rng.standard_normal((batch, 24, 6, 5)).astype(np.float32)
        native = _native(loaded, batch)
        (conv,) = _convs(native)
        assert conv.winograd and conv.epilogue is None
        np.testing.assert_allclose(native(np, [x])[0], Program(native.graph)(np, [x])[0],
                                   rtol=1e-5, atol=1e-5)


def test_one_image_shares_its_output_channels_with_the_pool(tmp_path, monkeypatch):
    from ember.runtime import threads

    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    # the sharing this checks, at the size it was first measured to gain (entry.py)
    monkeypatch.setattr(entry, "SHARED_ROWS_MIN", 1 << 19)
    ember.manual_seed(4)
    model = _ConvNormRelu(32, 64, 1)
    rng = np.random.default_rng(4)
    loaded = _load(model, rng.standard_normal((2, 32, 8, 8)).astype(np.float32),
                   tmp_path / "r.ember")
    x = rng.standard_normal((1, 32, 8, 8)).astype(np.float32)
    native = _native(loaded, 1)
    (conv,) = _convs(native)
    assert conv.winograd and shares_rows(conv) and native.parallel
    assert winograd.row_blocks(conv) == 4  # 16 channels each: two threads get two each
    want = Program(native.graph)(np, [x])[0]
    for _ in range(20):  # chunks claimed by the workers and the caller alike
        np.testing.assert_allclose(native(np, [x])[0], want, rtol=1e-5, atol=1e-5)


def test_the_weight_transform_is_made_once_per_arena_under_its_tag(tmp_path):
    ember.manual_seed(5)
    model = _ConvNormRelu(16, 16, 1)
    rng = np.random.default_rng(5)
    loaded = _load(model, rng.standard_normal((2, 16, 6, 6)).astype(np.float32),
                   tmp_path / "t.ember")
    native = _native(loaded, 1)
    assert [type(c) for c in native.plan.calls].count(WinogradWeightCall) == 1
    x = rng.standard_normal((1, 16, 6, 6)).astype(np.float32)
    want = Program(native.graph)(np, [x])[0]
    np.testing.assert_allclose(native(np, [x])[0], want, rtol=1e-5, atol=1e-5)
    _, arena, _ = native._thread_state()
    tag = native.plan.tag_word.offset
    assert int(arena[tag:tag + 8].view(np.int64)[0]) == native.plan.tag != 0
    (prepared,) = [c.out for c in native.plan.calls if isinstance(c, WinogradWeightCall)]
    # spoil the transform: with the tag in place the entry trusts it; without, it remakes it
    arena[prepared.offset:prepared.offset + 64] = 0
    assert not np.allclose(native(np, [x])[0], want, rtol=1e-5, atol=1e-5)
    arena[tag:tag + 8] = 0
    np.testing.assert_allclose(native(np, [x])[0], want, rtol=1e-5, atol=1e-5)


def test_few_channels_a_stride_or_a_weight_given_per_call_multiply_columns(tmp_path,
                                                                          monkeypatch):
    ember.manual_seed(6)
    rng = np.random.default_rng(6)
    for model, shape in ((nn.Sequential(nn.Conv2d(3, 32, 3, padding=1)), (2, 3, 8, 8)),
                         (nn.Sequential(nn.Conv2d(32, 32, 3, stride=2)), (2, 32, 9, 9))):
        loaded = _load(model, rng.standard_normal(shape).astype(np.float32),
                       tmp_path / "f.ember")
        assert not any(c.winograd for c in _convs(_native(loaded, 2)))
    # a weight that is an input may change from call to call: no transform made once
    x = rng.standard_normal((2, 32, 8, 8)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    ember.export(lambda x, w: nn.functional.conv2d(x, w, padding=1),
                 (ember.tensor(x), ember.tensor(w)), tmp_path / "i.ember")
    loaded = ember.runtime.load(str(tmp_path / "i.ember"))
    assert not any(c.winograd for c in _convs(loaded._program))
    monkeypatch.setattr(graph_entry, "WINOGRAD", False)
    loaded = _load(_ConvNormRelu(32, 64, 1), rng.standard_normal((2, 32, 8, 8)).astype(
        np.float32), tmp_path / "d.ember")
    assert not any(c.winograd for c in _convs(_native(loaded, 2)))
