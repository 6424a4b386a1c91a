"""Ops written from primitives that rearrange elements: roll, diagonal, diag, diag_embed, trace,
unfold, meshgrid, repeat_interleave. Traceable and differentiable through their primitives."""

from __future__ import annotations

import builtins
import operator

import numpy as np

from ...errors import runtime_error, type_error, value_error
from ...ir.schema import normalize_dim
from ...runtime.device import CPU, to_device
from .. import hooks
from ..factories import arange, tensor, zeros
from ..tensor import Tensor
from .index import index_add, index_select
from .shape import cat, expand, movedim, narrow, reshape, unsqueeze


def roll(input: Tensor, shifts, dims=None) -> Tensor:
    """Elements shifted along dims, those past the end coming back at the start; without
    dims, along the flattened tensor (then reshaped back)."""
    if dims is None:
        if isinstance(shifts, (tuple, list)):
            if len(shifts) != 1:
                raise runtime_error(f"roll: shifts {tuple(shifts)} need dims of the same length")
            shifts = shifts[0]
        return reshape(roll(reshape(input, -1), shifts, 0), *input.shape)
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims):
        raise runtime_error(f"roll: shifts and dims must align, got shifts {shifts} and dims "
                            f"{dims}")
    out = input
    for shift, dim in zip(shifts, dims):
        dim = normalize_dim(dim, input.ndim)
        size = input.shape[dim]
        if size == 0:
            continue
        shift %= size
        if shift:
            out = cat([narrow(out, dim, size - shift, shift), narrow(out, dim, 0, size - shift)],
                      dim)
    return out


