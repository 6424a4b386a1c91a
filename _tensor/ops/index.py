"""Indexing ops: ember.gather, ember.scatter, ember.index_select, ember.masked_fill, ..."""

from __future__ import annotations

from ...errors import runtime_error
from ...ir.schema import broadcast_shapes, normalize_dim
from ..dispatch import dispatch
from ..factories import full
from ..tensor import Tensor
from .elementwise import cast, where
from .shape import broadcast_tensors, select

# -- indexing ops ----------------------------------------------------------------------------


def gather(input, dim: int, index) -> Tensor:
    if input.ndim == 0:  # a 0-d input gathers as a 1-element vector
        normalize_dim(dim, 0)
        return gather(input.reshape(1), 0, index.reshape(1)).reshape(())
    return dispatch("gather", (input, index), {"dim": normalize_dim(dim, input.ndim)})


def _scatter_src(input, index, src):
    if isinstance(src, Tensor):
        return src
    return full(tuple(index.shape), src, dtype=input.dtype, device=input.device)


_SCATTER_REDUCE = {"add": "sum", "multiply": "prod"}


def scatter(input, dim: int, index, src=None, *, value=None, reduce=None) -> Tensor:
    """input with src (or value) written where index points along dim; with reduce='add' or
    'multiply', accumulated into what is there instead."""
    src = _scatter_src(input, index, value if src is None else src)
    if reduce is not None:
        if reduce not in _SCATTER_REDUCE:
            raise runtime_error(f"reduce argument must be either add or multiply, got {reduce}.")
        return scatter_reduce(input, dim, index, src, _SCATTER_REDUCE[reduce])
    return dispatch("scatter", (input, index, src), {"dim": normalize_dim(dim, input.ndim)})


def scatter_reduce(input, dim: int, index, src, reduce: str, *,
                   include_self: bool = True) -> Tensor:
    """input with each element of src reduced ("sum", "prod", "mean", "amax" or "amin") into
    the place index names along dim, together with input's own value when include_self."""
    return dispatch("scatter_reduce", (input, index, src),
                    {"dim": normalize_dim(dim, input.ndim), "reduce": reduce,
                     "include_self": bool(include_self)})


def scatter_add(input, dim: int, index, src) -> Tensor:
    return dispatch("scatter_add", (input, index, src), {"dim": normalize_dim(dim, input.ndim)})


def index_select(input, dim: int, index) -> Tensor:
    dim = normalize_dim(dim, input.ndim) if input.ndim else normalize_dim(dim, 0)
    return dispatch("index_select", (input, index), {"dim": dim})


def index_add(input, dim: int, index, source, *, alpha=1) -> Tensor:
    if alpha != 1:
        source = source * alpha
    return dispatch("index_add", (input, index, source), {"dim": normalize_dim(dim, input.ndim)})


def masked_fill(input, mask, value) -> Tensor:
    if isinstance(value, Tensor):
        if value.ndim:
            raise runtime_error(
                f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                f"{value.ndim} dimension(s)."
            )
        return where(mask, cast(value, input.dtype), input)
    return dispatch("masked_fill", (input, mask), {"value": value})


def masked_select(input, mask):
    input, mask = broadcast_tensors(input, mask)
    return input[mask]


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    if num_classes == -1:
        num_classes = int(tensor.max()) + 1 if tensor.numel() else 0
    return dispatch("one_hot", (tensor,), {"num_classes": num_classes})


def nonzero(input, *, as_tuple: bool = False):
    out = dispatch("nonzero", (input,))
    if as_tuple:
        if input.ndim == 0:  # PyTorch reads a 0-d input as 1-d here
            return nonzero(input.reshape(1), as_tuple=True)
        return tuple(select(out, 1, i) for i in range(out.shape[1]))
    return out


def argwhere(input):
    return nonzero(input)


def take_along_dim(input, indices, dim=None):
    """input's elements at indices along dim (of the flattened input when dim is None), the
    two broadcast against each other in every other dim, as PyTorch's."""
    if indices.dtype.is_floating_point or indices.dtype.name == "bool":
        raise runtime_error(f"torch.take_along_dim(): dtype of indices should be Long but got "
                            f"{indices.dtype.name}")
    if dim is None:  # indices into the flattened input
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    dim = normalize_dim(dim, input.ndim)
    if input.ndim != indices.ndim:
        raise runtime_error(
            f"torch.take_along_dim(): input and indices should have the same number of "
            f"dimensions, but got {input.ndim} dimensions for input, and {indices.ndim} "
            f"dimensions for indices")
    shape = broadcast_shapes(tuple(1 if d == dim else n for d, n in enumerate(input.shape)),
                             tuple(1 if d == dim else n for d, n in enumerate(indices.shape)))
    input = input.expand(*(input.shape[d] if d == dim else n for d, n in enumerate(shape)))
    indices = indices.expand(*(indices.shape[d] if d == dim else n for d, n in enumerate(shape)))
    return gather(input, dim, indices)
