"""The spatial functions (transposed and 3-d convolutions, padding modes, interpolation, pixel
shuffle, fold/unfold, pooling with indices, grid sampling) and their layers against torch:
values and the gradients of every floating input, in float32 and float64."""

from __future__ import annotations

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle

TOLERANCE = {"float32": 2e-4, "float64": 1e-9}


def randn(*shape, seed=0):
    return np.random.default_rng(seed + 7 * len(shape) + sum(shape)).standard_normal(shape)


def uniform(low, high, *shape, seed=1):
    return np.random.default_rng(seed + sum(shape)).uniform(low, high, shape)


class Const:
    """An input passed as it is (indices, sizes): never converted, never differentiated."""

    def __init__(self, value):
        self.value = value


def _convert(fw, value, dtype):
    if isinstance(value, Const):
        v = value.value
        return fw.tensor(v) if isinstance(v, np.ndarray) else v
    return fw.tensor(value.astype(dtype)).requires_grad_(True)


def _floats(out):
    outs = out if isinstance(out, tuple) else (out,)
    return [o for o in outs if o.dtype.is_floating_point]


def _run(fw, fn, specs, dtype, seed):
    inputs = [_convert(fw, s, dtype) for s in specs]
    out = fn(fw.nn.functional, *inputs)
    outs = out if isinstance(out, tuple) else (out,)
    rng = np.random.default_rng(seed)
    loss = 0
    for o in _floats(out):
        weights = fw.tensor(rng.standard_normal(tuple(o.shape)).astype(dtype))
        loss = loss + (o * weights).sum()
    grads = []
    leaves = [t for t, s in zip(inputs, specs) if not isinstance(s, Const)]
    if leaves and not isinstance(loss, int):
        grads = fw.autograd.grad(loss, leaves, allow_unused=True)
    values = [o.detach().numpy() for o in outs]
    return values, [None if g is None else g.numpy() for g in grads]


def _compare(fn, specs, dtype):
    ours, our_grads = _run(ember, fn, specs, dtype, 5)
    theirs, their_grads = _run(torch, fn, specs, dtype, 5)
    tol = TOLERANCE[dtype]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    for i, (a, b) in enumerate(zip(our_grads, their_grads)):
        if b is None:
            assert a is None or not np.any(a), f"input {i}: torch gives no gradient"
            continue
        assert a is not None, f"input {i}: no gradient"
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"gradient of input {i}")


CASES: list = []


def case(name, fn, *specs):
    CASES.append(pytest.param(fn, specs, id=name))


# -- transposed and 3-d convolutions ---------------------------------------------------------

_CT2 = [
    {},
    {"stride": 2},
    {"stride": (2, 3), "padding": 1, "output_padding": (1, 2)},
    {"dilation": 2, "stride": 2, "output_padding": 1},
    {"groups": 2},
    {"stride": 3, "padding": (1, 0), "dilation": (1, 2), "groups": 2, "output_padding": (2, 1)},
]
for _kw in _CT2:
    case(f"conv_transpose2d[{_kw}]",
         lambda F, x, w, b, kw=_kw: F.conv_transpose2d(x, w, b, **kw),
         randn(2, 4, 5, 6), randn(4, 3, 3, 2, seed=1), randn(3 * _kw.get("groups", 1), seed=2))
case("conv_transpose2d_unbatched_no_bias",
     lambda F, x, w: F.conv_transpose2d(x, w, stride=2), randn(4, 3, 5), randn(4, 2, 2, 3))
for _kw in [{}, {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2},
            {"dilation": 3, "padding": 2}]:
    case(f"conv_transpose1d[{_kw}]",
         lambda F, x, w, b, kw=_kw: F.conv_transpose1d(x, w, b, **kw),
         randn(2, 4, 7), randn(4, 3, 3, seed=1), randn(3 * _kw.get("groups", 1), seed=2))
case("conv_transpose1d_unbatched", lambda F, x, w: F.conv_transpose1d(x, w, stride=3),
     randn(4, 6), randn(4, 2, 2))
for _kw in [{}, {"stride": 2, "padding": 1, "output_padding": 1},
            {"groups": 2, "dilation": (2, 1, 1), "stride": (2, 1, 2), "padding": (2, 0, 1),
             "output_padding": (1, 0, 1)}]:
    case(f"conv_transpose3d[{_kw}]",
         lambda F, x, w, b, kw=_kw: F.conv_transpose3d(x, w, b, **kw),
         randn(2, 4, 3, 4, 5), randn(4, 3, 3, 2, 2, seed=1), randn(3 * _kw.get("groups", 1)))
