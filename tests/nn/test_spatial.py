"""The spatial functions without torch: float64 gradients against finite differences,
compiled (ember.script) equal to eager in values and gradients, and the errors bad input
raises."""

from __future__ import annotations

import ember
import numpy as np
import pytest
from ember.autograd import gradcheck

F = ember.nn.functional


def randn(*shape, seed=0, requires_grad=True):
    data = np.random.default_rng(seed + sum(shape)).standard_normal(shape)
    return ember.tensor(data, requires_grad=requires_grad)


def uniform(low, high, *shape, seed=1):
    data = np.random.default_rng(seed + sum(shape)).uniform(low, high, shape)
    return ember.tensor(data, requires_grad=True)


# each: (fn, inputs); inputs are float64 and small, so finite differences are cheap
GRADCHECKS = {
    "conv_transpose2d": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1,
                                           groups=2, dilation=(1, 2)),
        lambda: (randn(1, 4, 3, 3), randn(4, 1, 2, 3, seed=1), randn(2, seed=2)),
    ),
    "conv_transpose1d": (
        lambda x, w: F.conv_transpose1d(x, w, stride=3, padding=1, output_padding=2),
        lambda: (randn(2, 2, 4), randn(2, 3, 3, seed=1)),
    ),
    "conv_transpose3d": (
        lambda x, w, b: F.conv_transpose3d(x, w, b, stride=(2, 1, 1), padding=(1, 0, 0),
                                           output_padding=(1, 0, 0)),
        lambda: (randn(1, 2, 3, 2, 2), randn(2, 2, 3, 2, 1, seed=1), randn(2, seed=2)),
    ),
    "conv3d": (
        lambda x, w, b: F.conv3d(x, w, b, stride=(2, 1, 1), padding=(1, 1, 0), dilation=(2, 1, 1),
                                 groups=2),
        lambda: (randn(1, 4, 5, 3, 3), randn(2, 2, 2, 2, 2, seed=1), randn(2, seed=2)),
    ),
    **{
        f"interpolate_{mode}": (
            lambda x, mode=mode: F.interpolate(x, size=(5, 2), mode=mode),
            lambda: (randn(1, 2, 3, 4),),
        )
        for mode in ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
    },
    "interpolate_trilinear_aligned": (
        lambda x: F.interpolate(x, scale_factor=(1.5, 0.5, 2), mode="trilinear",
                                align_corners=True),
        lambda: (randn(1, 1, 2, 4, 3),),
    ),
    "fold_of_unfold": (
        lambda x: F.fold(F.unfold(x, (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)) ** 2,
                         (4, 5), (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)),
        lambda: (randn(1, 2, 4, 5),),
    ),
    "pixel_shuffle_round_trip": (
        lambda x: F.pixel_unshuffle(F.pixel_shuffle(x, 2) ** 2, 2),
        lambda: (randn(1, 4, 2, 3),),
    ),
    "max_pool3d_and_unpool": (
        lambda x: F.max_unpool3d(*F.max_pool3d(x, 2, 2, 1, return_indices=True), 2, 2, 1,
                                   output_size=x.shape),
        lambda: (randn(1, 2, 3, 3, 2),),
    ),
    "avg_pool3d_ceil": (
        lambda x: F.avg_pool3d(x, 2, (2, 1, 2), 1, ceil_mode=True, count_include_pad=False),
        lambda: (randn(1, 2, 3, 3, 4),),
    ),
    "adaptive_max_pool2d": (
        lambda x: F.adaptive_max_pool2d(x, (2, 3)),
        lambda: (randn(2, 2, 5, 4),),
    ),
    "lp_pool2d": (
        lambda x: F.lp_pool2d(x, 2, 2, stride=1),
        lambda: (randn(1, 2, 3, 4),),
    ),
    **{
        f"pad_{mode}": (
            lambda x, mode=mode: F.pad(x, (2, -1, -1, 2), mode=mode),
            lambda: (randn(1, 2, 3, 4),),
        )
        for mode in ("reflect", "replicate", "circular")
    },
    **{
        f"grid_sample_{mode}_{padding}": (
            lambda x, g, mode=mode, padding=padding: F.grid_sample(
                x, g, mode=mode, padding_mode=padding, align_corners=mode == "bicubic"),
            lambda: (randn(1, 2, 3, 4), uniform(-1.3, 1.3, 1, 3, 2, 2)),
        )
        for mode in ("bilinear", "nearest", "bicubic")
        for padding in ("zeros", "border", "reflection")
    },
    "grid_sample_trilinear_reflection_aligned": (
        lambda x, g: F.grid_sample(x, g, padding_mode="reflection", align_corners=True),
        lambda: (randn(1, 2, 2, 3, 4), uniform(-1.3, 1.3, 1, 2, 2, 2, 3)),
    ),
    "affine_grid_3d_aligned": (
        lambda t: F.affine_grid(t, (2, 1, 2, 3, 4), align_corners=True),
        lambda: (randn(2, 3, 4),),
    ),
    "spatial_transformer": (
        lambda x, t: F.grid_sample(x, F.affine_grid(t, (1, 2, 4, 3), align_corners=False),
                                   padding_mode="border", align_corners=False),
        lambda: (randn(1, 2, 3, 5), randn(1, 2, 3, seed=1)),
    ),
}


