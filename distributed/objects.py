"""Collectives of picklable Python objects, pickled into byte tensors as PyTorch does.

Unpickling runs what the other ranks sent: use them only among processes you trust, as in
PyTorch. Tensors never travel this way: the tensor collectives move their memory as it is.
"""

from __future__ import annotations

import pickle

import numpy as np

from ..errors import type_error, value_error
from .collectives import all_gather_into_tensor, broadcast
from .process_group import resolve


def _to_bytes(obj):
    from .._tensor.factories import from_numpy

    return from_numpy(np.frombuffer(pickle.dumps(obj), dtype=np.uint8).copy())


def all_gather_object(object_list: list, obj, group=None) -> None:
    """Every rank's picklable obj into object_list[rank]. Unpickling runs what the other
    ranks sent: use it only among processes you trust, as in PyTorch."""
    from .._tensor.factories import tensor as make_tensor
    from .._tensor.factories import zeros

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
    from .._tensor.factories import tensor as make_tensor
    from .._tensor.factories import zeros

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
