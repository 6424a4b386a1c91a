"""Process groups: who takes part in a collective, over which backend, with which timeout.

The world comes from the MPI launcher (mpiexec, or `python -m ember.distributed.run`): rank and
world size are MPI's COMM_WORLD's. The default group works on a duplicate of COMM_WORLD, so a
program's own mpi4py traffic never mixes with ember's; new_group() splits it. Each group keeps
one backend per device type: MPI for CPU tensors, NCCL (cupy) for CUDA tensors.

Once a group of more than one process is up, an uncaught exception on any rank prints the
traceback and the rank, then calls MPI_Abort, which ends every rank: a failing rank never
leaves the others waiting in a collective (mpi4py's recommended `python -m mpi4py` pattern).
Under `python -m ember.distributed.run`, joining and leaving the default group, and such a
failure, are also reported to the launcher (_channel.py), which watches how every rank ends.
"""

from __future__ import annotations

import datetime
import itertools
import os
import sys
import time
import warnings

from ..errors import runtime_error, type_error, value_error
from ..runtime.kernels.collectives import GROUPS
from . import _channel
from ._errors import backend_error

# torch.distributed's default timeout for collectives
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)

# backend name -> "module:class" of its implementation, and the device type it serves
BACKENDS = {
    "mpi": ("backends.mpi", "MPIBackend", "cpu"),
    "nccl": ("backends.nccl", "NCCLBackend", "cuda"),
}

_NOT_INITIALIZED = (
    "Default process group has not been initialized, please make sure to call init_process_group."
)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise runtime_error(
            "ember.distributed needs mpi4py and an MPI library: pip install 'ember[distributed]' "
            "(or pip install mpi4py mpich)"
        ) from None
    return MPI


def is_available() -> bool:
    """Whether ember.distributed can run here (mpi4py and an MPI library are installed)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_mpi_available() -> bool:
    return is_available()


def is_nccl_available() -> bool:
    """Whether the NCCL backend can run: cupy with NCCL, and a GPU."""
    from ..runtime.device import is_cuda_available

    if not is_cuda_available():
        return False
    try:
        from cupy.cuda import nccl
    except ImportError:
        return False
    return bool(getattr(nccl, "available", True))


def _timeout_seconds(timeout, what: str) -> float:
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise type_error(
            f"{what}: timeout must be a datetime.timedelta or a number of seconds, got "
            f"{type(timeout).__name__}"
        )
    if not seconds > 0:
        raise value_error(f"{what}: timeout must be positive, got {seconds} s")
    return seconds


def _parse_backend(backend) -> dict[str, str]:
    """'mpi', 'nccl', 'cpu:mpi,cuda:nccl' or None -> {device type: backend name}."""
    if backend is None:
        return {"cpu": "mpi", "cuda": "nccl"}
    if not isinstance(backend, str):
        raise type_error(f"backend must be a string such as 'mpi' or 'nccl', got {backend!r}")
    name = backend.lower()
    if name in BACKENDS:
        return {BACKENDS[name][2]: name}
    table = {}
    for part in name.split(","):
        device_type, _, backend_name = part.strip().partition(":")
        if backend_name not in BACKENDS or BACKENDS[backend_name][2] != device_type:
            raise value_error(
                f"unknown backend {backend!r}: use 'mpi' (CPU tensors), 'nccl' (CUDA tensors), "
                "or 'cpu:mpi,cuda:nccl' for both"
            )
        table[device_type] = backend_name
    return table


def _backend_string(table: dict[str, str]) -> str:
    if len(table) == 1:
        return next(iter(table.values()))
    return ",".join(f"{d}:{b}" for d, b in sorted(table.items()))


_ids = itertools.count()


class ProcessGroup:
    """A set of ranks that run collectives together, as torch.distributed.ProcessGroup."""

    def __init__(self, comm, ranks: list[int], backends: dict[str, str], timeout: float):
        from .graph_ops import GraphCollectives

        self._comm = comm
        self._ranks = ranks  # global rank of each group rank
        self._rank = comm.Get_rank()
        self._size = comm.Get_size()
        self._backend_names = backends
        self._backends: dict = {}
        self.timeout = timeout
        self.check_collectives = os.environ.get("EMBER_DISTRIBUTED_CHECK", "1") != "0"
        self.broken: str | None = None  # set once a collective failed or timed out
        self._control = None
        # how the collective graph ops of ember.script find this group (by id, in attrs)
        self.id = next(_ids)
        GROUPS[self.id] = GraphCollectives(self)

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def name(self) -> str:
        return _backend_string(self._backend_names)

    @property
    def ranks(self) -> list[int]:
        return list(self._ranks)

    def backend_for(self, device, what: str):
        """The backend that moves tensors on `device`; it starts on first use."""
        backend = self._backends.get(device.type)
        if backend is not None:
            return backend
        name = self._backend_names.get(device.type)
        if name is None:
            served = ", ".join(f"{b!r} for {d} tensors" for d, b in self._backend_names.items())
            raise runtime_error(
                f"{what}: the process group has no backend for {device} tensors (it has "
                f"{served}); init_process_group(backend='cpu:mpi,cuda:nccl') serves both"
            )
        import importlib

        module, cls, _ = BACKENDS[name]
        try:
            backend_cls = getattr(importlib.import_module(f".{module}", __package__), cls)
        except ImportError as exc:
            raise runtime_error(
                f"{what}: the {name} backend cannot start here ({exc}); it needs "
                + (
                    "cupy with NCCL and a GPU: pip install 'ember[cuda]'"
                    if name == "nccl"
                    else "mpi4py: pip install 'ember[distributed]'"
                )
            ) from None
        backend = backend_cls(self._comm, self.timeout)
        self._backends[device.type] = backend
        return backend

    def control(self):
        """The MPI backend over the group's communicator, whatever moves its tensors: it runs
        barriers, and gathers the ranks' descriptions of each collective (work.Check)."""
        if self._control is None:
            from .backends.mpi import MPIBackend

            self._control = MPIBackend(self._comm)
        return self._control

    def group_rank(self, global_rank: int, what: str) -> int:
        if isinstance(global_rank, bool) or not isinstance(global_rank, int):
            raise type_error(f"{what}: a rank must be an int, got {global_rank!r}")
        try:
            return self._ranks.index(global_rank)
        except ValueError:
            raise value_error(
                f"{what}: global rank {global_rank} is not part of the group (its ranks are "
                f"{self._ranks})"
            ) from None

    def check_usable(self, what: str) -> None:
        if self.broken is not None:
            raise backend_error(
                f"{what}: the process group is unusable after an earlier failure: {self.broken}"
            )

    def _free(self) -> None:
        GROUPS.pop(self.id, None)
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        comm, self._comm = self._comm, None
        if comm is not None:
            comm.Free()

    def __repr__(self) -> str:
        return (
            f"<ember.distributed.ProcessGroup backend={self.name()!r} rank={self._rank} "
            f"size={self._size}>"
        )


