"""The MPI backend: collectives on contiguous numpy arrays through mpi4py.

Only mpi4py's upper-case, buffer-based calls are used, so arrays go to MPI without a copy and
without pickling. Every call is MPI's non-blocking form (Iallreduce, Ibcast, ...); the caller
waits on the returned requests (work.py), which is what makes a timeout possible.
"""

from __future__ import annotations

from mpi4py import MPI

# backend-neutral reduction name -> MPI operation
_OPS = {
    "sum": MPI.SUM,
    "prod": MPI.PROD,
    "min": MPI.MIN,
    "max": MPI.MAX,
    "band": MPI.BAND,
    "bor": MPI.BOR,
    "bxor": MPI.BXOR,
    "land": MPI.LAND,
    "lor": MPI.LOR,
    "lxor": MPI.LXOR,
}


class MPIRequest:
    """An MPI request; test() is True once it has completed."""

    __slots__ = ("request", "status")

    def __init__(self, request):
        self.request = request
        self.status = MPI.Status()

    def test(self) -> bool:
        return self.request.Test(self.status)

    def received(self) -> tuple[int, int]:
        """(source rank in the communicator, bytes received) of a completed receive."""
        return self.status.Get_source(), self.status.Get_count(MPI.BYTE)


class MPIBackend:
    """Collectives among the ranks of one MPI communicator, on numpy arrays."""

    name = "mpi"
    device_type = "cpu"
    errors = (MPI.Exception,)
    reductions = frozenset(_OPS)

    def __init__(self, comm, timeout: float | None = None):
        self.comm = comm  # (the timeout is work.py's: every call here returns at once)

    @staticmethod
    def describe(exc) -> str:
        return exc.Get_error_string() if isinstance(exc, MPI.Exception) else str(exc)

    def close(self) -> None:
        pass  # the communicator belongs to the process group, which frees it

    def all_reduce(self, buf, op: str):
        return [MPIRequest(self.comm.Iallreduce(MPI.IN_PLACE, buf, _OPS[op]))]

    def broadcast(self, buf, root: int):
        return [MPIRequest(self.comm.Ibcast(buf, root))]

    def reduce(self, buf, op: str, root: int):
        if self.comm.Get_rank() == root:
            return [MPIRequest(self.comm.Ireduce(MPI.IN_PLACE, buf, _OPS[op], root))]
        return [MPIRequest(self.comm.Ireduce(buf, None, _OPS[op], root))]

    def all_gather(self, send, recv):
        return [MPIRequest(self.comm.Iallgather(send, recv))]

    def reduce_scatter(self, send, recv, op: str):
        return [MPIRequest(self.comm.Ireduce_scatter_block(send, recv, _OPS[op]))]

    def gather(self, send, recv, root: int):
        return [MPIRequest(self.comm.Igather(send, recv, root))]

    def scatter(self, send, recv, root: int):
        return [MPIRequest(self.comm.Iscatter(send, recv, root))]

    def all_to_all(self, send, send_counts, recv, recv_counts):
        """send_counts[j] elements of send go to rank j; recv_counts[j] arrive from it."""
        send_displs = _displacements(send_counts)
        recv_displs = _displacements(recv_counts)
        request = self.comm.Ialltoallv(
            [send, (send_counts, send_displs)], [recv, (recv_counts, recv_displs)]
        )
        return [MPIRequest(request)]

    def send(self, buf, dst: int, tag: int):
        return [MPIRequest(self.comm.Isend(buf, dst, tag))]

    def recv(self, buf, src: int | None, tag: int):
        source = MPI.ANY_SOURCE if src is None else src
        return [MPIRequest(self.comm.Irecv(buf, source, tag))]

    def barrier(self):
        return [MPIRequest(self.comm.Ibarrier())]


def _displacements(counts) -> list[int]:
    out, total = [], 0
    for c in counts:
        out.append(total)
        total += c
    return out
