"""Kernels of the collective graph ops: they call the process group named by attrs["group"].

The process groups are ember.distributed's, above the runtime: each registers its graph
collectives in GROUPS under its id when it is made (and leaves when destroyed), so a compiled
program reaches MPI or NCCL through the same collective code as eager calls, without the
runtime importing them.
"""

from __future__ import annotations

from ...errors import runtime_error
from .registry import kernel

# group id -> its graph collectives (ember.distributed.graph_ops.GraphCollectives): each
# method takes an array and returns the collective's result as a new array
GROUPS: dict[int, object] = {}


def _group(group: int, what: str):
    collectives = GROUPS.get(group)
    if collectives is None:
        raise runtime_error(
            f"{what}: this process has no process group {group} (destroyed, or the graph was "
            "recorded in another run: a collective runs in the group it was recorded with)"
        )
    return collectives


@kernel("dist_all_reduce")
def _all_reduce(xp, x, *, group, op):
    return _group(group, "all_reduce").all_reduce(x, op)


@kernel("dist_broadcast")
def _broadcast(xp, x, *, group, src):
    return _group(group, "broadcast").broadcast(x, src)


@kernel("dist_all_gather")
def _all_gather(xp, x, *, group, world_size):
    return _group(group, "all_gather_into_tensor").all_gather(x)


@kernel("dist_reduce_scatter")
def _reduce_scatter(xp, x, *, group, world_size, op):
    return _group(group, "reduce_scatter_tensor").reduce_scatter(x, op)