for _kw in [{}, {"stride": 2, "padding": 1}, {"dilation": (2, 1, 1), "stride": (2, 1, 2),
                                              "padding": (1, 0, 1), "groups": 2},
            {"padding": "same", "dilation": (1, 2, 1)}, {"padding": "valid"}]:
    case(f"conv3d[{_kw}]",
         lambda F, x, w, b, kw=_kw: F.conv3d(x, w, b, **kw),
         randn(2, 4, 4, 5, 6), randn(6, 4 // _kw.get("groups", 1), 3, 2, 2, seed=1),
         randn(6, seed=2))
case("conv3d_unbatched", lambda F, x, w: F.conv3d(x, w, stride=(1, 2, 1)),
     randn(2, 4, 5, 5), randn(3, 2, 2, 3, 2))


# -- padding modes: every input rank PyTorch accepts for each number of padded dims ----------

for _mode in ("reflect", "replicate", "circular", "constant"):
    for _shape, _pads in [
        ((3, 6), (2, 3)),
        ((2, 3, 6), (-1, 3)),
        ((2, 3, 6), (3, -2)),
        ((2, 4, 5), (1, 3, 2, 2)),
        ((1, 2, 4, 5), (-1, 2, 3, -1)),
        ((2, 3, 4, 5), (3, 1, 2, 0, 1, 1)),
        ((1, 2, 3, 4, 5), (1, 2, 0, 2, -1, 2)),
    ]:
        case(f"pad[{_mode}-{len(_shape)}d-{_pads}]",
             lambda F, x, p=_pads, m=_mode: F.pad(x, p, mode=m), randn(*_shape))
case("pad_constant_value_5d", lambda F, x: F.pad(x, (1, 0, 0, 2, 1, 1, 2, 0), value=-2.0),
     randn(2, 1, 2, 3, 2))


# -- interpolate: every mode, by size and by scale factor, corners aligned or not ----------

_SHAPES = {1: (2, 3, 5), 2: (2, 3, 5, 4), 3: (1, 2, 3, 4, 5)}
_RESIZES = [
    {"size": (7, 3, 6)},
    {"size": (1, 8, 2)},
    {"scale_factor": (1.7, 0.6, 2.3)},
    {"scale_factor": 2.0},
    {"scale_factor": 1.5, "recompute_scale_factor": True},
    {"scale_factor": (0.5, 3.0, 1.0), "recompute_scale_factor": False},
]
for _mode, _dims in [("nearest", (1, 2, 3)), ("nearest-exact", (1, 2, 3)), ("area", (1, 2, 3)),
                     ("linear", (1,)), ("bilinear", (2,)), ("bicubic", (2,)),
                     ("trilinear", (3,))]:
    for _n in _dims:
        for _resize in _RESIZES:
            _kw = {k: v[:_n] if isinstance(v, tuple) else v for k, v in _resize.items()}
            _corners = [None] if _mode in ("nearest", "nearest-exact", "area") else [False, True]
            for _ac in _corners:
                case(f"interpolate[{_mode}-{_n}d-{_kw}-align_corners={_ac}]",
                     lambda F, x, m=_mode, kw=_kw, ac=_ac: F.interpolate(
                         x, mode=m, align_corners=ac, **kw),
                     randn(*_SHAPES[_n]))
case("upsample_bilinear", lambda F, x: F.upsample_bilinear(x, scale_factor=2), randn(1, 2, 3, 3))
case("upsample_nearest", lambda F, x: F.upsample_nearest(x, size=(5, 2)), randn(1, 2, 3, 3))


# -- pixel shuffle, unfold and fold --------------------------------------------------------

case("pixel_shuffle", lambda F, x: F.pixel_shuffle(x, 2), randn(2, 8, 3, 4))
case("pixel_shuffle_batch_dims", lambda F, x: F.pixel_shuffle(x, 3), randn(2, 1, 9, 2, 2))
case("pixel_shuffle_unbatched", lambda F, x: F.pixel_shuffle(x, 2), randn(4, 3, 2))
case("pixel_unshuffle", lambda F, x: F.pixel_unshuffle(x, 2), randn(2, 3, 4, 6))
case("pixel_unshuffle_unbatched", lambda F, x: F.pixel_unshuffle(x, 3), randn(1, 3, 6))
_WINDOWS = [
    {"kernel_size": 2},
    {"kernel_size": (2, 3), "stride": 2},
    {"kernel_size": 3, "padding": 1, "dilation": (2, 1)},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 2), "dilation": 2},
]
for _kw in _WINDOWS:
    case(f"unfold[{_kw}]", lambda F, x, kw=_kw: F.unfold(x, **kw), randn(2, 3, 6, 7))

    case(f"fold_of_unfold[{_kw}]",
         lambda F, x, kw=_kw: F.fold(F.unfold(x, **kw) * 1.5, (6, 7), **kw), randn(2, 3, 6, 7))