@pytest.mark.parametrize("name", sorted(GRADCHECKS))
def test_gradient_matches_finite_differences(name):
    fn, make = GRADCHECKS[name]
    assert gradcheck(fn, make())


# each: fn of float32 tensors; compiled strictly (no eager fallback) and compared to eager
SCRIPTED = {
    "conv_transpose2d": (
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1).tanh(),
        lambda: (randn(2, 4, 5, 5), randn(4, 3, 3, 3, seed=1)),
    ),
    "conv_transpose3d_and_conv3d": (
        lambda x, w: F.conv3d(F.conv_transpose3d(x, w, stride=2), w.transpose(0, 1), padding=1),
        lambda: (randn(1, 2, 2, 3, 3), randn(2, 2, 2, 2, 2, seed=1)),
    ),
    "interpolate_modes_and_upsample": (
        lambda x: F.interpolate(x, scale_factor=1.5, mode="bicubic")[..., :4, :4]
        + ember.nn.UpsamplingBilinear2d(size=(4, 4))(x)
        + F.interpolate(x, size=(4, 4), mode="nearest-exact")
        + ember.nn.Upsample(scale_factor=2)(x)[..., ::2, ::2] * F.interpolate(
            x.flatten(2), size=16, mode="linear").reshape(x.shape[:2] + (4, 4)),
        lambda: (randn(2, 3, 4, 4),),
    ),
    "fold_unfold_and_pixel_shuffle": (
        lambda x: F.fold(F.unfold(F.pixel_shuffle(x, 2), 3, padding=1).tanh(), (8, 8), 3,
                         padding=1) * ember.nn.PixelUnshuffle(2)(x.sin()).sum(),
        lambda: (randn(2, 4, 4, 4),),
    ),
    "pools_with_indices": (
        lambda x: F.max_unpool2d(*F.max_pool2d(x, 3, 2, 1, return_indices=True), 3, 2, 1,
                                 output_size=(6, 6))
        + F.adaptive_max_pool2d(x, (6, 6)) * F.avg_pool3d(x[None], 1)[0]
        + F.max_pool3d(x[None], 3, 1, 1)[0] + F.lp_pool2d(x, 2, 1),
        lambda: (randn(2, 3, 6, 6),),
    ),
    "pad_modes_and_layers": (
        lambda x: (F.pad(x, (2, -1, 1, 1), mode="reflect") * 2
                   + ember.nn.ReplicationPad2d((1, 0, 0, 2))(x)).sum(1)
        + ember.nn.CircularPad1d((3, -2))(x[:, 0]).sum(),
        lambda: (randn(2, 3, 4, 5),),
    ),
    "spatial_transformer_and_samplers": (
        lambda x, t, t3: F.grid_sample(x, F.affine_grid(t, (2, 3, 5, 4), align_corners=False),
                                       padding_mode="reflection", align_corners=False)
        + F.grid_sample(x, F.affine_grid(t * 1.5, (2, 3, 5, 4), align_corners=True),
                        mode="bicubic", align_corners=True)
        + F.grid_sample(x[:, :, None].expand(2, 3, 2, 4, 5),
                        F.affine_grid(t3, (2, 3, 1, 5, 4), align_corners=False),
                        mode="nearest", padding_mode="border", align_corners=False)[:, :, 0],
        lambda: (randn(2, 3, 4, 5), randn(2, 2, 3, seed=1), randn(2, 3, 4, seed=2)),
    ),
}


