"""Type rules of the collectives (ember.distributed) as graph ops, so that a scripted function
records them in order and its compiled program calls them.

Each is side_effects=True: it talks to the other processes, so it runs even when its output
is unused and never merges with an equal call. attrs["group"] names a process group of this
process (its id); the values other ranks contribute are outside the graph, so the output is a
new value of the input's type (or, for gather and scatter, of the gathered or scattered size).
"""

from __future__ import annotations

from ...errors import runtime_error
from ..schema import choice_attr, fmt_shape, int_attr, register

# ember.distributed's ReduceOp names (the IR cannot import it: a test checks they agree)
REDUCE_OPS = ("SUM", "AVG", "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR")
_GROUP = {"group": int_attr(0)}
_ONE = {"num_inputs": 1, "differentiable": False, "side_effects": True}
from ..types import TensorType


def _same(inputs, attrs):
    (x,) = inputs
    return TensorType(tuple(x.shape), x.dtype)


register("dist_all_reduce", attrs={**_GROUP, "op": choice_attr(*REDUCE_OPS)}, **_ONE)(_same)
register("dist_broadcast", attrs={**_GROUP, "src": int_attr(0)}, **_ONE)(_same)


@register("dist_all_gather", attrs={**_GROUP, "world_size": int_attr(1)}, **_ONE)
def _all_gather(inputs, attrs):
    (x,) = inputs
    shape = tuple(x.shape)
    if not shape:
        raise runtime_error("dist_all_gather: a 0-d tensor has no dim 0 to concatenate along")
    return TensorType((shape[0] * attrs["world_size"], *shape[1:]), x.dtype)


@register("dist_reduce_scatter",
          attrs={**_GROUP, "world_size": int_attr(1), "op": choice_attr(*REDUCE_OPS)}, **_ONE)
def _reduce_scatter(inputs, attrs):
    (x,) = inputs
    shape, world = tuple(x.shape), attrs["world_size"]
    if not shape or not isinstance(shape[0], int) or shape[0] % world:
        raise runtime_error(
            f"dist_reduce_scatter: dim 0 of {fmt_shape(shape)} must split evenly among {world} "
            "ranks"
        )
    return TensorType((shape[0] // world, *shape[1:]), x.dtype)
