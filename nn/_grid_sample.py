"""F.grid_sample and F.affine_grid (spatial transformer networks), composed from gather.

grid_sample reads the input at the positions a grid gives, in [-1, 1] per spatial dim. Each
output position is a weighted sum of a few taps (1 for nearest, 2 per dim for bilinear and
trilinear, 4 per dim for bicubic): the taps' flat indices are computed from the grid in tensor
ops and read with one gather over the flattened spatial dims, and their weights are tensor
functions of the grid. So the input's gradient is gather's (a scatter-add) and the grid's
flows through the weights, as PyTorch's grid_sampler backward computes them: coordinates on a
border, where clipping or reflection folds them, get no gradient, and nearest gives zeros.
affine_grid is a constant base grid times theta. nn.functional re-exports both.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np

from .._tensor import Tensor
from .._tensor import ops as E
from .._tensor.factories import tensor
from ..errors import (
    EmberNotImplementedError,
    not_implemented_error,
    runtime_error,
    value_error,
)

_MODES = ("bilinear", "nearest", "bicubic")
_PADDING_MODES = ("zeros", "border", "reflection")
_CUBIC_A = -0.75
_ALIGN_CORNERS_WARNING = (
    "Default grid_sample and affine_grid behavior has changed to align_corners=False since "
    "1.3.0. Please specify align_corners=True if the old behavior is desired. See the "
    "documentation of grid_sample for details."
)


def _minus(number: float, x: Tensor) -> Tensor:
    """number - x (the same IEEE result as -x + number)."""
    return E.add(E.neg(x), number)


def _unnormalize(coord: Tensor, size: int, align_corners: bool, rank: int) -> Tensor:
    """Grid values in [-1, 1] to input positions in [0, size - 1] (or half a pixel beyond).

    PyTorch's 4-d kernel and its 5-d kernel order the arithmetic differently; each rank
    follows its own so that the positions round alike."""
    if rank == 4:
        if align_corners:
            return E.mul(E.add(coord, 1.0), (size - 1) / 2)
        return E.sub(E.mul(E.add(coord, 1.0), size / 2), 0.5)
    if align_corners:
        return E.mul(E.div(E.add(coord, 1.0), 2.0), float(size - 1))
    return E.div(E.sub(E.mul(E.add(coord, 1.0), float(size)), 1.0), 2.0)


def _clip(position: Tensor, size: int) -> Tensor:
    """position clamped to [0, size - 1]; a position on either border gets no gradient, as in
    PyTorch's clip_coordinates_set_grad."""
    high = float(size - 1)
    inside = E.logical_and(E.gt(position, 0.0), E.lt(position, high))
    return E.where(inside, position, E.clamp(position.detach(), 0.0, high))


def _reflect(position: Tensor, twice_low: int, twice_high: int) -> Tensor:
    """position reflected off low and high until it lies between them (reflect_coordinates)."""
    if twice_low == twice_high:
        return E.mul(position, 0.0)
    low = twice_low / 2
    span = (twice_high - twice_low) / 2
    distance = E.abs(E.sub(position, low))
    extra = E.fmod(distance, span)
    flips = E.floor(E.div(distance, span))
    even = E.eq(E.remainder(flips, 2.0), 0.0)
    return E.where(even, E.add(extra, low), E.add(_minus(span, extra), low))


def _pad_position(position: Tensor, size: int, padding_mode: str, align_corners: bool) -> Tensor:
    """Apply padding_mode to a position: border clips it, reflection folds then clips it."""
    if padding_mode == "border":
        return _clip(position, size)
    if padding_mode == "reflection":
        if align_corners:
            position = _reflect(position, 0, 2 * (size - 1))
        else:
            position = _reflect(position, -1, 2 * size - 1)
        return _clip(position, size)
    return position


def _cubic_weights(t: Tensor) -> list[Tensor]:
    """The weights of the taps at floor - 1 .. floor + 2 for a fraction t (A = -0.75)."""
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return E.add(E.mul(E.mul(E.sub(E.mul(x, a + 2), a + 3), x), x), 1.0)

    def far(x):  # 1 < |x| < 2
        return E.sub(E.mul(E.add(E.mul(E.sub(E.mul(x, a), 5 * a), x), 8 * a), x), 4 * a)

    rest = _minus(1.0, t)
    return [far(E.add(t, 1.0)), near(t), near(rest), far(E.add(rest, 1.0))]