def _diagonal_positions(rows: int, cols: int, offset: int) -> np.ndarray:
    """The flat positions (row * cols + col) of a rows x cols matrix's diagonal `offset`."""
    if offset >= 0:
        n = builtins.max(builtins.min(rows, cols - offset), 0)
        return np.arange(n, dtype=np.int64) * (cols + 1) + offset
    n = builtins.max(builtins.min(rows + offset, cols), 0)
    return np.arange(n, dtype=np.int64) * (cols + 1) - offset * cols


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of the (dim1, dim2) planes, as a new last dim (a copy, where PyTorch gives
    a view: writing into it does not write input)."""
    if input.ndim < 2:
        raise runtime_error(f"diagonal(): expected a tensor of at least 2 dims, got "
                            f"{input.ndim}")
    dim1, dim2 = normalize_dim(dim1, input.ndim), normalize_dim(dim2, input.ndim)
    if dim1 == dim2:
        raise runtime_error(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    planes = movedim(input, (dim1, dim2), (-2, -1))
    rows, cols = planes.shape[-2], planes.shape[-1]
    flat = reshape(planes, *planes.shape[:-2], rows * cols)
    positions = tensor(_diagonal_positions(rows, cols, offset), dtype="int64",
                       device=input.device)
    return index_select(flat, -1, positions)


_diagonal_of = diagonal  # diag's argument is named diagonal, as PyTorch's


def diag(input: Tensor, diagonal: int = 0) -> Tensor:
    """A 1-D tensor's square matrix with it on diagonal `diagonal`, or a matrix's diagonal."""
    if input.ndim == 2:
        return _diagonal_of(input, diagonal)
    if input.ndim != 1:
        raise runtime_error(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    n = input.shape[0] + builtins.abs(diagonal)
    positions = tensor(_diagonal_positions(n, n, diagonal), dtype="int64", device=input.device)
    flat = index_add(zeros(n * n, dtype=input.dtype, device=input.device), 0, positions, input)
    return reshape(flat, n, n)


def diag_embed(input: Tensor, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """Square matrices in the (dim1, dim2) planes of the output, each with a row of input's
    last dim on its diagonal `offset`."""
    dim1, dim2 = normalize_dim(dim1, input.ndim + 1), normalize_dim(dim2, input.ndim + 1)
    if dim1 == dim2:
        raise runtime_error(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    vectors = reshape(input, 1) if input.ndim == 0 else input
    n = vectors.shape[-1] + builtins.abs(offset)
    positions = tensor(_diagonal_positions(n, n, offset), dtype="int64", device=input.device)
    batch = tuple(vectors.shape[:-1])
    flat = index_add(zeros(*batch, n * n, dtype=input.dtype, device=input.device), -1,
                     positions, vectors)
    return movedim(reshape(flat, *batch, n, n), (-2, -1), (dim1, dim2))


def trace(input: Tensor) -> Tensor:
    """The sum of a matrix's diagonal (integers summed in int64)."""
    if input.ndim != 2:
        raise runtime_error(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    return diagonal(input).sum()


def unfold(input: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Every slice of `size` elements along dimension, `step` apart, as a new last dim (a
    copy, where PyTorch gives a view: writing into it does not write input)."""
    dim = normalize_dim(dimension, input.ndim)
    length = input.shape[dim] if input.ndim else 1
    if size > length:
        raise runtime_error(f"maximum size for tensor at dimension {dim} is {length} but size "
                            f"is {size}")
    if step <= 0:
        raise runtime_error(f"step is {step} but must be > 0")
    if size < 0:
        raise runtime_error(f"size is {size} but must be >= 0")
    if input.ndim == 0:
        return reshape(input, 1)
    count = (length - size) // step + 1
    positions = np.arange(count)[:, None] * step + np.arange(size)
    positions = tensor(positions.reshape(-1), dtype="int64", device=input.device)
    windows = index_select(input, dim, positions)
    shape = tuple(windows.shape[:dim]) + (count, size) + tuple(windows.shape[dim + 1:])
    return movedim(reshape(windows, *shape), dim + 1, -1)


def meshgrid(*tensors, indexing: str = "ij"):
    """Coordinate grids of 1-D tensors: "ij" (matrix, the default) or "xy" (Cartesian)."""
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise value_error(f"torch.meshgrid: indexing must be one of 'xy' or 'ij', but received: "
                          f"{indexing}")
    for t in tensors:
        if not isinstance(t, Tensor) or t.ndim > 1:
            raise runtime_error("torch.meshgrid: Expected 0D or 1D tensor in the tensor list")
    vectors = [reshape(t, -1) for t in tensors]
    swap = indexing == "xy" and len(vectors) >= 2
    if swap:
        vectors[0], vectors[1] = vectors[1], vectors[0]
    shape = tuple(v.shape[0] for v in vectors)
    grids = []
    for k, v in enumerate(vectors):
        view = [1] * len(vectors)
        view[k] = shape[k]
        grids.append(expand(reshape(v, *view), *shape))
    if swap:  # built for (y, x, ...): the first two grids are Cartesian's (x, y)
        grids[0], grids[1] = grids[1], grids[0]
    return tuple(grids)


def repeat_interleave(input: Tensor, repeats=None, dim=None, *, output_size=None) -> Tensor:
    """Each element repeated `repeats` times along dim (the flattened input without dim);
    repeats an int, or a tensor with one count per element. With input alone (counts), the
    indices 0, 1, ... each repeated its count of times."""
    if repeats is None:
        if input.dtype.is_floating_point or input.ndim > 1:
            raise runtime_error("repeat_interleave: repeats must be 0-dim or 1-dim tensor")
        counts = reshape(input, -1)
        return repeat_interleave(arange(counts.shape[0], device=input.device), counts)
    if not isinstance(repeats, Tensor):
        try:
            repeats = operator.index(repeats)  # numpy integers count as ints
        except TypeError:
            pass
    if dim is None:
        input, dim = reshape(input, -1), 0
    dim = normalize_dim(dim, input.ndim)
    if isinstance(repeats, Tensor) and repeats.numel() == 1:
        repeats = int(repeats.item())
    if isinstance(repeats, int):
        if repeats < 0:
            raise runtime_error("repeat_interleave: repeats can not be negative")
        expanded = unsqueeze(input, dim + 1)
        shape = list(expanded.shape)
        shape[dim + 1] = repeats
        out_shape = list(input.shape)
        out_shape[dim] *= repeats
        return reshape(expand(expanded, *shape), *out_shape)
    if not isinstance(repeats, Tensor):
        raise type_error(f"repeat_interleave: repeats must be an int or a tensor, got "
                         f"{type(repeats).__name__}")
    if hooks.active_trace is not None:  # the values become the graph's: tolist guards them
        counts = np.asarray(repeats.tolist(), dtype=np.int64).reshape(-1)
    else:  # one Python int per element costs ~50 ns: 50 ms for 1M repeats
        counts = to_device(repeats._data, CPU).astype(np.int64).reshape(-1)
    if len(counts) != input.shape[dim]:
        raise runtime_error(f"repeats must have the same size as input along dim, but got "
                            f"repeats.size(0) = {len(counts)} and input.size({dim}) = "
                            f"{input.shape[dim]}")
    if bool((counts < 0).any()):
        raise runtime_error("repeat_interleave: repeats can not be negative")
    index = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return index_select(input, dim, tensor(index, dtype="int64", device=input.device))
