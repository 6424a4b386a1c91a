"""Transposed and 3-d convolutions (conv_transpose1d/2d/3d, conv3d), composed from the 2-d
convolution primitives.

A transposed convolution is the input-gradient of a convolution, so conv_transpose2d is one
conv2d_backward_input (the col2im of conv2d's backward) and gets conv2d's kernels, derivative
and compilation. The 3-d forms loop over the depth taps of the kernel: each tap is one 2-d
convolution over the depth slices folded into the batch, so no 3-d primitive is needed.
nn.functional re-exports these functions.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from .._tensor import Tensor, dispatch
from .._tensor import ops as E
from ..errors import runtime_error, type_error, value_error
from ..ir.dtypes import FLOAT

_IntOrInts = int | Sequence[int]


def _as_int(value, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise type_error(f"{name} must be a tuple of ints, but found an element of type "
                         f"{type(value).__name__}: {value!r}")
    return operator.index(value)


def _ntuple(value, n: int, name: str) -> tuple:
    """value as n ints, PyTorch's message when a sequence has another length."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise type_error(f"{name} must be an int or a tuple of ints, got "
                         f"{type(value).__name__}: {value!r}")
    value = tuple(_as_int(v, name) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise runtime_error(
            f"expected {name} to be a single integer value or a list of {n} values to match "
            f"the convolution dimensions, but got {name}={list(value)}"
        )
    return value


def _check_operands(op: str, x: Tensor, weight: Tensor, bias, n: int, groups: int) -> None:
    """The checks every convolution makes of its operands (x already batched)."""
    if weight.ndim != n + 2:
        raise runtime_error(
            f"{op}: expected a {n + 2}-D weight for a {n + 2}-D input, got weight of size "
            f"{list(weight.shape)} and input of size {list(x.shape)}"
        )
    if groups <= 0:
        raise runtime_error("non-positive groups is not supported")
    if x.dtype is not weight.dtype:
        raise runtime_error(
            f"{op}: expected input and weight of one dtype, but got {x.dtype.name} input and "
            f"{weight.dtype.name} weight"
        )
    if x.dtype.category != FLOAT:
        raise type_error(f"{op}: expected a floating-point input, got {x.dtype.name}")


def _check_bias(bias, channels: int, weight: Tensor, transposed: bool) -> None:
    if bias is not None and tuple(bias.shape) != (channels,):
        prefix = "Given transposed=1, " if transposed else "Given "
        raise runtime_error(
            f"{prefix}weight of size {list(weight.shape)}, expected bias to be 1-dimensional "
            f"with {channels} elements, but got bias of size {list(bias.shape)} instead"
        )


def _with_bias(out: Tensor, bias, n: int) -> Tensor:
    return out if bias is None else E.add(out, E.reshape(bias, (1, -1) + (1,) * n))


def _batched(op: str, input: Tensor, n: int) -> bool:
    if input.ndim not in (n + 1, n + 2):
        raise runtime_error(
            f"Expected {n + 1}D (unbatched) or {n + 2}D (batched) input to {op}, but got input "
            f"of size: {list(input.shape)}"
        )
    return input.ndim == n + 2


# -- transposed convolution ----------------------------------------------------------------


def _transposed_sizes(op, x, weight, n, stride, padding, output_padding, dilation, groups):
    """The output's spatial sizes, after PyTorch's checks of the arguments."""
    if any(s <= 0 for s in stride):
        raise runtime_error("non-positive stride is not supported")
    if any(p < 0 for p in padding):
        raise runtime_error("negative padding is not supported")
    if any(p < 0 for p in output_padding):
        raise runtime_error("negative output_padding is not supported")
    if any(d <= 0 for d in dilation):
        raise runtime_error(f"dilation should be greater than zero, but got {list(dilation)}")
    if any(k <= 0 for k in weight.shape[2:]):
        raise runtime_error(
            "kernel size should be greater than zero, but got "
            + " x ".join(map(str, weight.shape[2:]))
        )
    if any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        axes = ("depth", "height", "width")[3 - n :] if n > 1 else ("width",)
        parts = [f"output_padding_{a}: {o}" for a, o in zip(axes, output_padding)]
        parts += [f"stride_{a}: {s}" for a, s in zip(axes, stride)]
        parts += [f"dilation_{a}: {d}" for a, d in zip(axes, dilation)]
        raise runtime_error(
            "output padding must be smaller than either stride or dilation, but got "
            + " ".join(parts)
        )
    if weight.shape[0] % groups:
        raise runtime_error(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension "
            f"0, but got weight of size [{list(weight.shape)}] instead"
        )
    if x.shape[1] != weight.shape[0]:
        raise runtime_error(
            f"Given transposed=1, weight of size {list(weight.shape)}, expected input"
            f"{list(x.shape)} to have {weight.shape[0]} channels, but got {x.shape[1]} channels "
            "instead"
        )
    kernel = weight.shape[2:]
    sizes = tuple(
        (i - 1) * s - 2 * p + d * (k - 1) + o + 1
        for i, s, p, d, k, o in zip(x.shape[2:], stride, padding, dilation, kernel, output_padding)
    )
    if any(size < 1 for size in sizes):
        raise runtime_error(
            f"Given input size per channel: ({' x '.join(str(i) for i in x.shape[2:])}). "
            f"Calculated output size per channel: ({' x '.join(str(s) for s in sizes)}). "
            "Output size is too small"
        )
    return sizes


def _conv_transpose2d_4d(x, weight, out_hw, stride, padding, dilation, groups) -> Tensor:
    """The transposed convolution of a 4-d x: conv2d's input-gradient for an input of
    out_hw (whose excess over the smallest such size is the output padding)."""
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    shape = (x.shape[0], weight.shape[1] * groups) + tuple(out_hw)
    return dispatch("conv2d_backward_input", (x, weight), dict(attrs, input_shape=shape))


def _conv_transpose(op, n, input, weight, bias, stride, padding, output_padding, groups,
                    dilation) -> Tensor:
    batched = _batched(op, input, n)
    x = input if batched else E.unsqueeze(input, 0)
    _check_operands(op, x, weight, bias, n, groups)
    stride, padding, output_padding, dilation = (
        _ntuple(v, n, name)
        for v, name in ((stride, "stride"), (padding, "padding"),
                        (output_padding, "output_padding"), (dilation, "dilation"))
    )
    sizes = _transposed_sizes(op, x, weight, n, stride, padding, output_padding, dilation, groups)
    _check_bias(bias, weight.shape[1] * groups, weight, transposed=True)
    if n == 1:
        out = _conv_transpose2d_4d(E.unsqueeze(x, 2), E.unsqueeze(weight, 2), (1,) + sizes,
                                   (1,) + stride, (0,) + padding, (1,) + dilation, groups)
        out = E.squeeze(out, 2)
    elif n == 2:
        out = _conv_transpose2d_4d(x, weight, sizes, stride, padding, dilation, groups)
    else:
        out = _conv_transpose3d_5d(x, weight, sizes, stride, padding, output_padding, dilation,
                                   groups)
    out = _with_bias(out, bias, n)
    return out if batched else E.squeeze(out, 0)


def _conv_transpose3d_5d(x, weight, sizes, stride, padding, output_padding, dilation, groups):
    """Each depth tap kd of the kernel: a 2-d transposed convolution of every input depth
    slice, added at output depths d * stride + kd * dilation (before the padding is cut)."""
    n, _, depth, h, w = x.shape
    out_channels = weight.shape[1] * groups
    folded = E.reshape(E.permute(x, 0, 2, 1, 3, 4), (n * depth, x.shape[1], h, w))
    full = (depth - 1) * stride[0] + dilation[0] * (weight.shape[2] - 1) + 1 + output_padding[0]
    out = None
    for kd in range(weight.shape[2]):
        plane = _conv_transpose2d_4d(folded, weight[:, :, kd], sizes[1:], stride[1:],
                                     padding[1:], dilation[1:], groups)
        plane = E.permute(E.reshape(plane, (n, depth, out_channels) + tuple(sizes[1:])),
                          0, 2, 1, 3, 4)
        start = kd * dilation[0]
        placed = dispatch("slice_backward", (plane,), {
            "shape": (n, out_channels, full) + tuple(sizes[1:]),
            "starts": (0, 0, start, 0, 0),
            "stops": (n, out_channels, start + (depth - 1) * stride[0] + 1) + tuple(sizes[1:]),
            "steps": (1, 1, stride[0], 1, 1),
        })
        out = placed if out is None else E.add(out, placed)
    return out[:, :, padding[0] : padding[0] + sizes[0]]


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrInts = 1,
    padding: _IntOrInts = 0,
    output_padding: _IntOrInts = 0,
    groups: int = 1,
    dilation: _IntOrInts = 1,
) -> Tensor:
    """Transposed 1-d convolution of (N, C_in, L) or (C_in, L) input with a weight of shape
    (C_in, C_out / groups, K)."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrInts = 1,
    padding: _IntOrInts = 0,
    output_padding: _IntOrInts = 0,
    groups: int = 1,
    dilation: _IntOrInts = 1,
) -> Tensor:
    """Transposed 2-d convolution of (N, C_in, H, W) or (C_in, H, W) input with a weight of
    shape (C_in, C_out / groups, KH, KW): the gradient of conv2d with respect to its input."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrInts = 1,
    padding: _IntOrInts = 0,
    output_padding: _IntOrInts = 0,
    groups: int = 1,
    dilation: _IntOrInts = 1,
) -> Tensor:
    """Transposed 3-d convolution of (N, C_in, D, H, W) or (C_in, D, H, W) input with a weight
    of shape (C_in, C_out / groups, KD, KH, KW)."""
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