def _taps(coord: Tensor, size: int, mode: str, padding_mode: str, align_corners: bool,
          rank: int) -> list[tuple[Tensor, Tensor | None]]:
    """(position, weight) of each tap along one dim; a nearest tap has no weight."""
    position = _unnormalize(coord, size, align_corners, rank)
    if mode == "bicubic":
        # the weights see the unpadded position; padding folds each tap's position
        first = E.floor(position)
        weights = _cubic_weights(E.sub(position, first))
        return [
            (_pad_position(E.add(first, float(k - 1)), size, padding_mode, align_corners), w)
            for k, w in enumerate(weights)
        ]
    position = _pad_position(position, size, padding_mode, align_corners)
    if mode == "nearest":
        return [(E.round(position), None)]
    first = E.floor(position)
    high = E.sub(position, first)
    return [(first, _minus(1.0, high)), (E.add(first, 1.0), high)]


def _check_grid_sample(input: Tensor, grid: Tensor, mode: str) -> None:
    if input.ndim not in (4, 5) or grid.ndim != input.ndim:
        if input.ndim != grid.ndim or input.ndim < 1 or input.shape[0] != grid.shape[0]:
            raise runtime_error(
                f"grid_sampler(): expected grid and input to have same batch size, but got "
                f"input with sizes {list(input.shape)} and grid with sizes {list(grid.shape)}"
            )
        raise runtime_error(
            f"grid_sampler(): expected 4D or 5D input and grid with same number of dimensions, "
            f"but got input with sizes {list(input.shape)} and grid with sizes "
            f"{list(grid.shape)}"
        )
    if input.shape[0] != grid.shape[0]:
        raise runtime_error(
            f"grid_sampler(): expected grid and input to have same batch size, but got input "
            f"with sizes {list(input.shape)} and grid with sizes {list(grid.shape)}"
        )
    if grid.shape[-1] != input.ndim - 2:
        raise runtime_error(
            f"grid_sampler(): expected grid to have size {input.ndim - 2} in last dimension, "
            f"but got grid with sizes {list(grid.shape)}"
        )
    for d in range(2, input.ndim):
        if input.shape[d] <= 0:
            raise runtime_error(
                f"grid_sampler(): expected input to have non-empty spatial dimensions, but "
                f"input has sizes {list(input.shape)} with dimension {d} being empty"
            )
    if mode == "bicubic" and input.ndim != 4:
        raise runtime_error("grid_sampler(): bicubic interpolation only supports 4D input")
    if not input.dtype.is_floating_point:
        raise not_implemented_error(
            f"grid_sample: input of dtype {input.dtype.name}; it samples floating-point input"
        )
    if grid.dtype is not input.dtype:
        raise runtime_error(
            f"grid_sampler(): expected input and grid to have the same dtype, but input has "
            f"{input.dtype.name} and grid has {grid.dtype.name}"
        )


def grid_sample(
    input: Tensor,
    grid: Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool | None = None,
) -> Tensor:
    """Sample (N, C, H, W) input at the (x, y) positions of an (N, H_out, W_out, 2) grid, or
    (N, C, D, H, W) input at the (x, y, z) of an (N, D_out, H_out, W_out, 3) grid
    (torch.nn.functional.grid_sample)."""
    if mode not in _MODES:
        raise value_error(
            f"nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' or "
            f"'bicubic', but got: '{mode}'"
        )
    if padding_mode not in _PADDING_MODES:
        raise value_error(
            "nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or "
            f"'reflection', but got: '{padding_mode}'"
        )
    if align_corners is None:
        warnings.warn(_ALIGN_CORNERS_WARNING, stacklevel=2)
        align_corners = False
    _check_grid_sample(input, grid, mode)
    rank = input.ndim
    n = rank - 2
    batch, channels = int(input.shape[0]), int(input.shape[1])
    sizes = [int(s) for s in input.shape[2:]]
    out_sizes = tuple(int(s) for s in grid.shape[1:-1])
    points = math.prod(out_sizes)
    flat = E.reshape(input, (batch, channels, math.prod(sizes)))
    # one position per output point, with a unit channel dim that broadcasts over C;
    # grid's last dim lists x (the last spatial dim) first
    coords = E.reshape(grid, (batch, 1, points, n))
    taps = [
        _taps(E.select(coords, -1, n - 1 - d), sizes[d], mode, padding_mode,
              bool(align_corners), rank)
        for d in range(n)
    ]
    out = None
    for corner in itertools.product(*taps):
        index, weight, valid = None, None, None
        for size, (position, w) in zip(sizes, corner):
            inside = E.logical_and(E.ge(position, 0.0), E.le(position, float(size - 1)))
            valid = inside if valid is None else E.logical_and(valid, inside)
            # an outside position reads position 0, with weight 0 when padding is zeros
            i = E.cast(E.where(inside, position, 0.0), "int64")
            index = i if index is None else E.add(E.mul(index, size), i)
            if w is not None:
                weight = w if weight is None else E.mul(weight, w)
        if weight is None:
            # nearest: weight one, and the grid's gradient zero as PyTorch gives it (round's)
            position = corner[0][0]
            weight = E.add(E.sub(position, position), 1.0)
        weight = E.where(valid, weight, 0.0)
        value = E.gather(flat, 2, E.expand(index, (batch, channels, points)))
        term = E.mul(value, weight)
        out = term if out is None else E.add(out, term)
    return E.reshape(out, (batch, channels, *out_sizes))