case("unfold_unbatched", lambda F, x: F.unfold(x, 2, stride=2), randn(3, 4, 5))
case("fold", lambda F, x: F.fold(x, (4, 5), (2, 3), stride=1, padding=1), randn(2, 12, 5 * 5))
case("fold_unbatched", lambda F, x: F.fold(x, 5, 2, stride=2, dilation=2), randn(8, 4))


# -- pooling with indices, unpooling, 3-d, adaptive max and lp pooling ---------------------

for _kw in [{"kernel_size": 3, "stride": 2, "padding": 1},
            {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1, "dilation": (2, 1),
             "ceil_mode": True},
            {"kernel_size": 2}]:
    case(f"max_pool2d_indices[{_kw}]",
         lambda F, x, kw=_kw: F.max_pool2d(x, return_indices=True, **kw), randn(2, 3, 8, 7))
    _k1 = {k: v[0] if isinstance(v, tuple) else v for k, v in _kw.items()}
    case(f"max_pool1d_indices[{_k1}]",
         lambda F, x, kw=_k1: F.max_pool1d(x, return_indices=True, **kw), randn(2, 3, 9))
    _k3 = {k: (v + v[:1]) if isinstance(v, tuple) else v for k, v in _kw.items()}
    case(f"max_pool3d[{_k3}]",
         lambda F, x, kw=_k3: F.max_pool3d(x, return_indices=True, **kw), randn(2, 3, 5, 6, 7))
case("max_pool2d_indices_unbatched", lambda F, x: F.max_pool2d(x, 2, return_indices=True),
     randn(3, 4, 5))
case("max_pool3d_unbatched", lambda F, x: F.max_pool3d(x, 2, ceil_mode=True), randn(2, 3, 5, 4))
for _kw in [{}, {"count_include_pad": False}, {"divisor_override": 3},
            {"ceil_mode": True, "count_include_pad": False}, {"ceil_mode": True}]:
    case(f"avg_pool3d[{_kw}]",
         lambda F, x, kw=_kw: F.avg_pool3d(x, (2, 3, 2), (1, 2, 2), (1, 1, 0), **kw),
         randn(2, 3, 4, 7, 6))
case("avg_pool3d_default_stride", lambda F, x: F.avg_pool3d(x, 2), randn(3, 4, 6, 5))
case("max_unpool2d", lambda F, x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2),
     randn(2, 3, 6, 8))
case("max_unpool2d_output_size",
     lambda F, x: F.max_unpool2d(*F.max_pool2d(x, 3, 2, 1, return_indices=True), 3, 2, 1,
                                 output_size=(7, 9)), randn(2, 3, 7, 9))
case("max_unpool1d", lambda F, x: F.max_unpool1d(*F.max_pool1d(x, 2, return_indices=True), 2),
     randn(2, 3, 9))
case("max_unpool3d_unbatched",
     lambda F, x: F.max_unpool3d(*F.max_pool3d(x, 2, return_indices=True), 2), randn(2, 4, 4, 6))
for _size in [(3, 4), 2, (None, 3), (7, 9)]:
    case(f"adaptive_max_pool2d[{_size}]",
         lambda F, x, s=_size: F.adaptive_max_pool2d(x, s, return_indices=True),
         randn(2, 3, 7, 9))
case("adaptive_max_pool2d_unbatched", lambda F, x: F.adaptive_max_pool2d(x, (2, 4)),
     randn(3, 5, 6))
case("adaptive_max_pool1d", lambda F, x: F.adaptive_max_pool1d(x, 4, return_indices=True),
     randn(2, 3, 10))
case("adaptive_max_pool3d", lambda F, x: F.adaptive_max_pool3d(x, (2, 3, 2), True),
     randn(2, 3, 5, 7, 4))
case("lp_pool2d", lambda F, x: F.lp_pool2d(x, 2, (2, 3), stride=1, ceil_mode=True),
     randn(2, 3, 7, 9))
