"""Shape kernels: views return numpy views of their input; the rest copy."""

from __future__ import annotations

import numpy as np

from .registry import kernel


@kernel("reshape")
def _reshape(xp, x, shape):
    return x.reshape(shape)


@kernel("view")
def _view(xp, x, shape):
    out = x.view()
    try:
        out.shape = tuple(shape)
    except AttributeError:
        from ...errors import runtime_error

        raise runtime_error(
            f"view size is not compatible with input tensor's size and stride (at least one "
            f"dimension spans across two contiguous subspaces): shape {list(x.shape)} with "
            f"strides {list(s // x.itemsize for s in x.strides)} to {list(shape)}. Use "
            ".reshape(...) instead."
        ) from None
    return out


@kernel("view_dtype")
def _view_dtype(xp, x, dtype):
    from ...ir.dtypes import as_dtype

    return x.view(as_dtype(dtype).np)  # the same bytes, read as another dtype


@kernel("permute")
def _permute(xp, x, dims):
    return x.transpose(dims)


@kernel("squeeze")
def _squeeze(xp, x, dims):
    axes = tuple(d for d in dims if x.shape[d] == 1)
    return xp.squeeze(x, axis=axes) if axes else x.view()


@kernel("unsqueeze")
def _unsqueeze(xp, x, dim):
    return xp.expand_dims(x, dim)


@kernel("expand")
def _expand(xp, x, shape):
    offset = len(shape) - x.ndim
    target = tuple(x.shape[i - offset] if s == -1 else s for i, s in enumerate(shape))
    if target[offset:] == x.shape and all(s == 1 for s in target[:offset]):
        # nothing repeats, so the view stays writable, as PyTorch's is
        return x.reshape(target)
    return xp.broadcast_to(x, target)


_SLICES: dict = {}  # (starts, stops, steps) -> the index of slice objects, made once


@kernel("slice")
def _slice(xp, x, starts, stops, steps):
    # a model slices the same way every step (x[:, :8]): the index is looked up, not built
    # (its generator and three slice objects were ~0.5 us of an eager slice's ~4.3)
    try:
        return x[_SLICES[starts, stops, steps]]
    except (KeyError, TypeError):  # not made yet; attrs given as lists
        index = tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))
        if len(_SLICES) < 4096 and isinstance(starts, tuple):
            _SLICES[starts, stops, steps] = index
        return x[index]


@kernel("slice_backward")
def _slice_backward(xp, g, shape, starts, stops, steps):
    out = xp.zeros(shape, dtype=g.dtype)
    out[tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))] = g
    return out


@kernel("view_scatter")
def _view_scatter(xp, base, src, view_op, **attrs):
    from .registry import KERNELS

    out = base.copy()  # contiguous: every scatterable view of it is a view, never a copy
    view = KERNELS[view_op](xp, out, **attrs)
    if not xp.may_share_memory(view, out):
        raise AssertionError(f"view_scatter: {view_op} gave a copy, not a view")
    view[...] = src
    return out


@kernel("repeat")
def _repeat(xp, x, repeats):
    x = x.reshape((1,) * (len(repeats) - x.ndim) + x.shape)
    return xp.tile(x, repeats)


@kernel("cat")
def _cat(xp, *xs, dim):
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = xp.promote_types(dtype, x.dtype)
    return xp.concatenate([x.astype(dtype, copy=False) for x in xs], axis=dim)


@kernel("flip")
def _flip(xp, x, dims):
    return xp.flip(x, axis=tuple(dims)).copy() if dims else x.copy()


def pad_source_index(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Where each of the size + lo + hi output positions of a reflect, replicate or circular
    pad reads the input (PyTorch's index rule: positions count from the input's own edges, so
    a negative pad on one side crops without moving the other side's mirror; a circular pad
    wraps around what the negative pads leave)."""
    if mode == "circular":
        start = max(-lo, 0)
        kept = size - start - max(-hi, 0)
        return start + np.arange(-max(lo, 0), kept + max(hi, 0)) % max(kept, 1)
    position = np.arange(-lo, size + hi)
    if mode == "replicate":
        return np.clip(position, 0, size - 1)
    last = size - 1  # reflect: mirrored about the first and last elements, once
    position = np.abs(position)
    return np.where(position > last, 2 * last - position, position)


@kernel("pad")
def _pad(xp, x, pads, mode="constant", value=0.0):
    if mode != "constant":
        for i in range(len(pads) // 2):
            axis = x.ndim - 1 - i
            index = pad_source_index(x.shape[axis], pads[2 * i], pads[2 * i + 1], mode)
            x = xp.take(x, xp.asarray(index), axis=axis)
        return x
    width = [(0, 0)] * x.ndim
    for i in range(len(pads) // 2):
        width[x.ndim - 1 - i] = (pads[2 * i], pads[2 * i + 1])
    # negative padding crops
    crop = tuple(slice(-lo if lo < 0 else None, hi if hi < 0 else None) for lo, hi in width)
    width = [(max(lo, 0), max(hi, 0)) for lo, hi in width]
    return xp.pad(x[crop], width, mode="constant", constant_values=x.dtype.type(value))


@kernel("tril")
def _tril(xp, x, diagonal=0):
    return xp.tril(x, diagonal)


@kernel("triu")
def _triu(xp, x, diagonal=0):
    return xp.triu(x, diagonal)
