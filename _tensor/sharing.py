"""ember.multiprocessing: Python's multiprocessing, with tensors in shared memory.

Tensor.share_memory_() moves a CPU tensor's storage into a named shared-memory block; sent to
another process (spawn or forkserver pickling), such a tensor arrives as a view of the same
block, so in-place writes (an optimizer's step) are seen by every process, as Hogwild training
with torch.multiprocessing expects. Other tensors are pickled by value as usual.
"""

from __future__ import annotations

import atexit
import multiprocessing as _mp
import os
from multiprocessing import *  # noqa: F403  (the standard API: Process, Queue, Pool, ...)
from multiprocessing import shared_memory
from multiprocessing.reduction import ForkingPickler

import numpy as np

from ..errors import runtime_error
from .tensor import Tensor

__all__ = [*_mp.__all__, "share_memory_", "is_shared"]


def share_memory_(self: Tensor) -> Tensor:
    """Move this CPU tensor's storage into shared memory (a no-op when it is there already)."""
    if self._shared_block() is not None:
        return self
    if self._device.type != "cpu":
        raise runtime_error(
            f"share_memory_: ember shares CPU tensors only, got a tensor on {self._device}"
        )
    _register(type(self))
    data = np.ascontiguousarray(self._data)
    block = shared_memory.SharedMemory(create=True, size=max(data.nbytes, 1))
    _CREATED[block.name] = os.getpid()
    shared = np.ndarray(data.shape, data.dtype, buffer=block.buf)
    shared[...] = data
    self._data = shared
    _BLOCKS[id(shared)] = (block, shared)
    return self


def _shared_block(self: Tensor):
    entry = _BLOCKS.get(id(self._data))
    return entry[0] if entry is not None and entry[1] is self._data else None


def is_shared(self: Tensor) -> bool:
    return self._shared_block() is not None


# id(array) -> (its SharedMemory block, the array): keeps both alive while the tensor lives
_BLOCKS: dict = {}
# block name -> the process that made it, which removes its name at exit (_unlink_own)
_CREATED: dict = {}


def _unlink_own() -> None:
    """At exit, the blocks this process made lose their names (the memory goes with the last
    process that maps it). Without it Python's resource tracker removed them itself and
    warned "leaked shared_memory objects" after every Hogwild run. A forked child, which
    inherits the table, leaves its parent's blocks alone."""
    pid = os.getpid()
    for block, _ in list(_BLOCKS.values()):
        if _CREATED.get(block.name) == pid:
            try:
                block.unlink()
            except FileNotFoundError:
                pass


atexit.register(_unlink_own)

Tensor.share_memory_ = share_memory_
Tensor.is_shared = is_shared
Tensor._shared_block = _shared_block


def _rebuild_shared(cls, name: str, shape, dtype, requires_grad: bool):
    # the creating process owns the block's lifetime (_unlink_own). Attaching registers the
    # name with the resource tracker again, which this process shares with its parent: a
    # no-op there, where unregistering here dropped the parent's own registration (the block
    # then outlived every process, and the parent's unlink made the tracker raise)
    block = shared_memory.SharedMemory(name=name)
    data = np.ndarray(shape, dtype, buffer=block.buf)
    _BLOCKS[id(data)] = (block, data)
    out = Tensor._make(data)
    if cls is not Tensor:
        out = cls(out, requires_grad)
    elif requires_grad:
        out.requires_grad_(True)
    return out


def _reduce_tensor(t: Tensor):
    block = t._shared_block()
    if block is None:
        return t.__reduce_ex__(2)
    return _rebuild_shared, (type(t), block.name, t._data.shape, t._data.dtype,
                             t.requires_grad)


def _register(cls) -> None:
    ForkingPickler.register(cls, _reduce_tensor)
    for sub in cls.__subclasses__():
        _register(sub)


_register(Tensor)
