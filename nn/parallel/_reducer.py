"""DDP's gradient reducer: gradient buckets, filled and all-reduced while backward runs.

Parameters are grouped into buckets in reverse registration order (roughly the order backward
produces their gradients). A hook on each parameter, called once backward has accumulated its
.grad, copies the gradient into its bucket's flat buffer; when a bucket is full it is divided
by the world size and all-reduced asynchronously, in bucket order on every rank. When the
last bucket has started, a callback queued in the autograd engine waits for every reduction
at the end of that backward, and writes the averaged gradients back into .grad: so .grad is
final when loss.backward() returns, before any optimizer reads it.
"""

from __future__ import annotations

import weakref

import numpy as np

from ... import distributed as dist
from ..._tensor import Tensor
from ...autograd.engine import queue_callback
from ...autograd.grad_mode import no_grad
from ...autograd.graph import AccumulateGrad, edge_of
from ...errors import runtime_error
from ...runtime.device import array_module

MIB = 1024 * 1024
FIRST_BUCKET_BYTES = 1 * MIB  # PyTorch's: the first bucket starts communicating early


def compute_buckets(params, cap_bytes: int, first_cap_bytes: int = FIRST_BUCKET_BYTES):
    """Lists of parameter indices: reverse registration order, split where a bucket passes
    its size cap (the first bucket of each dtype and device has the smaller of the two caps,
    so that the first reduction starts early)."""
    first_cap_bytes = min(first_cap_bytes, cap_bytes)
    open_buckets: dict = {}
    buckets = []
    for i in reversed(range(len(params))):
        p = params[i]
        key = (p.dtype, p.device)
        indices, nbytes, caps = open_buckets.get(key, ([], 0, 0))
        indices.append(i)
        nbytes += p.numel() * p.element_size()
        limit = first_cap_bytes if caps == 0 else cap_bytes
        if nbytes >= limit:
            buckets.append(indices)
            open_buckets[key] = ([], 0, caps + 1)
        else:
            open_buckets[key] = (indices, nbytes, caps)
    buckets += [indices for indices, _, _ in open_buckets.values() if indices]
    buckets.sort(key=lambda indices: -indices[0])
    return buckets


class _Bucket:
    __slots__ = ("flat", "indices", "offsets", "pending", "tensor", "work")

    def __init__(self, indices, params):
        self.indices = indices
        self.offsets = []
        total = 0
        for i in indices:
            self.offsets.append(total)
            total += params[i].numel()
        first = params[indices[0]]
        self.flat = array_module(first.device).zeros(total, dtype=first._data.dtype)
        self.tensor = Tensor._make(self.flat, first.dtype, first.device)
        self.pending = len(indices)
        self.work = None


def reachable_parameters(outputs) -> set[int]:
    """ids of the leaf tensors whose gradient the autograd graph of outputs reaches."""
    roots = [edge_of(t) for t in _tensors_in(outputs) if t.requires_grad]
    stack = [edge[0] for edge in roots if edge is not None]
    seen = {id(node) for node in stack}
    found = set()
    while stack:
        node = stack.pop()
        if isinstance(node, AccumulateGrad):
            found.add(id(node.variable))
        for edge in node.next_functions:
            if edge is not None and id(edge[0]) not in seen:
                seen.add(id(edge[0]))
                stack.append(edge[0])
    return found