# -- 3-d convolution -----------------------------------------------------------------------


def _same_padding(x: Tensor, kernel, stride, dilation) -> tuple[Tensor, tuple]:
    """padding='same': half the kernel's extent each side, the odd element on the right (as
    an explicit pad of x, since the primitives pad both sides alike)."""
    if any(s != 1 for s in stride):
        raise runtime_error("padding='same' is not supported for strided convolutions")
    total = [d * (k - 1) for d, k in zip(dilation, kernel)]
    lo = [t // 2 for t in total]
    if any(t % 2 for t in total):
        pads = []
        for t, low in zip(reversed(total), reversed(lo)):
            pads += [low, t - low]
        return E.pad(x, pads), (0,) * len(total)
    return x, tuple(lo)


def conv3d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: _IntOrInts = 1,
    padding: _IntOrInts | str = 0,
    dilation: _IntOrInts = 1,
    groups: int = 1,
) -> Tensor:
    """3-d convolution of (N, C, D, H, W) or (C, D, H, W) input with a weight of shape
    (C_out, C / groups, KD, KH, KW); padding may be 'same' or 'valid'."""
    batched = _batched("conv3d", input, 3)
    x = input if batched else E.unsqueeze(input, 0)
    _check_operands("conv3d", x, weight, bias, 3, groups)
    stride, dilation = _ntuple(stride, 3, "stride"), _ntuple(dilation, 3, "dilation")
    if any(s <= 0 for s in stride):
        raise runtime_error("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise runtime_error(f"dilation should be greater than zero, but got {list(dilation)}")
    if any(k <= 0 for k in weight.shape[2:]):
        raise runtime_error(
            "kernel size should be greater than zero, but got "
            + " x ".join(map(str, weight.shape[2:]))
        )
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise runtime_error(f"Invalid padding string: '{padding}'")
        if padding == "same":
            x, padding = _same_padding(x, weight.shape[2:], stride, dilation)
        else:
            padding = (0, 0, 0)
    padding = _ntuple(padding, 3, "padding")
    if any(p < 0 for p in padding):
        raise runtime_error("negative padding is not supported")
    out_channels, cg = weight.shape[:2]
    if x.shape[1] != cg * groups or out_channels % groups:
        raise runtime_error(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
            f"{list(x.shape)} to have {cg * groups} channels, but got {x.shape[1]} channels "
            "instead"
        )
    padded = [i + 2 * p for i, p in zip(x.shape[2:], padding)]
    extent = [d * (k - 1) + 1 for d, k in zip(dilation, weight.shape[2:])]
    if any(e > p for e, p in zip(extent, padded)):
        raise runtime_error(
            f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). "
            f"Kernel size: ({' x '.join(map(str, extent))}). Kernel size can't be greater than "
            "actual input size"
        )
    _check_bias(bias, out_channels, weight, transposed=False)
    if padding[0]:
        x = E.pad(x, (0, 0, 0, 0, padding[0], padding[0]))
    n, c, depth = x.shape[:3]
    out_depth = (depth - extent[0]) // stride[0] + 1
    attrs = {"stride": stride[1:], "padding": padding[1:], "dilation": dilation[1:],
             "groups": groups}
    out = None
    for kd in range(weight.shape[2]):
        start = kd * dilation[0]
        taps = x[:, :, start : start + (out_depth - 1) * stride[0] + 1 : stride[0]]
        folded = E.reshape(E.permute(taps, 0, 2, 1, 3, 4), (n * out_depth, c) + x.shape[3:])
        plane = dispatch("conv2d", (folded, weight[:, :, kd]), attrs)
        out = plane if out is None else E.add(out, plane)
    out = E.reshape(out, (n, out_depth) + tuple(out.shape[1:]))
    out = _with_bias(E.permute(out, 0, 2, 1, 3, 4), bias, 3)
    return out if batched else E.squeeze(out, 0)


