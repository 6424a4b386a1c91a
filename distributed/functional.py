"""Functional collectives: each returns its result as a new tensor and leaves its input alone.

They are the collective graph ops called directly (eagerly, the op's kernel runs the
collective and waits for it; under ember.script, the op is recorded), so they fit where an
in-place write cannot be captured, such as averaging gradients inside a scripted training
step: `p.grad = functional.all_reduce(p.grad, ReduceOp.AVG)`. Not differentiable: the
result does not require grad. (PyTorch has these as torch.distributed._functional_collectives.)
"""

from __future__ import annotations

from .. import _tensor
from ..autograd import grad_mode
from ._common import ReduceOp, _check_tensor, _reduction
from .process_group import resolve


def _call(what: str, op: str, tensor, group, attrs: dict):
    _check_tensor(tensor, what, "tensor")
    pg = resolve(group, what)
    if pg is None:
        return None
    pg.check_usable(what)
    with grad_mode.no_grad():
        return _tensor.dispatch(op, (tensor.detach(),), {"group": pg.id, **attrs})


def _reduce_op(op, tensor, group, what: str) -> str:
    pg = resolve(group, what)
    if pg is not None:
        _reduction(op, tensor._dtype, pg.backend_for(tensor.device, what), what)
    return op.name


def all_reduce(tensor, op: ReduceOp = ReduceOp.SUM, group=None):
    """tensor combined across the group's ranks, as a new tensor."""
    what = "all_reduce"
    _check_tensor(tensor, what, "tensor")
    name = _reduce_op(op, tensor, group, what)
    return _call(what, "dist_all_reduce", tensor, group, {"op": name})


def broadcast(tensor, src: int, group=None):
    """Rank src's tensor, as a new tensor on every rank."""
    what = "broadcast"
    pg = resolve(group, what)
    root = pg.group_rank(src, what) if pg is not None else 0
    return _call(what, "dist_broadcast", tensor, group, {"src": root})


def all_gather_tensor(tensor, group=None):
    """Every rank's tensor, concatenated along dim 0 in rank order."""
    what = "all_gather_tensor"
    _check_tensor(tensor, what, "tensor")
    pg = resolve(group, what)
    size = pg.size() if pg is not None else 1
    flat = _call(what, "dist_all_gather", tensor.reshape(-1), group, {"world_size": size})
    if flat is None:
        return None
    shape = tuple(tensor.shape) or (1,)
    return flat.reshape(shape[0] * size, *shape[1:])


def reduce_scatter_tensor(tensor, op: ReduceOp = ReduceOp.SUM, group=None):
    """tensor combined across the group, then split along dim 0: rank r gets the r-th part."""
    what = "reduce_scatter_tensor"
    _check_tensor(tensor, what, "tensor")
    pg = resolve(group, what)
    if pg is None:
        return None
    name = _reduce_op(op, tensor, group, what)
    shape = tuple(tensor.shape)
    if not shape or shape[0] % pg.size():
        from ..errors import value_error

        raise value_error(
            f"{what}: dim 0 of a tensor of shape {list(shape)} must split evenly among the "
            f"{pg.size()} ranks"
        )
    flat = _call(
        what,
        "dist_reduce_scatter",
        tensor.reshape(-1),
        group,
        {"world_size": pg.size(), "op": name},
    )
    return flat.reshape(shape[0] // pg.size(), *shape[1:])


__all__ = ["all_gather_tensor", "all_reduce", "broadcast", "reduce_scatter_tensor"]
