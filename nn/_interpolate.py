"""F.interpolate (nn.Upsample's function): nearest, nearest-exact, (bi/tri)linear, bicubic
and area resampling of the spatial dims, composed from index_select and constant weights.

Resampling is separable: each spatial dim in turn is gathered at a few source positions per
output position (1 for nearest, 2 for linear, 4 for bicubic) and the taps are summed with
weights that depend only on the sizes. The positions and weights are computed here, once, in
the input's dtype with PyTorch's formulas (so floor() lands where PyTorch's does), and enter
the graph as constants; the gradient is index_select's (a scatter-add).
nn.functional re-exports interpolate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .._tensor import Tensor
from .._tensor import ops as E
from .._tensor.factories import tensor
from ..errors import EmberNotImplementedError, runtime_error, value_error

_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_MODE_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}
_CUBIC_A = -0.75


def _source_scale(size: int, out: int, align_corners: bool, scale, dtype) -> np.floating:
    """PyTorch's area_pixel_compute_scale: input positions per output position."""
    t = dtype.type
    if align_corners:
        return t(size - 1) / t(out - 1) if out > 1 else t(0)
    if scale is not None and scale > 0:
        return t(1.0 / scale)
    return t(size) / t(out)


@lru_cache(maxsize=256)
def _taps(mode: str, size: int, out: int, align_corners: bool, scale, dtype_name: str):
    """(indices, weights): for each tap, the (out,) source positions along one dim and their
    weights (None for a single nearest tap)."""
    dtype = np.dtype(dtype_name)
    position = np.arange(out)
    if mode in ("nearest", "nearest-exact"):
        # nearest computes its scale in float32 whatever the input's dtype, as PyTorch does
        s = np.float32(1.0 / scale) if scale is not None and scale > 0 else (
            np.float32(size) / np.float32(out))
        offset = np.float32(0.5 if mode == "nearest-exact" else 0.0)
        source = np.floor((position.astype(np.float32) + offset) * s).astype(np.int64)
        return (np.minimum(source, size - 1),), None
    s = _source_scale(size, out, align_corners, scale, dtype)
    dst = position.astype(dtype)
    if align_corners:
        source = s * dst
    else:
        source = s * (dst + dtype.type(0.5)) - dtype.type(0.5)
    if mode == "bicubic":
        first = np.floor(source)
        t = (source - first).astype(dtype)
        first = first.astype(np.int64)
        a = dtype.type(_CUBIC_A)

        def near(x):  # |x| <= 1
            return ((a + 2) * x - (a + 3)) * x * x + 1

        def far(x):  # 1 < |x| < 2
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

        one = dtype.type(1)
        weights = (far(t + one), near(t), near(one - t), far(2 * one - t))
        indices = tuple(np.clip(first + k, 0, size - 1) for k in (-1, 0, 1, 2))
        return indices, weights
    source = np.maximum(source, dtype.type(0))
    first = source.astype(np.int64)  # floor, since source >= 0
    second = np.where(first < size - 1, first + 1, first)
    high = (source - first.astype(dtype)).astype(dtype)
    return (first, second), (dtype.type(1) - high, high)


def _resample(x: Tensor, dim: int, mode: str, out: int, align_corners: bool, scale) -> Tensor:
    """x resampled to `out` positions along dim (non-negative)."""
    size = int(x.shape[dim])
    if mode == "area":
        from .functional import _adaptive_avg  # (functional re-exports this module)

        return E.movedim(_adaptive_avg(E.movedim(x, dim, -1), -1, out), -1, dim)
    indices, weights = _taps(mode, size, out, bool(align_corners), scale, x.dtype.np.name)
    shape = [1] * x.ndim
    shape[dim] = out
    result = None
    for k, index in enumerate(indices):
        tap = E.index_select(x, dim, tensor(index, device=x.device))
        if weights is not None:
            w = tensor(weights[k].reshape(shape), dtype=x.dtype, device=x.device)
            tap = E.mul(tap, w)
        result = tap if result is None else E.add(result, tap)
    return result