case("lp_pool1d", lambda F, x: F.lp_pool1d(x.abs() + 0.1, 3, 2), randn(2, 3, 7))
case("lp_pool3d", lambda F, x: F.lp_pool3d(x, 2, 2), randn(2, 3, 4, 6, 5))


# -- grid sampling and affine grids: every mode, padding mode and corner setting ------------

for _mode, _ranks in [("bilinear", (4, 5)), ("nearest", (4, 5)), ("bicubic", (4,))]:
    for _rank in _ranks:
        _n = _rank - 2
        for _padding in ("zeros", "border", "reflection"):
            for _ac in (False, True):
                case(f"grid_sample[{_mode}-{_rank}d-{_padding}-align_corners={_ac}]",
                     lambda F, x, g, m=_mode, p=_padding, ac=_ac: F.grid_sample(
                         x, g, mode=m, padding_mode=p, align_corners=ac),
                     randn(*(2, 3, 4, 5, 3)[:_rank]),
                     uniform(-1.4, 1.4, *(2, 3, 4, 2)[: _rank - 1], _n))
for _ac in (False, True):
    case(f"affine_grid_2d[align_corners={_ac}]",
         lambda F, t, ac=_ac: F.affine_grid(t, (2, 3, 5, 4), align_corners=ac), randn(2, 2, 3))
    case(f"affine_grid_3d[align_corners={_ac}]",
         lambda F, t, ac=_ac: F.affine_grid(t, (2, 1, 3, 5, 4), align_corners=ac),
         randn(2, 3, 4))
    # an identity theta with aligned corners puts grid points exactly on the borders, where
    # clipping passes no gradient to theta
    for _padding in ("zeros", "border", "reflection"):
        case(f"spatial_transformer[{_padding}-align_corners={_ac}]",
             lambda F, x, t, p=_padding, ac=_ac: F.grid_sample(
                 x, F.affine_grid(t, (2, 3, 6, 7), align_corners=ac), padding_mode=p,
                 align_corners=ac),
             randn(2, 3, 4, 5), np.tile(np.eye(2, 3), (2, 1, 1)) + 0.25 * randn(2, 2, 3))
        case(f"spatial_transformer_identity[{_padding}-align_corners={_ac}]",
             lambda F, x, t, p=_padding, ac=_ac: F.grid_sample(
                 x, F.affine_grid(t, (2, 3, 4, 5), align_corners=ac), padding_mode=p,
                 align_corners=ac),
             randn(2, 3, 4, 5), np.tile(np.eye(2, 3), (2, 1, 1)))
case("spatial_transformer_3d",
     lambda F, x, t: F.grid_sample(x, F.affine_grid(t, (1, 2, 3, 4, 3), align_corners=False),
                                   padding_mode="border", align_corners=False),
     randn(1, 2, 3, 4, 5), np.eye(3, 4)[None] + 0.2 * randn(1, 3, 4))
