"""Collectives on tensors, with torch.distributed's signatures: all_reduce, broadcast, reduce,
all_gather(_into_tensor), reduce_scatter(_tensor), gather, scatter, all_to_all(_single),
barrier. (send and recv are in point_to_point.py, the object collectives in objects.py.)

One path serves every backend: check the arguments, present each tensor's array to the backend
as a contiguous buffer (the array itself when it is contiguous, so MPI reads and writes the
tensor's memory without a copy; a contiguous copy, written back at the end, when it is not),
start the backend's non-blocking call, and return a Work (async_op=True) or wait on it. While
ember.script traces, all_reduce, broadcast, all_gather_into_tensor and reduce_scatter_tensor
are recorded as graph ops (graph_ops.py); the others run eagerly and end the capture.
"""

from __future__ import annotations

import numpy as np

from .._tensor import hooks
from ..errors import type_error, value_error
from ..ir.schema import fmt_shape
from ..runtime.device import array_module
from . import graph_ops
from ._common import (
    ReduceOp,
    _Buffer,
    _bump,
    _check_list,
    _check_output,
    _check_tensor,
    _codes,
    _describe,
    _issue,
    _reduction,
    _root,
    _run,
    _same_dtype,
    _same_size,
    _send_copy,
    _start,
)
from .process_group import resolve
from .work import Work, start_check


def all_reduce(tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False):
    """Combine tensor across the group's ranks (sum by default); every rank gets the result."""
    what = "all_reduce"
    _check_tensor(tensor, what, "tensor")
    started = _start(what, group, [tensor], traceable=True)
    if started is None:
        return None
    pg, backend = started
    reduction, average = _reduction(op, tensor._dtype, backend, what)
    _check_output(tensor, what, "tensor")
    if graph_ops.recording([tensor], what):
        attrs = {"group": pg.id, "op": op.name}
        return graph_ops.record(pg, what, tensor, "dist_all_reduce", tensor, attrs, async_op)
    buf = _Buffer(tensor, write=True)
    check = start_check(pg, _codes(what, tensor._dtype, tensor.numel(), op), _describe)
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
    started = _start(what, group, [tensor], traceable=True)
    if started is None:
        return None
    pg, backend = started
    root = _root(pg, src, group_src, what, "src")
    _check_output(tensor, what, "tensor")
    if graph_ops.recording([tensor], what):
        attrs = {"group": pg.id, "src": root}
        return graph_ops.record(pg, what, tensor, "dist_broadcast", tensor, attrs, async_op)
    receives = pg.rank() != root
    buf = _Buffer(tensor, write=receives)
    check = start_check(pg, _codes(what, tensor._dtype, tensor.numel(), root=root), _describe)
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
    reduction, average = _reduction(op, tensor._dtype, backend, what)
    _check_output(tensor, what, "tensor")
    receives = pg.rank() == root
    buf = _Buffer(tensor, write=receives)
    check = start_check(pg, _codes(what, tensor._dtype, tensor.numel(), op, root), _describe)
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
    started = _start(what, group, [output_tensor, input_tensor], traceable=True)
    if started is None:
        return None
    pg, backend = started
    _same_dtype(output_tensor, input_tensor, what, "output_tensor", "input_tensor")
    n = input_tensor.numel()
    _same_size(output_tensor, pg.size() * n, what, "output_tensor", "world size x input numel")
    _check_output(output_tensor, what, "output_tensor")
    if graph_ops.recording([output_tensor, input_tensor], what):
        attrs = {"group": pg.id, "world_size": pg.size()}
        return graph_ops.record(
            pg, what, output_tensor, "dist_all_gather", input_tensor, attrs, async_op
        )
    out = _Buffer(output_tensor, read=False, write=True)
    send = _send_copy(input_tensor, [output_tensor])
    check = start_check(pg, _codes("all_gather", input_tensor._dtype, n), _describe)
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
    check = start_check(pg, _codes(what, tensor._dtype, tensor.numel()), _describe)
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
    started = _start(what, group, [output, input], traceable=True)
    if started is None:
        return None
    pg, backend = started
    _same_dtype(output, input, what, "output", "input")
    _same_size(input, pg.size() * output.numel(), what, "input", "world size x output numel")
    reduction, average = _reduction(op, output._dtype, backend, what)
    _check_output(output, what, "output")
    if graph_ops.recording([output, input], what):
        attrs = {"group": pg.id, "world_size": pg.size(), "op": op.name}
        return graph_ops.record(pg, what, output, "dist_reduce_scatter", input, attrs, async_op)
    out = _Buffer(output, read=False, write=True)
    send = _send_copy(input, [output])
    check = start_check(pg, _codes("reduce_scatter", output._dtype, output.numel(), op), _describe)
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
    reduction, average = _reduction(op, output._dtype, backend, what)
    _check_output(output, what, "output")
    xp = array_module(output._device)
    send = xp.ascontiguousarray(xp.stack([t._data for t in inputs])) if inputs else None
    out = _Buffer(output, read=False, write=True)
    check = start_check(pg, _codes(what, output._dtype, output.numel(), op), _describe)
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
    check = start_check(pg, _codes(what, tensor._dtype, tensor.numel(), root=root), _describe)
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
    check = start_check(pg, _codes(what, tensor._dtype, tensor.numel(), root=root), _describe)
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
    check = start_check(pg, _codes("all_to_all", input._dtype, row), _describe)
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
    check = start_check(pg, _codes("all_to_all", first._dtype, -1), _describe)
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
    hooks.stop_trace("a collective (barrier) runs outside the graph")
    control = pg.control()
    requests = _issue(pg, control, what, control.barrier)
    return _run(Work(pg, control, what, requests), async_op)