def conv_output_padding(
    input: Tensor, output_size, stride, padding, kernel_size, dilation, n: int
) -> tuple:
    """The output_padding that makes a transposed convolution produce output_size (the
    spatial sizes, or the full sizes with batch and channels), as ConvTransposeNd.forward's
    output_size argument asks; ValueError when no output_padding reaches it."""
    non_spatial = 2 if input.ndim == n + 2 else 1
    output_size = tuple(output_size)
    if len(output_size) == non_spatial + n:
        output_size = output_size[non_spatial:]
    if len(output_size) != n:
        raise value_error(
            f"ConvTranspose{n}D: for {input.ndim}D input, output_size must have {n} or "
            f"{non_spatial + n} elements (got {len(output_size)})"
        )
    spatial = input.shape[non_spatial:]
    smallest = [
        (spatial[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel_size[d] - 1) + 1
        for d in range(n)
    ]
    largest = [s + stride[d] - 1 for d, s in enumerate(smallest)]
    for size, low, high in zip(output_size, smallest, largest):
        if not low <= size <= high:
                raise value_error(
                f"requested an output size of {list(output_size)}, but valid sizes range from "
                f"{smallest} to {largest} (for an input of {list(spatial)})"
            )
    return tuple(size - low for size, low in zip(output_size, smallest))


__all__ = ["conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]