class _NonGroupMember:
    """What new_group() returns on a rank outside the group."""

    def __repr__(self) -> str:
        return "GroupMember.NON_GROUP_MEMBER"


class GroupMember:
    """GroupMember.WORLD is the default group (None before init); NON_GROUP_MEMBER is what
    new_group returns on ranks outside the new group."""

    WORLD: ProcessGroup | None = None
    NON_GROUP_MEMBER = _NonGroupMember()


group = GroupMember  # torch.distributed.group.WORLD

_groups: list[ProcessGroup] = []
_previous_excepthook = None


def is_initialized() -> bool:
    return GroupMember.WORLD is not None


def default_group() -> ProcessGroup:
    if GroupMember.WORLD is None:
        raise value_error(_NOT_INITIALIZED)
    return GroupMember.WORLD


def resolve(group_arg, what: str):
    """The ProcessGroup for a `group=` argument, or None on a rank outside that group."""
    world = default_group()
    if group_arg is None or group_arg is world:
        return world
    if group_arg is GroupMember.NON_GROUP_MEMBER:
        warnings.warn(
            f"Running {what} on global rank {world.rank()} which does not belong to the given "
            "group.",
            stacklevel=3,
        )
        return None
    if not isinstance(group_arg, ProcessGroup):
        raise type_error(f"{what}: group must be a ProcessGroup, got {type(group_arg).__name__}")
    if group_arg._comm is None:
        raise runtime_error(f"{what}: the group was destroyed (destroy_process_group)")
    return group_arg


def init_process_group(
    backend: str | None = None,
    init_method: str | None = None,
    timeout=None,
    world_size: int = -1,
    rank: int = -1,
) -> None:
    """Join the default process group: every process the MPI launcher started.

    backend: 'mpi' (CPU tensors), 'nccl' (CUDA tensors, through cupy), or None for both.
    timeout (a timedelta or seconds): how long a collective may wait for the other ranks
    before it raises. world_size and rank, when given, must be what the launcher chose.
    """
    if GroupMember.WORLD is not None:
        raise value_error("trying to initialize the default process group twice!")
    table = _parse_backend(backend)
    seconds = _timeout_seconds(timeout, "init_process_group")
    if init_method not in (None, "env://"):
        raise value_error(
            f"init_process_group(init_method={init_method!r}): ember's processes find each other "
            "through the MPI launcher; start them with `python -m ember.distributed.run --nproc "
            "N script.py` or `mpiexec -n N python script.py` and leave init_method out"
        )
    MPI = _mpi()
    world = MPI.COMM_WORLD
    size, my_rank = world.Get_size(), world.Get_rank()
    launched_for = os.environ.get("WORLD_SIZE")
    if size == 1 and launched_for not in (None, "", "1") and world_size in (-1, None):
        raise runtime_error(
            f"init_process_group: WORLD_SIZE={launched_for} is set but MPI started this process "
            "alone; ember's processes are started by MPI: `python -m ember.distributed.run "
            f"--nproc {launched_for} script.py`"
        )
    if world_size not in (-1, None) and world_size != size:
        raise value_error(
            f"init_process_group(world_size={world_size}): the MPI launcher started {size} "
            f"process(es); start {world_size} with `python -m ember.distributed.run --nproc "
            f"{world_size} script.py`, or leave world_size out"
        )
    if rank not in (-1, None) and rank != my_rank:
        raise value_error(
            f"init_process_group(rank={rank}): the MPI launcher made this process rank "
            f"{my_rank}; leave rank out"
        )
    comm = world.Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    pg = ProcessGroup(comm, list(range(size)), table, seconds)
    GroupMember.WORLD = pg
    _groups.append(pg)
    if size > 1:
        _install_excepthook()
    _channel.joined()


