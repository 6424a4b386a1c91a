"""Type rules of the collectives (ember.distributed) as graph ops, so that a scripted function
records them in order and its compiled program calls them.

Each is side_effects=True: it talks to the other processes, so it runs even when its output
is unused and never merges with an equal call. attrs["group"] names a process group of this
process (its id); the values other ranks contribute are outside the graph, so the output is a
new value of the input's type (or, for gather and scatter, of the gathered or scattered size).
"""

from __future__ import annotations

from ...errors import runtime_error
from ..schema import fmt_shape, register
from ..types import TensorType


def _same(inputs, attrs):
    (x,) = inputs
    return TensorType(tuple(x.shape), x.dtype)


register("dist_all_reduce", differentiable=False, side_effects=True)(_same)
register("dist_broadcast", differentiable=False, side_effects=True)(_same)


@register("dist_all_gather", differentiable=False, side_effects=True)
def _all_gather(inputs, attrs):
    (x,) = inputs
    shape = tuple(x.shape)
    if not shape:
        raise runtime_error("dist_all_gather: a 0-d tensor has no dim 0 to concatenate along")
    return TensorType((shape[0] * attrs["world_size"], *shape[1:]), x.dtype)


@register("dist_reduce_scatter", differentiable=False, side_effects=True)
def _reduce_scatter(inputs, attrs):
    (x,) = inputs
    shape, world = tuple(x.shape), attrs["world_size"]
    if not shape or not isinstance(shape[0], int) or shape[0] % world:
        raise runtime_error(
            f"dist_reduce_scatter: dim 0 of {fmt_shape(shape)} must split evenly among {world} "
            "ranks"
        )
    return TensorType((shape[0] // world, *shape[1:]), x.dtype)
