"""Memory formats: PyTorch's torch.channels_last and friends, over numpy strides.

A channels-last tensor keeps its logical (N, C, H, W) shape with its bytes laid out N, H, W,
C: the NHWC array permuted back to NCHW, which numpy (and every ember kernel, which reads
strides) takes as it is. `x.to(memory_format=ember.channels_last)`, `x.contiguous(...)`,
`x.clone(memory_format=...)`, `x.is_contiguous(memory_format=...)` and
`module.to(memory_format=...)` behave as PyTorch's; the layout changes no value, and autograd
sees the copy as an identity (it is the contiguous() of a permuted view).
"""

from __future__ import annotations

from ..errors import runtime_error, type_error
from . import hooks


class memory_format:
    """A layout of a tensor's elements in memory (ember.channels_last, ...)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):  # one object per format, also through pickle and deepcopy
        return self.name


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
preserve_format = memory_format("preserve_format")

# format -> (the rank it needs, the permutation of that rank whose contiguous array it is)
_LAST = {channels_last: (4, (0, 2, 3, 1)), channels_last_3d: (5, (0, 2, 3, 4, 1))}


def check(fmt, what: str) -> None:
    if fmt is not None and not isinstance(fmt, memory_format):
        raise type_error(f"{what}: argument 'memory_format' must be ember.memory_format, not "
                         f"{type(fmt).__name__}")


def is_contiguous_as(x, fmt) -> bool:
    """x.is_contiguous(memory_format=fmt)."""
    check(fmt, "is_contiguous()")
    data = x._data
    if fmt is None or fmt is contiguous_format:
        return bool(data.flags.c_contiguous)
    if fmt is preserve_format:
        raise runtime_error("is_contiguous(): preserve memory format is unsupported by the "
                            "contiguous operator")
    rank, order = _LAST[fmt]
    # numpy's flag ignores the strides of size-1 dims, as PyTorch's check does
    return data.ndim == rank and bool(data.transpose(order).flags.c_contiguous)


def _order(x, fmt) -> tuple:
    """The permutation whose contiguous array a channels-last x is, x's rank checked."""
    rank, order = _LAST[fmt]
    if x.ndim != rank:
        raise runtime_error(f"required rank {rank} tensor to use {fmt.name} format "
                            f"(got a tensor of shape {list(x.shape)})")
    return order


def _permuted_back(order) -> tuple:
    back = [0] * len(order)
    for i, d in enumerate(order):
        back[d] = i
    return tuple(back)


def in_format(x, fmt, what: str, *, copy: bool = False):
    """x laid out in fmt: x itself where it already is (and copy is false), else a copy.
    preserve_format keeps x's layout (None means it too)."""
    from . import ops as E  # deferred: ops/ imports the tensor layer

    check(fmt, what)
    if fmt is None or fmt is preserve_format:
        return E.clone(x) if copy else x
    if fmt is contiguous_format:
        if copy or not x._data.flags.c_contiguous:
            return E.clone(x)
        return x
    order = _order(x, fmt)
    if not copy and hooks.active_trace is None and is_contiguous_as(x, fmt):
        return x
    return E.permute(E.clone(E.permute(x, order)), _permuted_back(order))


def module_format(t, fmt):
    """What module.to(memory_format=fmt) does to one of its tensors: PyTorch changes only the
    4-D and 5-D ones."""
    if fmt is None or t.ndim not in (4, 5):
        return t
    return in_format(t, fmt, "Module.to()")


def relaid(t, fmt, like=None):
    """A factory's fresh tensor t laid out in fmt, its data moved, no autograd recorded (a
    factory's result is a leaf). preserve_format (or None) takes like's layout where like is
    channels-last, as PyTorch's *_like factories do; under a trace the layout is left alone
    (a graph's values do not depend on it)."""
    check(fmt, "factory")
    if fmt is None or fmt is preserve_format:
        if like is None:
            return t
        fmt = next((f for f in _LAST if is_contiguous_as(like, f)
                    and not like._data.flags.c_contiguous), contiguous_format)
    if fmt is contiguous_format or hooks.active_trace is not None:
        return t
    order = _order(t, fmt)
    t._data = t._data.transpose(order).copy().transpose(_permuted_back(order))
    return t