def destroy_process_group(group=None) -> None:
    """Leave the group (the default one: every group, and ember.distributed is uninitialized)."""
    if group is GroupMember.NON_GROUP_MEMBER:
        return
    world = default_group()
    if group is None or group is world:
        for pg in reversed(_groups):
            pg._free()
        _groups.clear()
        GroupMember.WORLD = None
        _uninstall_excepthook()
        _channel.left("it called destroy_process_group")
        return
    if group in _groups:
        _groups.remove(group)
        group._free()


def new_group(ranks=None, timeout=None, backend: str | None = None):
    """A group of the given global ranks (all of them by default). Every rank of the default
    group must call it, members or not, as in PyTorch; non-members get NON_GROUP_MEMBER."""
    world = default_group()
    size = world.size()
    ranks = list(range(size)) if ranks is None else sorted(ranks)
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < size:
            raise value_error(f"new_group: ranks must be ints in [0, {size}), got {r!r}")
    if len(set(ranks)) != len(ranks):
        raise value_error(f"new_group: ranks has duplicates: {ranks}")
    table = world._backend_names if backend is None else _parse_backend(backend)
    seconds = world.timeout if timeout is None else _timeout_seconds(timeout, "new_group")
    MPI = _mpi()
    me = world.rank()
    member = me in ranks
    comm = world._comm.Split(0 if member else MPI.UNDEFINED, ranks.index(me) if member else 0)
    if not member:
        return GroupMember.NON_GROUP_MEMBER
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    pg = ProcessGroup(comm, ranks, table, seconds)
    _groups.append(pg)
    return pg


def get_rank(group=None) -> int:
    """This process's rank in the group (-1 outside it)."""
    if group is GroupMember.NON_GROUP_MEMBER:
        default_group()
        return -1
    return resolve(group, "get_rank").rank()


def get_world_size(group=None) -> int:
    """The number of processes in the group (-1 outside it)."""
    if group is GroupMember.NON_GROUP_MEMBER:
        default_group()
        return -1
    return resolve(group, "get_world_size").size()


def get_backend(group=None) -> str:
    if group is GroupMember.NON_GROUP_MEMBER:
        raise value_error("get_backend: this rank is not part of the group")
    return resolve(group, "get_backend").name()


def get_process_group_ranks(group) -> list[int]:
    """The global ranks of a group, in group-rank order."""
    if group is None:
        return default_group().ranks
    return resolve(group, "get_process_group_ranks").ranks


def get_global_rank(group, group_rank: int) -> int:
    ranks = get_process_group_ranks(group)
    if isinstance(group_rank, bool) or not isinstance(group_rank, int):
        raise type_error(f"get_global_rank: group_rank must be an int, got {group_rank!r}")
    if not 0 <= group_rank < len(ranks):
        raise value_error(
            f"get_global_rank: group rank {group_rank} is out of range for a group of {len(ranks)}"
        )
    return ranks[group_rank]


def get_group_rank(group, global_rank: int) -> int:
    pg = default_group() if group is None else resolve(group, "get_group_rank")
    return pg.group_rank(global_rank, "get_group_rank")


# -- one failing rank ends them all -----------------------------------------------------------


def _abort_on_uncaught_exception(exc_type, exc, tb):
    _previous_excepthook(exc_type, exc, tb)
    world = GroupMember.WORLD
    if world is None:
        return
    MPI = _mpi()
    rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
    sys.stdout.flush()
    error = _channel.describe(exc)
    sys.stderr.write(
        f"ember.distributed: rank {rank} (of {size}) failed with {error}\n"
        "ember.distributed: aborting every rank (MPI_Abort)\n"
    )
    sys.stderr.flush()
    _channel.failed(error)
    # the launcher forwards this rank's output through a pipe, and MPI_Abort ends every
    # process at once: a moment first, so that the traceback reaches the terminal
    time.sleep(0.25)
    MPI.COMM_WORLD.Abort(1)


def _install_excepthook() -> None:
    global _previous_excepthook
    if _previous_excepthook is None:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _abort_on_uncaught_exception


def _uninstall_excepthook() -> None:
    global _previous_excepthook
    if _previous_excepthook is not None:
        if sys.excepthook is _abort_on_uncaught_exception:
            sys.excepthook = _previous_excepthook
        _previous_excepthook = None
