"""Spatial rearrangements: pixel_shuffle/pixel_unshuffle (a reshape and a permute) and
unfold/fold (im2col and col2im), composed from views, slices and slice_backward.

unfold takes one strided slice of the padded input per kernel tap; fold places each tap's
column back where it was read (slice_backward) and adds the taps up, so values that overlap
are summed as PyTorch's col2im sums them. nn.functional re-exports these functions.
"""

from __future__ import annotations

from .._tensor import Tensor, dispatch
from .._tensor import ops as E
from ..errors import runtime_error
from ._conv import _ntuple


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C * r^2, H, W) -> (*, C, H * r, W * r) for r = upscale_factor."""
    r = upscale_factor
    if input.ndim < 3:
        raise runtime_error(
            f"pixel_shuffle expects input to have at least 3 dimensions, but got input with "
            f"{input.ndim} dimension(s)"
        )
    if r <= 0:
        raise runtime_error(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise runtime_error(
            f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the "
            f"square of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}"
        )
    k = len(lead)
    x = E.reshape(input, (*lead, c // (r * r), r, r, h, w))
    x = E.permute(x, *range(k), k, k + 3, k + 1, k + 4, k + 2)
    return E.reshape(x, (*lead, c // (r * r), h * r, w * r))


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H * r, W * r) -> (*, C * r^2, H, W) for r = downscale_factor."""
    r = downscale_factor
    if input.ndim < 3:
        raise runtime_error(
            f"pixel_unshuffle expects input to have at least 3 dimensions, but got input with "
            f"{input.ndim} dimension(s)"
        )
    if r <= 0:
        raise runtime_error(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    for name, size, d in (("height", h, -2), ("width", w, -1)):
        if size % r:
            raise runtime_error(
                f"pixel_unshuffle expects {name} to be divisible by downscale_factor, but "
                f"input.size({d})={size} is not divisible by {r}"
            )
    k = len(lead)
    x = E.reshape(input, (*lead, c, h // r, r, w // r, r))
    x = E.permute(x, *range(k), k, k + 2, k + 4, k + 1, k + 3)
    return E.reshape(x, (*lead, c * r * r, h // r, w // r))


def _window_args(kernel_size, dilation, padding, stride):
    kernel, dilation, padding, stride = (
        _ntuple(v, 2, name) for v, name in ((kernel_size, "kernel_size"), (dilation, "dilation"),
                                            (padding, "padding"), (stride, "stride"))
    )
    for name, values, low in (("kernel", kernel, 1), ("stride", stride, 1),
                              ("dilation", dilation, 1), ("padding", padding, 0)):
        if any(v < low for v in values):
            relation = "greater than zero" if low else "non-negative"
            raise runtime_error(
                f"{name} should be {relation}, but got {name}_height: {values[0]} "
                f"{name}_width: {values[1]}"
            )
    return kernel, dilation, padding, stride


def _blocks(spatial, kernel, dilation, padding, stride) -> tuple:
    return tuple(
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, k, d, p, st in zip(spatial, kernel, dilation, padding, stride)
    )


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """im2col: the sliding blocks of (N, C, H, W) or (C, H, W) input as columns,
    (N, C * KH * KW, L) with L the number of blocks."""
    if input.ndim not in (3, 4):
        raise runtime_error(
            f"Expected 3D or 4D (batch mode) tensor with possibly 0 batch size and other "
            f"non-zero dimensions for input, but got: {list(input.shape)}"
        )
    kernel, dilation, padding, stride = _window_args(kernel_size, dilation, padding, stride)
    batched = input.ndim == 4
    x = input if batched else E.unsqueeze(input, 0)
    oh, ow = _blocks(x.shape[2:], kernel, dilation, padding, stride)
    if oh < 1 or ow < 1:
        raise runtime_error(
            f"Given input with spatial size ({x.shape[2]}, {x.shape[3]}), kernel_size={kernel}, "
            f"dilation={dilation}, padding={padding}, calculated shape of the array of sliding "
            f"blocks as ({oh}, {ow}), but its components must be at least one."
        )
    if any(padding):
        x = E.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    taps = []
    for i in range(kernel[0]):
        top = i * dilation[0]
        for j in range(kernel[1]):
            left = j * dilation[1]
            taps.append(x[:, :, top : top + (oh - 1) * stride[0] + 1 : stride[0],
                          left : left + (ow - 1) * stride[1] + 1 : stride[1]])
    n, c = x.shape[:2]
    out = E.reshape(E.stack(taps, 2), (n, c * kernel[0] * kernel[1], oh * ow))
    return out if batched else E.squeeze(out, 0)


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """col2im: columns (N, C * KH * KW, L) or (C * KH * KW, L) summed back into an
    (N, C, *output_size) image, the inverse arrangement of unfold."""
    if input.ndim not in (2, 3):
        raise runtime_error(
            f"Expected 2D or 3D (batch mode) tensor for input with possibly 0 batch size and "
            f"non-zero dimensions for input, but got: {list(input.shape)}"
        )
    output_size = _ntuple(output_size, 2, "output_size")
    kernel, dilation, padding, stride = _window_args(kernel_size, dilation, padding, stride)
    batched = input.ndim == 3
    cols = input if batched else E.unsqueeze(input, 0)
    n, ck, length = cols.shape
    taps = kernel[0] * kernel[1]
    if ck % taps:
        raise runtime_error(
            f"Expected size of input's dimension 1 to be divisible by the product of "
            f"kernel_size, but got input.size(1)={ck} and kernel_size={kernel}."
        )
    oh, ow = _blocks(output_size, kernel, dilation, padding, stride)
    if oh * ow != length or oh < 1 or ow < 1:
        raise runtime_error(
            f"Given output_size={output_size}, kernel_size={kernel}, dilation={dilation}, "
            f"padding={padding}, stride={stride}, expected size of input's dimension 2 to match "
            f"the calculated number of sliding blocks {oh} * {ow} = {oh * ow}, but got "
            f"input.size(2)={length}."
        )
    c = ck // taps
    cols = E.reshape(cols, (n, c, kernel[0], kernel[1], oh, ow))
    padded = (n, c, output_size[0] + 2 * padding[0], output_size[1] + 2 * padding[1])
    out = None
    for i in range(kernel[0]):
        top = i * dilation[0]
        for j in range(kernel[1]):
            left = j * dilation[1]
            placed = dispatch("slice_backward", (cols[:, :, i, j],), {
                "shape": padded,
                "starts": (0, 0, top, left),
                "stops": (n, c, top + (oh - 1) * stride[0] + 1, left + (ow - 1) * stride[1] + 1),
                "steps": (1, 1, stride[0], stride[1]),
            })
            out = placed if out is None else E.add(out, placed)
    out = out[:, :, padding[0] : padding[0] + output_size[0],
              padding[1] : padding[1] + output_size[1]]
    return out if batched else E.squeeze(out, 0)
