"""What every collective shares: ReduceOp, argument checks, tensors as contiguous buffers,
starting a backend call and finishing it (a Work, waited on unless async_op).

A collective writes its output tensors in place, as an in-place op does: their version counter
moves (so a backward that saved them fails loudly), and writing into a leaf that requires grad
is refused while grad mode is on (use `with ember.no_grad():`, as for `p.add_(...)`).
Collectives are not differentiable: autograd does not see them.
"""

from __future__ import annotations

import enum

from .. import _tensor
from .._tensor import hooks
from ..autograd import grad_mode
from ..errors import runtime_error, type_error, value_error
from ..ir.dtypes import ALL as _DTYPES
from ..ir.schema import fmt_shape
from ..runtime.device import array_module
from ._errors import backend_error
from .process_group import resolve
from .work import Work


class ReduceOp(enum.Enum):
    """How all_reduce, reduce and reduce_scatter combine the ranks' values."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"

    def __repr__(self) -> str:
        return f"ReduceOp.{self.name}"

    __str__ = __repr__


# ReduceOp -> the backend-neutral reduction, per kind of dtype; AVG is a sum, then a division
_FLOAT_REDUCTIONS = {"SUM": "sum", "AVG": "sum", "PRODUCT": "prod", "MIN": "min", "MAX": "max"}
_INT_REDUCTIONS = {
    "SUM": "sum",
    "PRODUCT": "prod",
    "MIN": "min",
    "MAX": "max",
    "BAND": "band",
    "BOR": "bor",
    "BXOR": "bxor",
}
# as PyTorch's NCCL backend: on booleans a sum is a logical or, a product a logical and
_BOOL_REDUCTIONS = {
    "SUM": "lor",
    "MAX": "lor",
    "BOR": "lor",
    "PRODUCT": "land",
    "MIN": "land",
    "BAND": "land",
    "BXOR": "lxor",
}

# what the ranks compare before a collective (work.Check): which collective, op, dtype, size
_COLLECTIVES = (
    "all_reduce",
    "broadcast",
    "reduce",
    "all_gather",
    "reduce_scatter",
    "gather",
    "scatter",
    "all_to_all",
)
_OPS = tuple(ReduceOp)


def _describe(codes) -> str:
    name = _COLLECTIVES[codes[0]] if 0 <= codes[0] < len(_COLLECTIVES) else "?"
    text = f"{name} of {codes[3]} {_DTYPES[codes[2]].name} elements"
    if codes[1] >= 0:
        text += f" ({_OPS[codes[1]].name})"
    if codes[4] >= 0:
        text += f", root {codes[4]}"
    return text


def _codes(name: str, dtype, numel: int, op=None, root: int = -1) -> list[int]:
    return [
        _COLLECTIVES.index(name),
        -1 if op is None else _OPS.index(op),
        _DTYPES.index(dtype),
        numel,
        root,
    ]


# -- arguments ------------------------------------------------------------------------------


def _check_tensor(tensor, what: str, arg: str):
    if not isinstance(tensor, _tensor.Tensor):
        raise type_error(f"{what}: {arg} must be an ember Tensor, got {type(tensor).__name__}")
    return tensor


def _check_list(tensors, size: int, like, what: str, arg: str) -> list:
    if not isinstance(tensors, (list, tuple)):
        raise type_error(f"{what}: {arg} must be a list of tensors, got {type(tensors).__name__}")
    if len(tensors) != size:
        raise value_error(
            f"{what}: {arg} must hold one tensor per rank of the group ({size}), got {len(tensors)}"
        )
    for i, t in enumerate(tensors):
        _check_tensor(t, what, f"{arg}[{i}]")
        _check_like(t, like, what, f"{arg}[{i}]")
    return list(tensors)


def _check_like(t, like, what: str, arg: str) -> None:
    if t._dtype is not like._dtype or tuple(t.shape) != tuple(like.shape):
        raise value_error(
            f"{what}: {arg} is a {t._dtype.name} tensor of shape {fmt_shape(t.shape)}, expected "
            f"{like._dtype.name} of shape {fmt_shape(like.shape)}"
        )
    if t._device != like._device:
        raise value_error(f"{what}: {arg} is on {t._device}, expected {like._device}")


def _check_output(tensor, what: str, arg: str) -> None:
    """A tensor the collective writes into must accept an in-place write."""
    if grad_mode.state.enabled:
        base = tensor._base
        if tensor._grad_fn is None and tensor._requires_grad:
            raise runtime_error(
                f"{what}: {arg} is a leaf tensor that requires grad, and the collective writes "
                "into it in place, as an in-place op would; call it under "
                "`with ember.no_grad():` (or pass tensor.detach())"
            )
        if base is not None and base._grad_fn is None and base._requires_grad:
            raise runtime_error(
                f"{what}: {arg} is a view of a leaf tensor that requires grad; call it under "
                "`with ember.no_grad():`"
            )
    if not getattr(tensor._data.flags, "writeable", True):
        raise runtime_error(
            f"{what}: {arg} is read-only (an expanded tensor, where several elements share one "
            "memory location); write into a tensor of its own (.clone())"
        )


def _same_size(tensor, numel: int, what: str, arg: str, expected: str) -> None:
    if tensor.numel() != numel:
        raise value_error(
            f"{what}: {arg} has {tensor.numel()} elements (shape {fmt_shape(tensor.shape)}), "
            f"expected {expected} = {numel}"
        )


def _same_dtype(a, b, what: str, a_name: str, b_name: str) -> None:
    if a._dtype is not b._dtype:
        raise type_error(f"{what}: {a_name} is {a._dtype.name} but {b_name} is {b._dtype.name}")
    if a._device != b._device:
        raise value_error(f"{what}: {a_name} is on {a._device} but {b_name} is on {b._device}")


def _reduction(op, dtype, backend, what: str) -> tuple[str, bool]:
    """(the backend's reduction, whether to divide by the group size afterwards)."""
    if not isinstance(op, ReduceOp):
        raise type_error(f"{what}: op must be a ReduceOp (ReduceOp.SUM, ...), got {op!r}")
    if dtype.is_floating_point:
        table, kind = _FLOAT_REDUCTIONS, "floating-point"
    elif dtype.name == "bool":
        table, kind = _BOOL_REDUCTIONS, "bool"
    else:
        table, kind = _INT_REDUCTIONS, "integer"
    name = table.get(op.name)
    if name is None:
        raise value_error(f"{what}: {op!r} is not defined on {kind} tensors ({dtype.name})")
    if name not in backend.reductions:
        raise value_error(f"{what}: the {backend.name} backend cannot reduce with {op!r}")
    return name, op is ReduceOp.AVG


def _root(pg, rank, group_rank, what: str, arg: str) -> int:
    """The group rank named either by a global rank (src=/dst=) or a group rank."""
    if (rank is None) == (group_rank is None):
        raise value_error(f"{what}: pass exactly one of {arg}= and group_{arg}=")
    if rank is not None:
        return pg.group_rank(rank, what)
    if isinstance(group_rank, bool) or not isinstance(group_rank, int):
        raise type_error(f"{what}: group_{arg} must be an int, got {group_rank!r}")
    if not 0 <= group_rank < pg.size():
        raise value_error(
            f"{what}: group_{arg}={group_rank} is not a rank of a group of {pg.size()}"
        )
    return group_rank


def _start(what: str, group, tensors, traceable: bool = False):
    """(process group, backend) for a collective on tensors, or None on a non-member. While
    ember.script traces, a collective that cannot be a graph op ends the capture."""
    pg = resolve(group, what)
    if pg is None:
        return None
    pg.check_usable(what)
    if not traceable:
        hooks.stop_trace(f"a collective ({what}) runs outside the graph")
    device = tensors[0]._device
    for t in tensors[1:]:
        if t._device != device:
            raise value_error(f"{what}: tensors on {device} and {t._device}")
    return pg, pg.backend_for(device, what)


class _Buffer:
    """One tensor's array as a contiguous buffer: the array itself when it is contiguous, so
    the backend reads and writes the tensor's memory; else a contiguous copy, written back
    into the tensor when the collective has finished."""

    __slots__ = ("array", "tensor", "write_back")

    def __init__(self, tensor, *, read: bool = True, write: bool = False):
        data = tensor._data
        self.tensor = tensor
        if data.flags.c_contiguous:
            self.array, self.write_back = data, False
        else:
            xp = array_module(tensor._device)
            self.array = xp.ascontiguousarray(data) if read else xp.empty(data.shape, data.dtype)
            self.write_back = write

    def finish(self) -> None:
        if self.write_back:
            self.tensor._data[...] = self.array


def _send_copy(tensor, outputs) -> object:
    """A contiguous array of tensor's values that no output overlaps (MPI forbids a buffer
    that is both sent from and received into)."""
    data = tensor._data
    xp = array_module(tensor._device)
    if data.flags.c_contiguous and not any(xp.may_share_memory(data, out._data) for out in outputs):
        return data
    return xp.array(data, copy=True, order="C")


def _bump(*tensors) -> None:
    for t in tensors:
        t._version[0] += 1


def _issue(pg, backend, what: str, call, *args) -> list:
    try:
        return call(*args)
    except backend.errors as exc:
        raise backend_error(
            f"{what} failed on rank {pg.rank()} in {backend.name}: {backend.describe(exc)}"
        ) from None


def _run(work: Work, async_op: bool):
    if async_op:
        return work
    work.wait()
    return None