@pytest.mark.parametrize("name", sorted(SCRIPTED))
def test_compiled_equals_eager_in_values_and_gradients(name):
    fn, make = SCRIPTED[name]
    inputs = [t.detach().float().requires_grad_(True) for t in make()]
    scripted = ember.script(fn, strict=True)
    outs = []
    for f in (scripted, fn):
        for t in inputs:
            t.grad = None
        out = f(*inputs)
        weights = ember.tensor(np.random.default_rng(0).standard_normal(out.shape), dtype=out.dtype)
        (out * weights).sum().backward()
        outs.append((out.detach().numpy(), [t.grad.numpy().copy() for t in inputs]))
    (compiled, compiled_grads), (eager, eager_grads) = outs
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(compiled_grads, eager_grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# each: (fn, the builtin exception type PyTorch raises, a fragment of the message)
ERRORS = {
    "conv_transpose2d_channels": (
        lambda: F.conv_transpose2d(ember.ones(1, 5, 4, 4), ember.ones(4, 3, 3, 3)),
        RuntimeError, r"weight of size \[4, 3, 3, 3\], expected input\[1, 5, 4, 4\]"),
    "conv_transpose2d_output_padding": (
        lambda: F.conv_transpose2d(ember.ones(1, 4, 4, 4), ember.ones(4, 3, 3, 3),
                                   output_padding=(0, 1)),
        RuntimeError, "output_padding_width: 1"),
    "conv_transpose2d_too_small": (
        lambda: F.conv_transpose2d(ember.ones(1, 4, 4, 4), ember.ones(4, 3, 3, 3), padding=4),
        RuntimeError, r"Calculated output size per channel: \(-2 x -2\)"),
    "conv_transpose1d_rank": (
        lambda: F.conv_transpose1d(ember.ones(4), ember.ones(4, 3, 3)),
        RuntimeError, r"input of size: \[4\]"),
    "conv_transpose_int": (
        lambda: F.conv_transpose2d(ember.ones(1, 2, 3, 3, dtype=ember.int64),
                                   ember.ones(2, 2, 2, 2, dtype=ember.int64)),
        TypeError, "floating-point"),
    "conv3d_channels": (
        lambda: F.conv3d(ember.ones(1, 5, 4, 4, 4), ember.ones(4, 3, 3, 3, 3)),
        RuntimeError, r"expected input\[1, 5, 4, 4, 4\] to have 3 channels"),
    "conv3d_kernel": (
        lambda: F.conv3d(ember.ones(1, 2, 2, 4, 4), ember.ones(4, 2, 3, 3, 3)),
        RuntimeError, r"\(2 x 4 x 4\). Kernel size: \(3 x 3 x 3\)"),
    "conv_transpose_output_size": (
        lambda: ember.nn.ConvTranspose2d(2, 2, 3, stride=2)(ember.ones(1, 2, 4, 4),
                                                             output_size=(11, 9)),
        ValueError, r"valid sizes range from \[9, 9\] to \[10, 10\]"),
    "interpolate_mode_rank": (
        lambda: F.interpolate(ember.ones(1, 1, 4), size=3, mode="bicubic"),
        NotImplementedError, "Got 3D input, but bicubic mode needs 4D input"),
    "interpolate_antialias": (
        lambda: F.interpolate(ember.ones(1, 1, 4, 4), size=3, mode="bilinear", antialias=True),
        NotImplementedError, "antialias"),
    "interpolate_align_corners_nearest": (
        lambda: F.interpolate(ember.ones(1, 1, 4), size=3, align_corners=False),
        ValueError, "align_corners option can only be set with the interpolating modes"),
    "max_pool3d_padding": (
        lambda: F.max_pool3d(ember.ones(1, 1, 4, 4, 4), 2, padding=2),
        RuntimeError, "pad should be at most half of effective kernel size"),
    "max_unpool_indices_shape": (
        lambda: F.max_unpool1d(ember.ones(1, 1, 2), ember.zeros(1, 1, 3, dtype=ember.int64), 2),
        RuntimeError, r"Expected shape of indices to be same as that of the input tensor"),
    "grid_sample_mode": (
        lambda: F.grid_sample(ember.ones(1, 1, 2, 2), ember.zeros(1, 2, 2, 2), mode="area"),
        ValueError, "expected mode to be 'bilinear', 'nearest' or 'bicubic', but got: 'area'"),
    "grid_sample_grid_last_dim": (
        lambda: F.grid_sample(ember.ones(1, 1, 2, 2, 2), ember.zeros(1, 2, 2, 2, 2),
                              align_corners=True),
        RuntimeError, r"expected grid to have size 3 in last dimension, but got grid with sizes "
                      r"\[1, 2, 2, 2, 2\]"),
    "grid_sample_dtypes": (
        lambda: F.grid_sample(ember.ones(1, 1, 2, 2), ember.zeros(1, 2, 2, 2, dtype=ember.float64),
                              align_corners=True),
        RuntimeError, "input has float32 and grid has float64"),
    "affine_grid_theta_shape": (
        lambda: F.affine_grid(ember.zeros(1, 2, 3), (1, 1, 2, 2, 2), align_corners=True),
        ValueError, r"Expected a batch of 3D affine matrices of shape Nx3x4 for size "
                    r"\(1, 1, 2, 2, 2\). Got \(1, 2, 3\)"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_input_raises_an_ember_error_of_the_builtin_type(name):
    fn, builtin, message = ERRORS[name]
    with pytest.raises(ember.EmberError, match=message) as info:
        fn()
    assert isinstance(info.value, builtin)
