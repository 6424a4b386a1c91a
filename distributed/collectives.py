"""Collectives on tensors, with torch.distributed's signatures: all_reduce, broadcast, reduce,
all_gather(_into_tensor), reduce_scatter(_tensor), gather, scatter, all_to_all(_single),
send/recv, isend/irecv, barrier.

One path serves every backend: check the arguments, present each tensor's array to the backend
as a contiguous buffer (the array itself when it is contiguous, so MPI reads and writes the
tensor's memory without a copy; a contiguous copy, written back at the end, when it is not),
start the backend's non-blocking call, and return a Work (async_op=True) or wait on it.

A collective writes its output tensors in place, as an in-place op does: their version counter
moves (so a backward that saved them fails loudly), and writing into a leaf that requires grad
is refused while grad mode is on (use `with ember.no_grad():`, as for `p.add_(...)`).
Collectives are not differentiable: autograd does not see them.
"""

from __future__ import annotations

import enum
import pickle

import numpy as np

from .. import _tensor
from ..autograd import grad_mode
from ..errors import runtime_error, type_error, value_error
from ..ir.dtypes import ALL as _DTYPES
from ..ir.schema import fmt_shape
from ..runtime.device import array_module
from ._errors import DistError, backend_error
from .process_group import GroupMember, resolve
from .work import Work, start_check


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


