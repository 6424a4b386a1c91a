"""DistributedDataParallel: one model replica per process, gradients averaged in backward.

As in PyTorch: construction broadcasts rank 0's parameters and buffers (after checking that
every rank has the same parameters); each backward all-reduces gradient buckets while it
runs (_reducer.py) and returns with every rank's .grad holding the average; no_sync() skips
that for gradient accumulation; with broadcast_buffers, rank 0's buffers (BatchNorm's running
statistics) are copied to every rank before each forward. Each rank's BatchNorm normalizes with
its own batch's statistics, as in PyTorch (SyncBatchNorm is not part of ember yet).
"""

from __future__ import annotations

import contextlib

from ... import _tensor
from ... import distributed as dist
from ..._tensor import hooks
from ...autograd import grad_mode
from ...errors import runtime_error, value_error
from ...runtime.device import device as Device
from ..module import Module
from ._reducer import MIB, Reducer

# PyTorch's size for broadcasting the model's state at construction and buffers per forward
BROADCAST_BUCKET_BYTES = 250 * MIB


def broadcast_coalesced(tensors, src: int, group, bucket_bytes: int = BROADCAST_BUCKET_BYTES):
    """Broadcast tensors from rank src in place, packed into few flat buffers (one per
    dtype and device, up to bucket_bytes each), so many small tensors cost few collectives."""
    groups: dict = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    with grad_mode.no_grad():
        for members in groups.values():
            batch, nbytes = [], 0
            for t in members:
                batch.append(t)
                nbytes += t.numel() * t.element_size()
                if nbytes >= bucket_bytes:
                    _broadcast_flat(batch, src, group)
                    batch, nbytes = [], 0
            if batch:
                _broadcast_flat(batch, src, group)


def _broadcast_flat(tensors, src: int, group) -> None:
    from ...runtime.device import array_module

    xp = array_module(tensors[0].device)
    flat = xp.concatenate([t._data.reshape(-1) for t in tensors])
    dist.broadcast(_tensor.Tensor._make(flat, tensors[0].dtype, tensors[0].device), src, group)
    if dist.get_rank(group) == dist.get_group_rank(group, src):
        return
    start = 0
    for t in tensors:
        n = t.numel()
        t._data[...] = flat[start : start + n].reshape(t._data.shape)
        t._version[0] += 1
        start += n


