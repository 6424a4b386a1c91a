"""Tensor indexing: x[key] and x[key] = value with numpy's (and PyTorch's) rules.

A key is lowered to primitives: one `slice` view for the basic part (ints, slices), squeeze
and unsqueeze views for ints and None, then one `index` op for integer and boolean tensors.
Assignment writes through the same view, so autograd and version counting stay exact.
"""

from __future__ import annotations

import numpy as np

from ..errors import index_error, type_error
from ..ir.dtypes import bool_
from . import hooks
from . import ops as E
from .dispatch import dispatch
from .factories import tensor
from .inplace import apply_inplace
from .tensor import Tensor


def _as_index_tensor(entry, dev):
    if isinstance(entry, Tensor):
        return entry
    if hooks.active_trace is not None:
        hooks.specialize(entry)  # the index list becomes a constant: its sizes are exact
    array = np.asarray(entry)
    if array.dtype == object or (array.size and array.dtype.kind not in "biu"):
        raise index_error(
            "tensors used as indices must be long, int, byte or bool tensors; got "
            f"{type(entry).__name__}"
        )
    if array.size == 0:
        array = array.astype(np.int64)
    return tensor(array, device=dev)


def _slice_bounds(k: slice, size) -> tuple:
    """k.indices(size) for a positive step. A size read under a symbolic trace (a SizeInt)
    goes through Python arithmetic instead, which keeps its expression: slice.indices would
    read its plain value and bake this call's bounds into the graph."""
    if size.__class__ is int:
        return k.indices(size)

    def bound(v, default):
        if v is None:
            return default
        if v < 0:
            v = v + size
            return max(0, v)
        return min(size, v)

    return bound(k.start, 0), bound(k.stop, size), 1 if k.step is None else int(k.step)


def _expand_key(x: Tensor, key) -> list:
    """The key as a list: Ellipsis expanded, sequences and bool masks turned into tensors."""
    if not isinstance(key, tuple):
        key = (key,)
    entries = []
    for k in key:
        cls = k.__class__
        if cls is slice:  # the common entries first, by class
            entries.append(("slice", k))
        elif cls is int:
            entries.append(("int", k))
        elif isinstance(k, (list, tuple, range, np.ndarray, Tensor)):  # sequences, as torch
            k = _as_index_tensor(k, x.device)
            if k._dtype is bool_:
                entries.append(("mask", k))
                continue
            if k._dtype.is_floating_point:
                raise index_error(
                    "tensors used as indices must be long, int, byte or bool tensors; got "
                    f"{k.dtype.name}"
                )
            entries.append(("tensor", k))
        elif isinstance(k, bool):
            raise index_error("a boolean index can only be used on its own: x[True]")
        elif isinstance(k, (int, np.integer)):
            entries.append(("int", int(k)))
        elif isinstance(k, slice):
            entries.append(("slice", k))
        elif k is None:
            entries.append(("new", None))
        elif k is Ellipsis:
            entries.append(("ellipsis", None))
        else:  # PyTorch: a TypeError for a str, an IndexError for anything else
            raise (type_error if isinstance(k, str) else index_error)(
                f"only integers, slices (`:`), ellipsis (`...`), None and long or boolean "
                f"tensors are valid indices (got {type(k).__name__})"
            )
    consumed = ellipses = 0
    for kind, k in entries:
        if kind == "mask":
            consumed += k.ndim
        elif kind == "ellipsis":
            ellipses += 1
        elif kind != "new":
            consumed += 1
    if ellipses > 1:
        raise index_error("an index can only have a single ellipsis ('...')")
    if consumed > x.ndim:
        if x.ndim == 0 and len(entries) == 1 and entries[0][0] == "int":
            # a pre-0.4 habit: loss.data[0] where loss is now 0-d
            raise index_error(
                "invalid index of a 0-dim tensor. Use `tensor.item()` to convert a 0-dim "
                "tensor to a number"
            )
        raise index_error(f"too many indices for tensor of dimension {x.ndim} (got {consumed})")
    if not ellipses:
        return entries
    out = []
    for kind, k in entries:
        if kind == "ellipsis":
            out += [("slice", slice(None))] * (x.ndim - consumed)
        else:
            out.append((kind, k))
    return out


def _check_mask(mask: Tensor, x: Tensor, start: int) -> None:
    """A boolean mask covers len(mask.shape) dims of x from `start` and must match them."""
    for i, n in enumerate(mask.shape):
        if n != x.shape[start + i]:
            raise index_error(
                f"The shape of the mask {list(mask.shape)} at index {i} does not match the shape "
                f"of the indexed tensor {list(x.shape)} at index {start + i}"
            )