def _codes(name: str, tensor, numel: int, op=None, root: int = -1) -> list[int]:
    return [
        _COLLECTIVES.index(name),
        -1 if op is None else _OPS.index(op),
        _DTYPES.index(tensor._dtype),
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


def _reduction(op, tensor, backend, what: str) -> tuple[str, bool]:
    """(the backend's reduction, whether to divide by the group size afterwards)."""
    if not isinstance(op, ReduceOp):
        raise type_error(f"{what}: op must be a ReduceOp (ReduceOp.SUM, ...), got {op!r}")
    dtype = tensor._dtype
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


def _start(what: str, group, tensors):
    """(process group, backend) for a collective on tensors, or None on a non-member."""
    pg = resolve(group, what)
    if pg is None:
        return None
    pg.check_usable(what)
    _tensor._stop_trace(f"a collective ({what}) runs outside the graph")
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


# -- collectives ----------------------------------------------------------------------------


def all_reduce(tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False):
    """Combine tensor across the group's ranks (sum by default); every rank gets the result."""
    what = "all_reduce"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    reduction, average = _reduction(op, tensor, backend, what)
    _check_output(tensor, what, "tensor")
    buf = _Buffer(tensor, write=True)
    check = start_check(pg, _codes(what, tensor, tensor.numel(), op), _describe)
    requests = _issue(pg, backend, what, backend.all_reduce, buf.array, reduction)
    _bump(tensor)

    def finish():
        if average:
            buf.array /= pg.size()
        buf.finish()

    return _run(Work(pg, backend, what, requests, finish, [tensor], check), async_op)


def broadcast(tensor, src: int | None = None, group=None, async_op: bool = False, group_src=None):
    """Copy rank src's tensor into tensor on every other rank of the group."""
    what = "broadcast"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    root = _root(pg, src, group_src, what, "src")
    _check_output(tensor, what, "tensor")
    receives = pg.rank() != root
    buf = _Buffer(tensor, write=receives)
    check = start_check(pg, _codes(what, tensor, tensor.numel(), root=root), _describe)
    requests = _issue(pg, backend, what, backend.broadcast, buf.array, root)
    if receives:
        _bump(tensor)
    return _run(Work(pg, backend, what, requests, buf.finish, [tensor], check), async_op)


def reduce(
    tensor,
    dst: int | None = None,
    op: ReduceOp = ReduceOp.SUM,
    group=None,
    async_op: bool = False,
    group_dst=None,
):
    """Combine tensor across the group into rank dst's tensor; the others' stay as they were."""
    what = "reduce"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    root = _root(pg, dst, group_dst, what, "dst")
    reduction, average = _reduction(op, tensor, backend, what)
    _check_output(tensor, what, "tensor")
    receives = pg.rank() == root
    buf = _Buffer(tensor, write=receives)
    check = start_check(pg, _codes(what, tensor, tensor.numel(), op, root), _describe)
    requests = _issue(pg, backend, what, backend.reduce, buf.array, reduction, root)
    if receives:
        _bump(tensor)

    def finish():
        if receives:
            if average:
                buf.array /= pg.size()
            buf.finish()

    return _run(Work(pg, backend, what, requests, finish, [tensor], check), async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op: bool = False):
    """Every rank's input_tensor, concatenated in rank order, into output_tensor on every
    rank (output is (world * n, ...) or (world, n, ...) for an input of n elements)."""
    what = "all_gather_into_tensor"
    _check_tensor(output_tensor, what, "output_tensor")
    _check_tensor(input_tensor, what, "input_tensor")
    started = _start(what, group, [output_tensor, input_tensor])
    if started is None:
        return None
    pg, backend = started
    _same_dtype(output_tensor, input_tensor, what, "output_tensor", "input_tensor")
    n = input_tensor.numel()
    _same_size(output_tensor, pg.size() * n, what, "output_tensor", "world size x input numel")
    _check_output(output_tensor, what, "output_tensor")
    out = _Buffer(output_tensor, read=False, write=True)
    send = _send_copy(input_tensor, [output_tensor])
    check = start_check(pg, _codes("all_gather", input_tensor, n), _describe)
    requests = _issue(pg, backend, what, backend.all_gather, send, out.array)
    _bump(output_tensor)
    return _run(Work(pg, backend, what, requests, out.finish, [output_tensor], check), async_op)


def all_gather(tensor_list, tensor, group=None, async_op: bool = False):
    """Every rank's tensor into tensor_list[rank], on every rank."""
    what = "all_gather"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    outputs = _check_list(tensor_list, pg.size(), tensor, what, "tensor_list")
    for i, t in enumerate(outputs):
        _check_output(t, what, f"tensor_list[{i}]")
    xp = array_module(tensor._device)
    gathered = xp.empty((pg.size(), *tensor.shape), dtype=tensor._data.dtype)
    send = _send_copy(tensor, [])
    check = start_check(pg, _codes(what, tensor, tensor.numel()), _describe)
    requests = _issue(pg, backend, what, backend.all_gather, send, gathered)
    _bump(*outputs)

    def finish():
        for i, t in enumerate(outputs):
            t._data[...] = gathered[i]

    return _run(Work(pg, backend, what, requests, finish, outputs, check), async_op)


def reduce_scatter_tensor(
    output, input, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False
):
    """Combine input across the group, and give rank r the r-th equal chunk of the result."""
    what = "reduce_scatter_tensor"
    _check_tensor(output, what, "output")
    _check_tensor(input, what, "input")
    started = _start(what, group, [output, input])
    if started is None:
        return None
    pg, backend = started
    _same_dtype(output, input, what, "output", "input")
    _same_size(input, pg.size() * output.numel(), what, "input", "world size x output numel")
    reduction, average = _reduction(op, output, backend, what)
    _check_output(output, what, "output")
    out = _Buffer(output, read=False, write=True)
    send = _send_copy(input, [output])
    check = start_check(pg, _codes("reduce_scatter", output, output.numel(), op), _describe)
    requests = _issue(pg, backend, what, backend.reduce_scatter, send, out.array, reduction)
    _bump(output)

    def finish():
        if average:
            out.array /= pg.size()
        out.finish()

    return _run(Work(pg, backend, what, requests, finish, [output], check), async_op)


def reduce_scatter(
    output, input_list, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False
):
    """Combine input_list across the group; rank r gets the combination of input_list[r]."""
    what = "reduce_scatter"
    _check_tensor(output, what, "output")
    started = _start(what, group, [output])
    if started is None:
        return None
    pg, backend = started
    inputs = _check_list(input_list, pg.size(), output, what, "input_list")
    reduction, average = _reduction(op, output, backend, what)
    _check_output(output, what, "output")
    xp = array_module(output._device)
    send = xp.ascontiguousarray(xp.stack([t._data for t in inputs])) if inputs else None
    out = _Buffer(output, read=False, write=True)
    check = start_check(pg, _codes(what, output, output.numel(), op), _describe)
    requests = _issue(pg, backend, what, backend.reduce_scatter, send, out.array, reduction)
    _bump(output)

    def finish():
        if average:
            out.array /= pg.size()
        out.finish()

    return _run(Work(pg, backend, what, requests, finish, [output], check), async_op)


def gather(
    tensor,
    gather_list=None,
    dst: int | None = None,
    group=None,
    async_op: bool = False,
    group_dst=None,
):
    """Every rank's tensor into gather_list[rank] on rank dst (gather_list only there)."""
    what = "gather"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    root = _root(pg, dst, group_dst, what, "dst")
    receives = pg.rank() == root
    gathered = None
    if receives:
        if gather_list is None:
            raise value_error(f"{what}: gather_list is required on the destination rank")
        outputs = _check_list(gather_list, pg.size(), tensor, what, "gather_list")
        for i, t in enumerate(outputs):
            _check_output(t, what, f"gather_list[{i}]")
        xp = array_module(tensor._device)
        gathered = xp.empty((pg.size(), *tensor.shape), dtype=tensor._data.dtype)
    else:
        if gather_list:
            raise value_error(f"{what}: gather_list must not be given on non-destination ranks")
        outputs = []
    send = _send_copy(tensor, [])
    check = start_check(pg, _codes(what, tensor, tensor.numel(), root=root), _describe)
    requests = _issue(pg, backend, what, backend.gather, send, gathered, root)
    _bump(*outputs)

    def finish():
        for i, t in enumerate(outputs):
            t._data[...] = gathered[i]

    return _run(Work(pg, backend, what, requests, finish, outputs, check), async_op)


def scatter(
    tensor,
    scatter_list=None,
    src: int | None = None,
    group=None,
    async_op: bool = False,
    group_src=None,
):
    """scatter_list[r] on rank src into tensor on rank r (scatter_list only on src)."""
    what = "scatter"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    root = _root(pg, src, group_src, what, "src")
    send = None
    if pg.rank() == root:
        if scatter_list is None:
            raise value_error(f"{what}: scatter_list is required on the source rank")
        inputs = _check_list(scatter_list, pg.size(), tensor, what, "scatter_list")
        xp = array_module(tensor._device)
        send = xp.ascontiguousarray(xp.stack([t._data for t in inputs]))
    elif scatter_list:
        raise value_error(f"{what}: scatter_list must not be given on non-source ranks")
    _check_output(tensor, what, "tensor")
    out = _Buffer(tensor, read=False, write=True)
    check = start_check(pg, _codes(what, tensor, tensor.numel(), root=root), _describe)
    requests = _issue(pg, backend, what, backend.scatter, send, out.array, root)
    _bump(tensor)
    return _run(Work(pg, backend, what, requests, out.finish, [tensor], check), async_op)


def _splits(sizes, rows: int, size: int, what: str, arg: str) -> list[int]:
    if sizes is None or len(sizes) == 0:
        if rows % size:
            raise value_error(
                f"{what}: {arg} is not given, so dim 0 ({rows}) must divide evenly among the "
                f"{size} ranks"
            )
        return [rows // size] * size
    sizes = [int(s) for s in sizes]
    if len(sizes) != size or any(s < 0 for s in sizes) or sum(sizes) != rows:
        raise value_error(
            f"{what}: {arg}={sizes} must hold {size} non-negative sizes summing to dim 0 ({rows})"
        )
    return sizes


def all_to_all_single(
    output,
    input,
    output_split_sizes=None,
    input_split_sizes=None,
    group=None,
    async_op: bool = False,
):
    """Split input along dim 0, send the j-th piece to rank j, and concatenate the pieces
    received from every rank, in rank order, into output (equal pieces unless sizes given)."""
    what = "all_to_all_single"
    _check_tensor(output, what, "output")
    _check_tensor(input, what, "input")
    started = _start(what, group, [output, input])
    if started is None:
        return None
    pg, backend = started
    _same_dtype(output, input, what, "output", "input")
    if input.ndim == 0 or output.ndim == 0:
        raise value_error(f"{what}: input and output need a dim 0 to split along")
    if tuple(input.shape[1:]) != tuple(output.shape[1:]):
        raise value_error(
            f"{what}: input {fmt_shape(input.shape)} and output {fmt_shape(output.shape)} must "
            "agree past dim 0"
        )
    row = int(np.prod(input.shape[1:], dtype=np.int64))
    send_rows = _splits(input_split_sizes, input.shape[0], pg.size(), what, "input_split_sizes")
    recv_rows = _splits(output_split_sizes, output.shape[0], pg.size(), what, "output_split_sizes")
    _check_output(output, what, "output")
    out = _Buffer(output, read=False, write=True)
    send = _send_copy(input, [output])
    check = start_check(pg, _codes("all_to_all", input, row), _describe)
    requests = _issue(
        pg,
        backend,
        what,
        backend.all_to_all,
        send,
        [r * row for r in send_rows],
        out.array,
        [r * row for r in recv_rows],
    )
    _bump(output)
    return _run(Work(pg, backend, what, requests, out.finish, [output], check), async_op)


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op: bool = False):
    """input_tensor_list[j] goes to rank j; what rank j sent arrives in output_tensor_list[j]."""
    what = "all_to_all"
    if not isinstance(input_tensor_list, (list, tuple)) or not input_tensor_list:
        raise type_error(f"{what}: input_tensor_list must be a non-empty list of tensors")
    if not isinstance(output_tensor_list, (list, tuple)) or not output_tensor_list:
        raise type_error(f"{what}: output_tensor_list must be a non-empty list of tensors")
    for i, t in enumerate(input_tensor_list):
        _check_tensor(t, what, f"input_tensor_list[{i}]")
    for i, t in enumerate(output_tensor_list):
        _check_tensor(t, what, f"output_tensor_list[{i}]")
    first = input_tensor_list[0]
    started = _start(what, group, [*input_tensor_list, *output_tensor_list])
    if started is None:
        return None
    pg, backend = started
    for name, tensors in (("input", input_tensor_list), ("output", output_tensor_list)):
        if len(tensors) != pg.size():
            raise value_error(
                f"{what}: {name}_tensor_list must hold one tensor per rank ({pg.size()}), got "
                f"{len(tensors)}"
            )
        for i, t in enumerate(tensors):
            _same_dtype(t, first, what, f"{name}_tensor_list[{i}]", "input_tensor_list[0]")
    for i, t in enumerate(output_tensor_list):
        _check_output(t, what, f"output_tensor_list[{i}]")
    xp = array_module(first._device)
    send = xp.concatenate([t._data.reshape(-1) for t in input_tensor_list])
    recv = xp.empty(sum(t.numel() for t in output_tensor_list), dtype=first._data.dtype)
    send_counts = [t.numel() for t in input_tensor_list]
    recv_counts = [t.numel() for t in output_tensor_list]
    check = start_check(pg, _codes("all_to_all", first, -1), _describe)
    requests = _issue(pg, backend, what, backend.all_to_all, send, send_counts, recv, recv_counts)
    outputs = list(output_tensor_list)
    _bump(*outputs)

    def finish():
        start = 0
        for t in outputs:
            n = t.numel()
            t._data[...] = recv[start : start + n].reshape(t._data.shape)
            start += n

    return _run(Work(pg, backend, what, requests, finish, outputs, check), async_op)


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Wait until every rank of the group has reached the barrier."""
    what = "barrier"
    pg = resolve(group, what)
    if pg is None:
        return None
    pg.check_usable(what)
    _tensor._stop_trace("a collective (barrier) runs outside the graph")
    control = pg.control()
    requests = _issue(pg, control, what, control.barrier)
    return _run(Work(pg, control, what, requests), async_op)


# -- point to point -------------------------------------------------------------------------


def _check_tag(tag, what: str) -> int:
    if isinstance(tag, bool) or not isinstance(tag, int) or not 0 <= tag < 2**15:
        raise value_error(f"{what}: tag must be an int in [0, 32768), got {tag!r}")
    return tag


def isend(tensor, dst: int | None = None, group=None, tag: int = 0, group_dst=None) -> Work:
    """Start sending tensor to rank dst; the returned Work finishes once it is sent."""
    what = "isend"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    peer = _root(pg, dst, group_dst, what, "dst")
    _check_tag(tag, what)
    if peer == pg.rank():
        raise value_error(f"{what}: a rank cannot send to itself (dst={dst})")
    buf = _Buffer(tensor)
    requests = _issue(pg, backend, what, backend.send, buf.array, peer, tag)
    return Work(pg, backend, what, requests, None, [tensor])


def irecv(tensor, src: int | None = None, group=None, tag: int = 0, group_src=None) -> Work:
    """Start receiving into tensor from rank src (any rank when src is None); the Work's
    source_rank() names the sender once it has finished."""
    what = "irecv"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor])
    if started is None:
        return None
    pg, backend = started
    peer = None if src is None and group_src is None else _root(pg, src, group_src, what, "src")
    _check_tag(tag, what)
    if peer == pg.rank():
        raise value_error(f"{what}: a rank cannot receive from itself (src={src})")
    _check_output(tensor, what, "tensor")
    buf = _Buffer(tensor, read=False, write=True)
    requests = _issue(pg, backend, what, backend.recv, buf.array, peer, tag)
    _bump(tensor)
    work = Work(pg, backend, what, requests, None, [tensor])

    def finish():
        source, nbytes = requests[0].received()
        work.sender = pg.ranks[source]
        if nbytes != buf.array.nbytes:
            raise backend_error(
                f"{what}: rank {work.sender} sent {nbytes} bytes, but the receiving tensor "
                f"({tensor._dtype.name}, shape {fmt_shape(tensor.shape)}) holds "
                f"{buf.array.nbytes}: the send and the receive must match in shape and dtype"
            )
        buf.finish()

    work._finish = finish
    return work


def send(tensor, dst: int | None = None, group=None, tag: int = 0, group_dst=None) -> None:
    """Send tensor to rank dst, and wait until it is sent."""
    work = isend(tensor, dst, group, tag, group_dst)
    if work is not None:
        work.wait()


def recv(tensor, src: int | None = None, group=None, tag: int = 0, group_src=None) -> int:
    """Receive into tensor from rank src (any rank when None); returns the sender's rank."""
    work = irecv(tensor, src, group, tag, group_src)
    if work is None:
        return -1
    work.wait()
    return work.sender


class P2POp:
    """One send or receive for batch_isend_irecv: P2POp(isend, tensor, peer)."""

    def __init__(self, op, tensor, peer: int | None = None, group=None, tag: int = 0):
        if op not in (isend, irecv):
            raise value_error("P2POp: op must be ember.distributed.isend or irecv")
        self.op, self.tensor, self.peer, self.group, self.tag = op, tensor, peer, group, tag


def batch_isend_irecv(p2p_op_list) -> list:
    """Start every send and receive of the list; returns their Works."""
    if not isinstance(p2p_op_list, (list, tuple)) or not all(
        isinstance(p, P2POp) for p in p2p_op_list
    ):
        raise type_error("batch_isend_irecv: expected a list of P2POp")
    return [p.op(p.tensor, p.peer, p.group, p.tag) for p in p2p_op_list]


# -- Python objects (pickled into byte tensors, as PyTorch does) ------------------------------


def _to_bytes(obj):
    from ..factories import from_numpy

    return from_numpy(np.frombuffer(pickle.dumps(obj), dtype=np.uint8).copy())


def all_gather_object(object_list: list, obj, group=None) -> None:
    """Every rank's picklable obj into object_list[rank]. Unpickling runs what the other
    ranks sent: use it only among processes you trust, as in PyTorch."""
    from ..factories import tensor as make_tensor
    from ..factories import zeros

    pg = resolve(group, "all_gather_object")
    if pg is None:
        return
    if not isinstance(object_list, list) or len(object_list) != pg.size():
        raise value_error(
            f"all_gather_object: object_list must be a list of {pg.size()} entries (one per rank)"
        )
    data = _to_bytes(obj)
    sizes = zeros(pg.size(), dtype="int64")
    all_gather_into_tensor(sizes, make_tensor([data.numel()], dtype="int64"), group=group)
    longest = int(sizes.max().item())
    padded = zeros(longest, dtype="uint8")
    padded[: data.numel()] = data
    gathered = zeros(pg.size() * longest, dtype="uint8")
    all_gather_into_tensor(gathered, padded, group=group)
    raw = gathered.numpy().reshape(pg.size(), longest)
    for r in range(pg.size()):
        object_list[r] = pickle.loads(raw[r, : int(sizes[r].item())].tobytes())


def broadcast_object_list(object_list: list, src: int | None = None, group=None) -> None:
    """Rank src's picklable objects into object_list on every rank (same length everywhere)."""
    from ..factories import tensor as make_tensor
    from ..factories import zeros

    pg = resolve(group, "broadcast_object_list")
    if pg is None:
        return
    if not isinstance(object_list, list):
        raise type_error("broadcast_object_list: object_list must be a list")
    src = pg.ranks[0] if src is None else src
    sender = pg.rank() == pg.group_rank(src, "broadcast_object_list")
    data = _to_bytes(list(object_list)) if sender else None
    size = make_tensor([data.numel() if sender else 0], dtype="int64")
    broadcast(size, src, group=group)
    if not sender:
        data = zeros(int(size.item()), dtype="uint8")
    broadcast(data, src, group=group)
    received = pickle.loads(data.numpy().tobytes())
    if len(received) != len(object_list):
        raise value_error(
            f"broadcast_object_list: rank {src} sent {len(received)} objects, this rank's list "
            f"has {len(object_list)} slots"
        )
    object_list[:] = received


__all__ = [
    "DistError",
    "GroupMember",
    "P2POp",
    "ReduceOp",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_reduce",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "batch_isend_irecv",
    "broadcast",
    "broadcast_object_list",
    "gather",
    "irecv",
    "isend",
    "recv",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "scatter",
    "send",
]