def _spatial_sizes(input: Tensor, size, scale_factor, recompute_scale_factor, n: int):
    """(output sizes, the scale factors the coordinate maps use, or None per dim)."""
    if size is not None and scale_factor is not None:
        raise value_error("only one of size or scale_factor should be defined")
    if size is not None:
        if recompute_scale_factor:
            raise value_error(
                "recompute_scale_factor is not meaningful with an explicit size."
            )
        sizes = tuple(size) if isinstance(size, Sequence) else (size,) * n
        if len(sizes) != n:
            raise value_error(
                f"Input and output must have the same number of spatial dimensions, but got "
                f"input with spatial dimensions of {list(input.shape[2:])} and output size of "
                f"{list(sizes)}. Please provide input tensor in (N, C, d1, d2, ...,dK) format "
                "and output size in (o1, o2, ...,oK) format."
            )
        return tuple(int(s) for s in sizes), (None,) * n
    if scale_factor is None:
        raise value_error("either size or scale_factor should be defined")
    scales = tuple(scale_factor) if isinstance(scale_factor, Sequence) else (scale_factor,) * n
    if len(scales) != n:
        raise value_error(
            f"Input and scale_factor must have the same number of spatial dimensions, but got "
            f"input with spatial dimensions of {list(input.shape[2:])} and scale_factor of "
            f"shape {list(scales)}. Please provide input tensor in (N, C, d1, d2, ...,dK) "
            "format and scale_factor in (s1, s2, ...,sK) format."
        )
    sizes = tuple(math.floor(float(input.shape[i + 2]) * float(s)) for i, s in enumerate(scales))
    if recompute_scale_factor:
        return sizes, (None,) * n
    return sizes, tuple(float(s) for s in scales)


def interpolate(
    input: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resample the spatial dims of (N, C, L), (N, C, H, W) or (N, C, D, H, W) input to `size`,
    or to floor(size * scale_factor), by `mode` (torch.nn.functional.interpolate)."""
    if mode not in _MODES:
        raise EmberNotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            f"the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
            f"nearest-exact (got {mode})"
        )
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise value_error(
                "align_corners option can only be set with the interpolating modes: "
                "linear | bilinear | bicubic | trilinear"
            )
    elif align_corners is None:
        align_corners = False
    if antialias:
        raise EmberNotImplementedError(
            "interpolate(antialias=True): ember resamples without an anti-aliasing filter; "
            "use antialias=False"
        )
    if input.ndim not in (3, 4, 5) or _MODE_RANK.get(mode, input.ndim) != input.ndim:
        expected = _MODE_RANK.get(mode)
        if expected is not None and input.ndim in (3, 4, 5):
            raise EmberNotImplementedError(
                f"Got {input.ndim}D input, but {mode} mode needs {expected}D input"
            )
        raise EmberNotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            f"the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
            f"nearest-exact (got {mode})"
        )
    n = input.ndim - 2
    sizes, scales = _spatial_sizes(input, size, scale_factor, recompute_scale_factor, n)
    if any(s <= 0 for s in sizes):
        raise runtime_error(
            f"Input and output sizes should be greater than 0, but got input "
            f"({', '.join(str(s) for s in input.shape[2:])}) and output "
            f"({', '.join(str(s) for s in sizes)})"
        )
    kind = {"linear": "linear", "bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    out = input
    for i, (target, scale) in enumerate(zip(sizes, scales)):
        if kind in ("nearest", "nearest-exact", "area") and target == input.shape[i + 2]:
            continue  # the identity: every position reads itself
        out = _resample(out, i + 2, kind, target, align_corners, scale)
    return out


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """interpolate under its older name (torch.nn.functional.upsample)."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """Nearest-neighbour interpolate (torch.nn.functional.upsample_nearest)."""
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Bilinear interpolate with align_corners=True (torch.nn.functional.upsample_bilinear)."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