case("grid_sample_empty_grid", lambda F, x, g: F.grid_sample(x, g, align_corners=False),
     randn(2, 3, 4, 5), uniform(-1, 1, 2, 0, 3, 2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn, specs", CASES)
def test_function_matches_torch(fn, specs, dtype):
    _compare(fn, specs, dtype)


@pytest.mark.parametrize("fn", [
    lambda F, m: F.grid_sample(m.ones(1, 1, 2, 2), m.zeros(1, 2, 2, 2)),
    lambda F, m: F.affine_grid(m.zeros(1, 2, 3), (1, 1, 2, 2)),
    lambda F, m: F.affine_grid(m.zeros(1, 2, 3), (1, 1, 1, 2), align_corners=True),
])
def test_grid_functions_warn_as_torch_does(fn):
    with pytest.warns(UserWarning) as theirs:
        expected = fn(torch.nn.functional, torch)
    with pytest.warns(UserWarning) as ours:
        result = fn(ember.nn.functional, ember)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    np.testing.assert_array_equal(result.numpy(), expected.numpy())


# -- layers ------------------------------------------------------------------------------


def _dcgan(nn):
    return nn.Sequential(
        nn.ConvTranspose2d(8, 16, 4, 1, 0, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(True),
        nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(True),
        nn.ConvTranspose2d(8, 3, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def _load_torch_state(ours, theirs):
    state = {k: ember.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)


def _assert_layer_matches(ours, theirs, x, tol=2e-5, **call):
    _load_torch_state(ours, theirs)
    xe = ember.tensor(x).requires_grad_(True)
    xt = torch.tensor(x).requires_grad_(True)
    oe, ot = ours(xe, **call), theirs(xt, **call)
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=tol, atol=tol)
    g = np.random.default_rng(3).standard_normal(tuple(ot.shape)).astype(x.dtype)
    oe.backward(ember.tensor(g))
    ot.backward(torch.tensor(g))
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=tol, atol=tol,
                                   err_msg=name)


def test_dcgan_generator_state_dict_from_torch_loads_and_matches():
    torch.manual_seed(0)
    theirs = _dcgan(torch.nn)
    ours = _dcgan(ember.nn)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }
    _assert_layer_matches(ours, theirs, randn(2, 8, 1, 1).astype(np.float32), tol=1e-4)


@pytest.mark.parametrize("make, shape, call", [
    (lambda nn: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
     (2, 4, 7), {}),
    (lambda nn: nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2)),
     (2, 4, 5, 6), {"output_size": (10, 12)}),
    (lambda nn: nn.ConvTranspose2d(4, 3, 3, stride=3), (4, 5, 6), {"output_size": (3, 16, 19)}),
    (lambda nn: nn.ConvTranspose3d(4, 2, 2, stride=2, bias=False), (1, 4, 2, 3, 2), {}),
    (lambda nn: nn.Conv3d(4, 6, (3, 2, 2), stride=(1, 2, 1), padding=1, groups=2),
     (2, 4, 4, 5, 6), {}),
    (lambda nn: nn.Conv3d(4, 2, 3, padding="same", padding_mode="circular"), (1, 4, 4, 4, 5), {}),
])
def test_layer_matches_torch(make, shape, call):
    torch.manual_seed(1)
    theirs, ours = make(torch.nn).double(), make(ember.nn).double()
    assert repr(ours) == repr(theirs)
    assert [(k, tuple(v.shape)) for k, v in ours.named_parameters()] == [
        (k, tuple(v.shape)) for k, v in theirs.named_parameters()
    ]
    _assert_layer_matches(ours, theirs, randn(*shape).astype(np.float64), tol=1e-9, **call)


_PAD_LAYERS = [
    ("ZeroPad1d", (2,), (2, 3, 4)), ("ZeroPad2d", ((1, 2, 0, 3),), (3, 4, 5)),
    ("ZeroPad3d", (1,), (1, 2, 3, 4, 2)), ("ConstantPad1d", ((1, 3), 2.5), (3, 4)),
    ("ConstantPad2d", (1, -1.0), (1, 2, 3, 4)), ("ConstantPad3d", ((1, 0, 2, 1, 0, 1), 0.5),
                                                 (2, 3, 2, 3)),
    ("ReflectionPad1d", ((2, 1),), (2, 3, 4)), ("ReflectionPad2d", (2,), (3, 4, 5)),
    ("ReflectionPad3d", ((1, 2, 0, 1, 2, 1),), (1, 2, 3, 4, 5)),
    ("ReplicationPad1d", (3,), (3, 4)), ("ReplicationPad2d", ((3, 0, 1, 2),), (1, 2, 3, 4)),
    ("ReplicationPad3d", (2,), (2, 3, 2, 3)), ("CircularPad1d", ((2, 1),), (2, 3, 4)),
    ("CircularPad2d", ((1, 2, 2, 0),), (3, 4, 5)), ("CircularPad3d", (1,), (1, 2, 3, 4, 2)),
]


@pytest.mark.parametrize("name, args, shape", _PAD_LAYERS)
def test_padding_layer_matches_torch(name, args, shape):
    theirs, ours = getattr(torch.nn, name)(*args), getattr(ember.nn, name)(*args)
    assert repr(ours) == repr(theirs) and ours.padding == theirs.padding
    _assert_layer_matches(ours, theirs, randn(*shape), tol=1e-12)