def _tensors_in(obj):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _tensors_in(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors_in(x)


class Reducer:
    """Buckets, autograd hooks and the end-of-backward wait of one DistributedDataParallel."""

    def __init__(self, params, names, process_group, cap_bytes: int, find_unused: bool):
        self.params = params
        self.names = names
        self.group = process_group
        self.world_size = dist.get_world_size(process_group)
        self.find_unused = find_unused
        self.buckets = [_Bucket(ix, params) for ix in compute_buckets(params, cap_bytes)]
        self.locator = {}
        for b, bucket in enumerate(self.buckets):
            for i, offset in zip(bucket.indices, bucket.offsets):
                self.locator[i] = (b, offset)
        self.expect_hooks = False  # a synchronizing forward ran: its backward reduces
        self.require_finalize = False  # a reduction started and has not finished yet
        self.ready = [False] * len(params)
        self.next_bucket = 0
        self.unused: list[int] = []
        self.marked_unused = False
        self.locally_used = np.zeros(len(params), dtype=np.int32)
        self.used_work = None
        this = weakref.ref(self)
        self.handles = [
            p.register_post_accumulate_grad_hook(_hook(this, i)) for i, p in enumerate(params)
        ]

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()

    # -- forward ---------------------------------------------------------------------------

    def prepare_for_backward(self, outputs) -> None:
        """Called after a forward whose backward must reduce: arm the hooks."""
        self.ensure_prior_reduction_finished()
        self.expect_hooks = True
        self.ready = [False] * len(self.params)
        self.next_bucket = 0
        for bucket in self.buckets:
            bucket.pending = len(bucket.indices)
            bucket.work = None
        self.marked_unused = False
        self.unused = []
        if self.find_unused:
            reached = reachable_parameters(outputs)
            self.unused = [i for i, p in enumerate(self.params) if id(p) not in reached]

    def ensure_prior_reduction_finished(self) -> None:
        if not self.require_finalize:
            return
        missing = [self.names[i] for i, r in enumerate(self.ready) if not r]
        raise runtime_error(
            "Expected to have finished reduction in the prior iteration before starting a new "
            "one. This error indicates that your module has parameters that were not used in "
            "producing loss. You can enable unused parameter detection by passing the keyword "
            "argument `find_unused_parameters=True` to `ember.nn.parallel."
            "DistributedDataParallel`, and by making sure all `forward` function outputs "
            "participate in calculating loss. Parameters which did not receive grad for rank "
            f"{dist.get_rank()}: {', '.join(missing)}"
        )

    # -- backward --------------------------------------------------------------------------

    def on_grad_ready(self, index: int) -> None:
        if self.find_unused and self.params[index].grad is not None:
            self.locally_used[index] = 1  # also during no_sync: used since the last reduction
        if not self.expect_hooks:
            return
        if not self.marked_unused:
            self.marked_unused = True
            for i in self.unused:
                self.mark_ready(i)
        self.mark_ready(index)

    def mark_ready(self, index: int) -> None:
        if self.ready[index]:
            raise runtime_error(
                f"Expected to mark a variable ready only once: parameter {self.names[index]} "
                "got its gradient twice in one iteration (a second backward through the same "
                "forward, or a parameter used in several reentrant backward passes)"
            )
        self.ready[index] = True
        self.require_finalize = True
        b, offset = self.locator[index]
        bucket = self.buckets[b]
        p = self.params[index]
        view = bucket.flat[offset : offset + p.numel()]
        grad = p.grad
        if grad is None:
            view[...] = 0  # unused here; the other ranks' gradients still average in
        else:
            view[...] = grad._data.reshape(-1)
        bucket.pending -= 1
        if bucket.pending == 0:
            self._launch_ready_buckets()
        else:
            self._progress()

    def _launch_ready_buckets(self) -> None:
        # every rank starts the buckets in the same order, whatever order they filled in
        while self.next_bucket < len(self.buckets):
            bucket = self.buckets[self.next_bucket]
            if bucket.pending:
                return
            bucket.flat /= self.world_size
            bucket.work = dist.all_reduce(bucket.tensor, group=self.group, async_op=True)
            self.next_bucket += 1
        if self.find_unused:
            used = Tensor._make(self.locally_used.copy())
            self.used_work = (used, dist.all_reduce(used, group=self.group, async_op=True))
        queue_callback(self.finalize)

    def _progress(self) -> None:
        # testing a request lets MPI move the reductions in flight along
        for bucket in self.buckets[: self.next_bucket]:
            if not bucket.work.is_completed():
                return

    def finalize(self) -> None:
        """End of backward: wait for every bucket; put the averaged gradients in .grad."""
        try:
            for bucket in self.buckets:
                bucket.work.wait()
            used = None
            if self.used_work is not None:
                tensor, work = self.used_work
                work.wait()
                used = tensor._data
            with no_grad():
                for bucket in self.buckets:
                    for i, offset in zip(bucket.indices, bucket.offsets):
                        if used is not None and not used[i]:
                            continue  # no rank used it: its .grad stays as it was
                        self._write_grad(self.params[i], bucket.flat[offset:], bucket)
        finally:
            self.expect_hooks = False
            self.require_finalize = False
            self.used_work = None
            self.locally_used[:] = 0

    @staticmethod
    def _write_grad(p, tail, bucket) -> None:
        values = tail[: p.numel()].reshape(p._data.shape)
        grad = p.grad
        if (
            grad is not None
            and grad._grad_fn is None
            and tuple(grad.shape) == tuple(p.shape)
            and grad._dtype is p._dtype
            and getattr(grad._data.flags, "writeable", True)
        ):
            grad._data[...] = values
            grad._version[0] += 1
        else:
            p.grad = Tensor._make(values.copy(), p._dtype, p._device)


def _hook(reducer_ref, index: int):
    def hook(param) -> None:
        reducer = reducer_ref()
        if reducer is not None:
            reducer.on_grad_ready(index)

    return hook