class DistributedDataParallel(Module):
    """Data parallelism across processes: wrap the model, train as usual.

    module: the model (the same on every rank; rank 0's values win at construction).
    device_ids: None for a CPU model, or [i] for a model on cuda:i (one device per process).
    broadcast_buffers: copy rank 0's buffers to every rank before each forward.
    bucket_cap_mb: size of the gradient buckets reduced together (the first is 1 MiB).
    find_unused_parameters: find, after each forward, the parameters the output does not
    depend on, so that backward does not wait for their gradients.
    """

    def __init__(
        self,
        module: Module,
        device_ids=None,
        output_device=None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group=None,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
    ):
        super().__init__()
        scripted = None
        inner = getattr(module, "_module", None)
        if not isinstance(module, Module) and isinstance(inner, Module):
            # an ember.script(module): its calls run the compiled graphs, and its parameters,
            # buffers and state_dict are the module's own (as `module.` keys)
            scripted, module = module, inner
        if not isinstance(module, Module):
            raise value_error(
                f"DistributedDataParallel wraps an ember.nn.Module, got {type(module).__name__}"
            )
        self.module = module
        self.__dict__["_scripted"] = scripted
        group = dist.process_group.resolve(process_group, "DistributedDataParallel")
        if group is None:
            raise value_error("DistributedDataParallel: this rank is not in process_group")
        self.process_group = group
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise runtime_error(
                "DistributedDataParallel is not needed when a module doesn't have any parameter "
                "that requires a gradient."
            )
        self.device = self._check_devices(module, device_ids, output_device)
        self.device_ids = None if device_ids is None else [self.device.index]
        self.output_device = None if device_ids is None else self.device
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.bucket_cap_mb = 25 if bucket_cap_mb is None else bucket_cap_mb
        if not self.bucket_cap_mb > 0:
            raise value_error(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True

        self._verify_same_model(module, group)
        state = [p for _, p in module.named_parameters()] + list(module.buffers())
        broadcast_coalesced(state, 0, group)
        names = [n for n, _ in named]
        params = [p for _, p in named]
        cap = int(self.bucket_cap_mb * MIB)
        self.reducer = Reducer(params, names, group, cap, find_unused_parameters)

    @staticmethod
    def _check_devices(module, device_ids, output_device):
        devices = {p.device for p in module.parameters()}
        if len(devices) != 1:
            raise value_error(
                "DistributedDataParallel: the module's parameters are on several devices "
                f"({', '.join(sorted(map(str, devices)))}); put the replica on one device"
            )
        (device,) = devices
        if device.type == "cpu":
            if device_ids is not None or output_device is not None:
                raise value_error(
                    "DistributedDataParallel device_ids and output_device arguments only work "
                    f"with single-device GPU modules or CPU modules, but got device_ids "
                    f"{device_ids}, output_device {output_device}, and module parameters "
                    f"{{{device}}}."
                )
            return device
        if device_ids is not None:
            if len(device_ids) != 1:
                raise value_error(
                    f"DistributedDataParallel: device_ids must name one device per process, got "
                    f"{device_ids}"
                )
            wanted = device_ids[0]
            wanted = Device(wanted) if isinstance(wanted, (str, Device)) else Device("cuda", wanted)
            if wanted != device:
                raise value_error(
                    f"DistributedDataParallel: device_ids={device_ids} but the module is on "
                    f"{device}; move it with module.to({str(wanted)!r}) first"
                )
        return device

    @staticmethod
    def _verify_same_model(module, group) -> None:
        mine = [(n, p.dtype.name, tuple(p.shape)) for n, p in module.named_parameters()]
        every = [None] * dist.get_world_size(group)
        dist.all_gather_object(every, mine, group=group)
        for rank, theirs in enumerate(every):
            if theirs == every[0]:
                continue
            if len(theirs) != len(every[0]):
                raise runtime_error(
                    f"DDP expects same model across all ranks, but Rank 0 has {len(every[0])} "
                    f"params, while rank {rank} has inconsistent {len(theirs)} params."
                )
            for a, b in zip(every[0], theirs):
                if a != b:
                    raise runtime_error(
                        f"DDP expects same model across all ranks: parameter {a[0]} is "
                        f"{a[1]} {list(a[2])} on rank 0 but {b[0]} is {b[1]} {list(b[2])} on "
                        f"rank {rank}"
                    )

    # -- forward ---------------------------------------------------------------------------

    def forward(self, *inputs, **kwargs):
        hooks.stop_trace("DistributedDataParallel reduces gradients outside the graph")
        if self.require_forward_param_sync and self.broadcast_buffers:
            buffers = list(self.module.buffers())
            if buffers:
                broadcast_coalesced(buffers, 0, self.process_group)
        if self.device.type == "cuda":
            inputs = _to_device(inputs, self.device)
            kwargs = _to_device(kwargs, self.device)
        call = self._scripted if self._scripted is not None else self.module
        output = call(*inputs, **kwargs)
        # (set through __dict__: a plain attribute assignment counts as a change of the
        # module's structure, which scripted submodules would re-check on every call)
        if grad_mode.is_grad_enabled() and self.require_backward_grad_sync:
            self.__dict__["require_forward_param_sync"] = True
            self.reducer.prepare_for_backward(output if self.find_unused_parameters else None)
        else:
            self.__dict__["require_forward_param_sync"] = False
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward only accumulates into .grad; the first backward after it averages
        everything accumulated (gradient accumulation over several batches)."""
        previous = self.require_backward_grad_sync
        self.__dict__["require_backward_grad_sync"] = False
        try:
            yield
        finally:
            self.__dict__["require_backward_grad_sync"] = previous

    def extra_repr(self) -> str:
        return ""


def _to_device(obj, device):
    if isinstance(obj, _tensor.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to_device(x, device) for x in obj)
    if isinstance(obj, list):
        return [_to_device(x, device) for x in obj]
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


__all__ = ["DistributedDataParallel", "broadcast_coalesced"]
