"""Collation: turning a list of samples into one batch (default_collate), or converting one
sample's numpy arrays to tensors (default_convert), with torch's rules."""

from __future__ import annotations

import collections.abc
import copy
from collections.abc import Callable

import numpy as np

from ..._tensor import Tensor
from ..._tensor.factories import as_tensor, from_numpy, tensor
from ...errors import runtime_error, type_error
from ...ir.dtypes import float64

_COLLATE_ERROR = (
    "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"
)


def _is_str_or_object(array: np.ndarray) -> bool:
    return array.dtype.kind in "SaUO"


def default_convert(data):
    """numpy arrays and numpy scalars inside `data` become tensors; the rest is kept as is
    (tuples become lists, as in torch)."""
    elem_type = type(data)
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _is_str_or_object(data) else as_tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return from_numpy(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        converted = {key: default_convert(data[key]) for key in data}
        return _rebuild_mapping(data, converted)
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a namedtuple
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data


def _rebuild_mapping(like, values: dict):
    """A mapping of like's type holding values (a plain dict when the type cannot be built)."""
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)
            clone.update(values)
            return clone
        return type(like)(values)
    except TypeError:
        return values


def _rebuild_sequence(like, items: list):
    """A sequence of like's type holding items (a list when the type cannot be built)."""
    try:
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, item in enumerate(items):
                clone[i] = item
            return clone
        return type(like)(items)
    except TypeError:
        return items


def collate(batch, *, collate_fn_map: dict | None = None):
    """Collate a list of samples of one structure: containers are walked, and leaves are
    batched by the function collate_fn_map holds for their type (exact type first, then the
    first entry the leaf is an instance of)."""
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for leaf_type, fn in collate_fn_map.items():
            if isinstance(elem, leaf_type):
                return fn(batch, collate_fn_map=collate_fn_map)
    if isinstance(elem, collections.abc.Mapping):
        values = {
            key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map) for key in elem
        }
        return _rebuild_mapping(elem, values)
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
        return elem_type(
            *(collate(samples, collate_fn_map=collate_fn_map) for samples in zip(*batch))
        )
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(sample) != size for sample in batch):
            raise runtime_error(
                f"each element in list of batch should be of equal size; got sizes "
                f"{[len(sample) for sample in batch]}"
            )
        columns = [collate(samples, collate_fn_map=collate_fn_map) for samples in zip(*batch)]
        # tuples become lists, as torch does
        return columns if isinstance(elem, tuple) else _rebuild_sequence(elem, columns)
    raise type_error(_COLLATE_ERROR.format(elem_type))


def collate_tensor_fn(batch, *, collate_fn_map=None) -> Tensor:
    from ..._tensor.ops import stack

    return stack(list(batch), 0)


def collate_numpy_array_fn(batch, *, collate_fn_map=None) -> Tensor:
    if _is_str_or_object(batch[0]):
        raise type_error(_COLLATE_ERROR.format(batch[0].dtype))
    return collate([as_tensor(b) for b in batch], collate_fn_map=collate_fn_map)


def collate_numpy_scalar_fn(batch, *, collate_fn_map=None) -> Tensor:
    return from_numpy(np.asarray(batch))


def collate_float_fn(batch, *, collate_fn_map=None) -> Tensor:
    return tensor(batch, dtype=float64)


def collate_int_fn(batch, *, collate_fn_map=None) -> Tensor:
    # bools are ints too: a batch of them becomes a bool tensor
    return tensor(batch)


def collate_str_fn(batch, *, collate_fn_map=None):
    return batch


default_collate_fn_map: dict[type | tuple[type, ...], Callable] = {
    Tensor: collate_tensor_fn,
    np.ndarray: collate_numpy_array_fn,
    (np.bool_, np.number): collate_numpy_scalar_fn,
    float: collate_float_fn,
    int: collate_int_fn,
    str: collate_str_fn,
    bytes: collate_str_fn,
}


def default_collate(batch):
    """Stack a list of samples into a batch, as torch's default_collate does:

    tensors and numpy arrays are stacked along a new first dimension; Python floats become a
    float64 tensor, ints an int64 tensor (bools a bool tensor); strings and bytes stay a list;
    dicts are collated key by key, namedtuples field by field, and other sequences position by
    position (tuples come back as lists).
    """
    return collate(batch, collate_fn_map=default_collate_fn_map)