@pytest.mark.parametrize("name, args, kwargs, shape", [
    ("Upsample", (), {"scale_factor": 2, "mode": "nearest"}, (2, 3, 4)),
    ("Upsample", ((5, 7),), {"mode": "bicubic", "align_corners": True}, (1, 2, 3, 4)),
    ("Upsample", (), {"scale_factor": (1.5, 2.0, 0.5), "mode": "trilinear"}, (1, 2, 2, 3, 4)),
    ("UpsamplingNearest2d", (), {"scale_factor": 3}, (1, 2, 3, 2)),
    ("UpsamplingBilinear2d", ((4, 6),), {}, (2, 1, 3, 3)),
])
def test_upsampling_layer_matches_torch(name, args, kwargs, shape):
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    ours = getattr(ember.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    _assert_layer_matches(ours, theirs, randn(*shape), tol=1e-12)


@pytest.mark.parametrize("name, args, shape", [
    ("PixelShuffle", (2,), (1, 8, 2, 3)),
    ("PixelUnshuffle", (2,), (1, 2, 4, 6)),
    ("Unfold", ((2, 3), 1, 1, 2), (2, 3, 5, 5)),
    ("Fold", ((4, 5), 2, 1, 0, (2, 1)), (2, 8, 8)),
])
def test_rearranging_layer_matches_torch(name, args, shape):
    theirs, ours = getattr(torch.nn, name)(*args), getattr(ember.nn, name)(*args)
    assert repr(ours) == repr(theirs)
    _assert_layer_matches(ours, theirs, randn(*shape), tol=1e-12)


@pytest.mark.parametrize("name, args, shape", [
    ("MaxPool1d", (3, 2, 1), (2, 3, 8)),
    ("MaxPool3d", ((2, 3, 2), 1, (1, 1, 0)), (1, 2, 4, 5, 6)),
    ("AvgPool3d", (2, 1, 1), (2, 3, 3, 4)),
    ("AdaptiveMaxPool1d", (3,), (2, 3, 8)),
    ("AdaptiveMaxPool2d", ((3, None),), (2, 3, 8, 5)),
    ("AdaptiveMaxPool3d", (2,), (1, 2, 5, 4, 3)),
    ("LPPool1d", (2, 3, 2), (2, 3, 8)),
    ("LPPool2d", (2, 3), (2, 3, 7, 6)),
    ("LPPool3d", (2, 2), (1, 2, 4, 4, 4)),
])
def test_pooling_layer_matches_torch(name, args, shape):
    theirs, ours = getattr(torch.nn, name)(*args), getattr(ember.nn, name)(*args)
    assert repr(ours) == repr(theirs)
    _assert_layer_matches(ours, theirs, randn(*shape), tol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_unpool_layer_inverts_the_pool_with_indices_as_torch(n):
    x = randn(*(2, 3) + (6,) * n)
    results = []
    for fw in (torch, ember):
        pool = getattr(fw.nn, f"MaxPool{n}d")(2, return_indices=True)
        unpool = getattr(fw.nn, f"MaxUnpool{n}d")(2)
        assert repr(unpool) == repr(getattr(torch.nn, f"MaxUnpool{n}d")(2))
        t = fw.tensor(x)
        values, indices = pool(t)
        results.append((unpool(values, indices, output_size=t.shape).numpy(), indices.numpy()))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=0, atol=0)


def test_conv_transpose_init_bounds_match_torch():
    """kaiming_uniform(a=sqrt(5)) over the transposed weight's fan-in: out/groups * kernel."""
    layer = ember.nn.ConvTranspose2d(6, 8, 3, groups=2)
    bound = 1 / np.sqrt(4 * 9)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    assert w.shape == (6, 4, 3, 3) and np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.8 * bound


# -- errors --------------------------------------------------------------------------------

ERRORS = {
    "conv_transpose2d_channels": lambda F, m: F.conv_transpose2d(m.ones(1, 5, 4, 4),
                                                                m.ones(4, 3, 3, 3)),
    "conv_transpose2d_output_padding": lambda F, m: F.conv_transpose2d(
        m.ones(1, 4, 4, 4), m.ones(4, 3, 3, 3), output_padding=1),
    "conv_transpose2d_groups": lambda F, m: F.conv_transpose2d(m.ones(1, 5, 4, 4),
                                                              m.ones(5, 3, 3, 3), groups=2),
    "conv_transpose2d_rank": lambda F, m: F.conv_transpose2d(m.ones(5, 4), m.ones(5, 3, 3, 3)),
    "conv_transpose2d_too_small": lambda F, m: F.conv_transpose2d(
        m.ones(1, 5, 4, 4), m.ones(5, 3, 3, 3), padding=5),
    "conv_transpose2d_bias": lambda F, m: F.conv_transpose2d(
        m.ones(1, 5, 4, 4), m.ones(5, 3, 3, 3), m.ones(4)),
    "conv_transpose1d_stride": lambda F, m: F.conv_transpose1d(m.ones(1, 2, 4), m.ones(2, 3, 3),
                                                              stride=0),
    "conv3d_channels": lambda F, m: F.conv3d(m.ones(1, 5, 4, 4, 4), m.ones(4, 3, 3, 3, 3)),
    "conv3d_kernel": lambda F, m: F.conv3d(m.ones(1, 2, 2, 4, 4), m.ones(4, 2, 3, 3, 3)),
    "conv3d_padding_length": lambda F, m: F.conv3d(m.ones(1, 2, 4, 4, 4), m.ones(4, 2, 3, 3, 3),
                                                   padding=(1, 1)),
    "conv3d_same_strided": lambda F, m: F.conv3d(m.ones(1, 2, 4, 4, 4), m.ones(4, 2, 3, 3, 3),
                                                 padding="same", stride=2),
    "conv_transpose_output_size": lambda F, m: m.nn.ConvTranspose2d(2, 2, 3, stride=2)(
        m.ones(1, 2, 4, 4), output_size=(11, 9)),
    "conv_transpose_padding_mode": lambda F, m: m.nn.ConvTranspose2d(2, 2, 3,
                                                                     padding_mode="reflect"),
    "pad_reflect_too_wide": lambda F, m: F.pad(m.ones(2, 3, 3), (3, 3), mode="reflect"),
    "pad_circular_wraps_twice": lambda F, m: F.pad(m.ones(2, 3, 3), (4, 0), mode="circular"),
    "pad_mode_rank": lambda F, m: F.pad(m.ones(4, 5), (1, 1, 1, 1), mode="replicate"),
    "pad_mode_rank_1d": lambda F, m: F.pad(m.ones(5), (1, 1), mode="reflect"),
    "pad_mode_unknown": lambda F, m: F.pad(m.ones(2, 5), (1, 1), mode="wrap"),
    "pad_odd_length": lambda F, m: F.pad(m.ones(2, 5), (1,)),
    "pad_too_long": lambda F, m: F.pad(m.ones(2, 5), (1, 1) * 3),
    "pad_value_with_mode": lambda F, m: F.pad(m.ones(2, 5), (1, 1), mode="reflect", value=2.0),
    "pad_replicate_crops_all": lambda F, m: F.pad(m.ones(2, 3, 3), (-3, 0), mode="replicate"),
    "interpolate_size_and_scale": lambda F, m: F.interpolate(m.ones(1, 1, 4), size=3,
                                                             scale_factor=2.0),
    "interpolate_neither": lambda F, m: F.interpolate(m.ones(1, 1, 4)),
    "interpolate_size_length": lambda F, m: F.interpolate(m.ones(1, 1, 4, 4), size=(2, 3, 4)),
    "interpolate_align_nearest": lambda F, m: F.interpolate(m.ones(1, 1, 4), size=3,
                                                            align_corners=True),
    "interpolate_mode_rank": lambda F, m: F.interpolate(m.ones(1, 1, 4), size=3,
                                                        mode="bilinear"),
    "interpolate_rank": lambda F, m: F.interpolate(m.ones(4, 4), size=3),
    "interpolate_mode": lambda F, m: F.interpolate(m.ones(1, 1, 4), size=3, mode="cubic"),
    "interpolate_zero_size": lambda F, m: F.interpolate(m.ones(1, 1, 4), scale_factor=0.1),
    "interpolate_recompute_with_size": lambda F, m: F.interpolate(
        m.ones(1, 1, 4), size=3, recompute_scale_factor=True),
    "pixel_shuffle_rank": lambda F, m: F.pixel_shuffle(m.ones(4, 4), 2),
    "pixel_shuffle_channels": lambda F, m: F.pixel_shuffle(m.ones(1, 5, 4, 4), 2),
    "pixel_shuffle_factor": lambda F, m: F.pixel_shuffle(m.ones(1, 4, 4, 4), 0),
    "pixel_unshuffle_height": lambda F, m: F.pixel_unshuffle(m.ones(1, 4, 5, 4), 2),
    "unfold_kernel_too_large": lambda F, m: F.unfold(m.ones(1, 2, 4, 4), 5),
    "unfold_stride": lambda F, m: F.unfold(m.ones(1, 2, 4, 4), 2, stride=0),
    "fold_channels": lambda F, m: F.fold(m.ones(1, 5, 9), (4, 4), 2),
    "fold_blocks": lambda F, m: F.fold(m.ones(1, 8, 8), (4, 4), 2),
    "fold_rank": lambda F, m: F.fold(m.ones(2, 2, 8, 9), (4, 4), 2),
    "max_pool3d_rank": lambda F, m: F.max_pool3d(m.ones(2, 3, 4), 2),
    "max_pool3d_padding": lambda F, m: F.max_pool3d(m.ones(1, 1, 4, 4, 4), 2, padding=2),
    "avg_pool3d_rank": lambda F, m: F.avg_pool3d(m.ones(2, 3), 2),
    "max_unpool2d_indices_shape": lambda F, m: F.max_unpool2d(
        m.ones(1, 1, 2, 2), m.zeros(1, 1, 2, 3, dtype=m.int64), 2),
    "max_unpool2d_output_size": lambda F, m: F.max_unpool2d(
        m.ones(1, 1, 2, 2), m.zeros(1, 1, 2, 2, dtype=m.int64), 2, output_size=(9, 9)),
    "adaptive_max_pool2d_rank": lambda F, m: F.adaptive_max_pool2d(m.ones(4, 4), 2),
    "circular_pad_layer_rank": lambda F, m: m.nn.CircularPad2d(1)(m.ones(4, 5)),
    "grid_sample_mode": lambda F, m: F.grid_sample(m.ones(1, 1, 2, 2), m.zeros(1, 2, 2, 2),
                                                   mode="linear", align_corners=False),
    "grid_sample_padding_mode": lambda F, m: F.grid_sample(
        m.ones(1, 1, 2, 2), m.zeros(1, 2, 2, 2), padding_mode="circular", align_corners=False),
    "grid_sample_batch": lambda F, m: F.grid_sample(m.ones(2, 1, 2, 2), m.zeros(1, 2, 2, 2),
                                                    align_corners=False),
    "grid_sample_grid_last_dim": lambda F, m: F.grid_sample(
        m.ones(1, 1, 2, 2), m.zeros(1, 2, 2, 3), align_corners=False),
    "grid_sample_ranks": lambda F, m: F.grid_sample(m.ones(1, 1, 2, 2), m.zeros(1, 2, 2, 2, 2),
                                                    align_corners=False),
    "grid_sample_unbatched": lambda F, m: F.grid_sample(m.ones(1, 2, 2), m.zeros(2, 2, 2),
                                                        align_corners=False),
    "grid_sample_bicubic_5d": lambda F, m: F.grid_sample(
        m.ones(1, 1, 2, 2, 2), m.zeros(1, 2, 2, 2, 3), mode="bicubic", align_corners=False),
    "grid_sample_empty_input": lambda F, m: F.grid_sample(
        m.ones(1, 1, 0, 2), m.zeros(1, 2, 2, 2), align_corners=False),
    "grid_sample_dtypes": lambda F, m: F.grid_sample(
        m.ones(1, 1, 2, 2), m.zeros(1, 2, 2, 2, dtype=m.float64), align_corners=False),
    "grid_sample_integer_input": lambda F, m: F.grid_sample(
        m.ones(1, 1, 2, 2, dtype=m.int64), m.zeros(1, 2, 2, 2, dtype=m.int64),
        align_corners=False),
    "affine_grid_integer_theta": lambda F, m: F.affine_grid(
        m.zeros(1, 2, 3, dtype=m.int64), (1, 1, 2, 2), align_corners=False),
    "affine_grid_theta_shape": lambda F, m: F.affine_grid(m.zeros(1, 3, 4), (1, 1, 2, 2),
                                                          align_corners=False),
    "affine_grid_size_rank": lambda F, m: F.affine_grid(m.zeros(1, 2, 3), (1, 1, 2),
                                                        align_corners=False),
    "affine_grid_zero_size": lambda F, m: F.affine_grid(m.zeros(1, 2, 3), (1, 1, 0, 2),
                                                        align_corners=False),
    "affine_grid_batch": lambda F, m: F.affine_grid(m.zeros(2, 2, 3), (3, 1, 2, 2),
                                                    align_corners=False),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_input_raises_the_builtin_error_torch_raises(name):
    with pytest.raises(Exception) as theirs:
        ERRORS[name](torch.nn.functional, torch)
    with pytest.raises(ember.EmberError) as ours:
        ERRORS[name](ember.nn.functional, ember)
    builtin = next(c for c in type(theirs.value).__mro__ if c.__module__ == "builtins")
    assert isinstance(ours.value, builtin), (type(ours.value), type(theirs.value))