def _lower(x: Tensor, key):
    """(view of x for the basic part, advanced index tensors, their dims in the view)."""
    entries = _expand_key(x, key)
    if any(kind == "tensor" or kind == "mask" for kind, _ in entries):
        # masks become advanced indices; ints stay basic (a select), as in PyTorch, so
        # x[0, :, idx] is x[0][:, idx] (numpy would move idx's dim to the front)
        lowered = []
        d = 0
        for kind, k in entries:
            if kind == "mask":
                if k.ndim == 0:
                    raise index_error("a 0-d boolean index can only be used on its own: x[True]")
                _check_mask(k, x, d)
                for column in E.nonzero(k, as_tuple=True):
                    lowered.append(("tensor", column))
            else:
                lowered.append((kind, k))
            d += k.ndim if kind == "mask" else kind != "new"
        entries = lowered
    shape = tuple(x.shape)
    starts, stops, steps = [0] * len(shape), list(shape), [1] * len(shape)
    squeeze, layout, advanced = [], [], []
    d = 0
    for kind, k in entries:
        if kind == "new":
            layout.append("new")
            continue
        size = shape[d]
        if kind == "int":
            if not -size <= k < size:
                raise index_error(f"index {k} is out of bounds for dimension {d} with size {size}")
            k %= size
            starts[d], stops[d] = k, k + 1
            squeeze.append(d)
        elif kind == "slice":
            if k.step is not None and k.step <= 0:
                raise type_error(
                    "slice step must be positive"
                    if k.step == 0
                    else "step must be greater than zero"
                )
            starts[d], stops[d], steps[d] = _slice_bounds(k, size)
            stops[d] = max(stops[d], starts[d])
            layout.append("dim")
        else:
            layout.append("adv")
            advanced.append(k)
        d += 1
    layout += ["dim"] * (len(shape) - d)
    view = x
    if starts != [0] * len(shape) or stops != list(shape) or steps != [1] * len(shape):
        view = dispatch(
            "slice",
            (view,),
            {"starts": tuple(starts), "stops": tuple(stops), "steps": tuple(steps)},
        )
    if squeeze:
        view = dispatch("squeeze", (view,), {"dims": tuple(squeeze)})
    for p, token in enumerate(layout):
        if token == "new":
            view = dispatch("unsqueeze", (view,), {"dim": p})
    if view is x and not advanced:
        view = dispatch("view", (x,), {"shape": shape})
    dims = tuple(p for p, token in enumerate(layout) if token == "adv")
    return view, advanced, dims


def _bool_key(key):
    if isinstance(key, bool):
        return key
    if isinstance(key, Tensor) and key._dtype is bool_ and key.ndim == 0:
        return bool(key)
    return None


# (x's shape, a basic key's signature) -> the view ops _lower chose for it: x[:, :8] and
# x[..., 0] recur every step of a training loop, and lowering a key costs more than its view
_BASIC: dict = {}
_MAX_BASIC = 4096
_INT_OR_NONE = (int, type(None))


def _basic_signature(key):
    """A hashable form of a key of ints, slices of ints, None and ..., or None for any
    other key (tensors, lists, bools, numpy numbers take _lower's way every time)."""
    if key.__class__ is not tuple:
        key = (key,)
    out = []
    for k in key:
        c = k.__class__
        if c is slice:
            if (k.start.__class__ not in _INT_OR_NONE or k.stop.__class__ not in _INT_OR_NONE
                    or k.step.__class__ not in _INT_OR_NONE):
                return None
            out.append((k.start, k.stop, k.step))
        elif c is int or k is None or k is Ellipsis:
            out.append(k)
        else:
            return None
    return tuple(out)


def _views(x: Tensor, view: Tensor) -> list | None:
    """The (op, attrs) of each view op from x to view, or None where it is not such a chain."""
    chain = view._view_chain
    base = x._view_chain
    if view._base is None or chain[: len(base)] != base:
        return None
    return list(chain[len(base):])


def getitem(x: Tensor, key) -> Tensor:
    signature = _basic_signature(key)
    if signature is not None and hooks.active_trace is None:
        memo = (x._data.shape, signature)
        steps = _BASIC.get(memo)
        if steps is not None:
            view = x
            for op, attrs in steps:
                view = dispatch(op, (view,), attrs)
            return view
        view, advanced, dims = _lower(x, key)
        steps = _views(x, view)
        if steps is not None and len(_BASIC) < _MAX_BASIC:
            _BASIC[memo] = steps
        return view
    flag = _bool_key(key)
    if flag is not None:
        # x[True] adds a leading dim of size 1; x[False] one of size 0
        return E.unsqueeze(x, 0)[0 : int(flag)]
    view, advanced, dims = _lower(x, key)
    if not advanced:
        return view
    return dispatch("index", (view, *advanced), {"dims": dims})


def setitem(x: Tensor, key, value) -> None:
    from .factories import tensor
    view, advanced, dims = _lower(x, key)
    if not isinstance(value, Tensor):
        if value is None or isinstance(value, (str, bytes, dict, set)):
            raise type_error(f"can't assign a {type(value).__name__} to a tensor of "
                             f"{x.dtype.name}")
        value = tensor(value, dtype=x.dtype, device=x.device)
    if not advanced:
        apply_inplace(view, lambda src: E.expand(E.cast(value, x.dtype), tuple(src.shape)))
        return
    value = E.cast(value, x.dtype)
    apply_inplace(
        view,
        lambda src: dispatch(
            "index_put", (src, value, *advanced), {"dims": dims, "accumulate": False}
        ),
    )