def _linspace_from_neg_one(steps: int, align_corners: bool, dtype: np.dtype) -> np.ndarray:
    """PyTorch's linspace(-1, 1, steps) in dtype (its two-sided formula), scaled by
    (steps - 1) / steps when the corners are not aligned."""
    if steps <= 1:
        return np.zeros(1, dtype)
    t = dtype.type
    step = (t(1) - t(-1)) / t(steps - 1)
    i = np.arange(steps)
    half = steps // 2
    values = np.where(
        i < half, t(-1) + step * i.astype(dtype), t(1) - step * (steps - i - 1).astype(dtype)
    ).astype(dtype)
    if not align_corners:
        values = (values * t(steps - 1) / t(steps)).astype(dtype)
    return values


def _base_grid(spatial: Sequence[int], align_corners: bool, dtype: np.dtype) -> np.ndarray:
    """(prod(spatial), n + 1): per output point, its x, y(, z) in [-1, 1] and a 1."""
    n = len(spatial)
    base = np.ones((*spatial, n + 1), dtype)
    for k in range(n):
        d = n - 1 - k  # coordinate k (x first) runs along spatial dim d (last first)
        shape = [1] * n
        shape[d] = spatial[d]
        base[..., k] = _linspace_from_neg_one(spatial[d], align_corners, dtype).reshape(shape)
    return base.reshape(-1, n + 1)


def affine_grid(theta: Tensor, size: Sequence[int], align_corners: bool | None = None) -> Tensor:
    """The (N, H, W, 2) or (N, D, H, W, 3) sampling grid of a batch of affine matrices theta,
    (N, 2, 3) or (N, 3, 4), for an output of `size` (torch.nn.functional.affine_grid)."""
    if align_corners is None:
        warnings.warn(_ALIGN_CORNERS_WARNING, stacklevel=2)
        align_corners = False
    if not theta.dtype.is_floating_point:
        raise value_error(f"Expected theta to have floating point type, but got {theta.dtype}")
    size = tuple(int(s) for s in size)
    if len(size) not in (4, 5):
        raise EmberNotImplementedError(
            "affine_grid only supports 4D and 5D sizes, for 2D and 3D affine transforms, "
            f"respectively. Got size {size}."
        )
    n = len(size) - 2
    if theta.ndim != 3 or tuple(theta.shape[-2:]) != (n, n + 1):
        kind = f"{n}D affine matrices of shape Nx{n}x{n + 1}"
        raise value_error(f"Expected a batch of {kind} for size {size}. Got {tuple(theta.shape)}.")
    spatial = size[2:]
    if align_corners and min(spatial) == 1:
        warnings.warn(
            "Since version 1.3.0, affine_grid behavior has changed for unit-size grids when "
            "align_corners=True. This is not an intended use case of affine_grid. See the "
            "documentation of affine_grid for details.",
            stacklevel=2,
        )
    elif min(size) <= 0:
        raise value_error(f"Expected non-zero, positive output size. Got {size}")
    if int(theta.shape[0]) != size[0]:
        raise runtime_error(
            f"affine_grid: theta has a batch of {int(theta.shape[0])} matrices for size {size}"
        )
    base = tensor(_base_grid(spatial, bool(align_corners), theta.dtype.np), device=theta.device)
    grid = E.matmul(base, E.transpose(theta, 1, 2))  # (N, prod(spatial), n)
    return E.reshape(grid, (size[0], *spatial, n))
