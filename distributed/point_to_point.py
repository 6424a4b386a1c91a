"""Point to point: send and recv, isend and irecv (Works), batch_isend_irecv."""

from __future__ import annotations

from ..errors import type_error, value_error
from ..ir.schema import fmt_shape
from ._common import _Buffer, _bump, _check_output, _check_tensor, _issue, _root, _start
from ._errors import backend_error
from .work import Work


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
    work = Work(pg, backend, what, requests, None, [tensor])
    work.peers = [pg.ranks[peer]]
    return work


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
    if peer is not None:
        work.peers = [pg.ranks[peer]]

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
