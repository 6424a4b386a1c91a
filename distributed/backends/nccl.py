"""The NCCL backend: collectives on contiguous cupy arrays through cupy.cuda.nccl.

One NCCL communicator per CUDA device, made on first use: rank 0 of the group draws NCCL's
unique id and the group's MPI communicator broadcasts it (a small tuple of ints, not tensor
data). Calls are queued on the current CUDA stream; a CUDA event recorded after them is the
request that work.py waits on. gather, scatter and all_to_all are grouped sends and receives,
as PyTorch's NCCL backend does. Needs a GPU: it cannot run on a machine without one.
"""

from __future__ import annotations

import time

import cupy
import numpy as np
from cupy.cuda import nccl
from mpi4py import MPI

from .._errors import backend_error

_DTYPES = {
    "float16": nccl.NCCL_FLOAT16,
    "float32": nccl.NCCL_FLOAT32,
    "float64": nccl.NCCL_FLOAT64,
    "int8": nccl.NCCL_INT8,
    "uint8": nccl.NCCL_UINT8,
    "int32": nccl.NCCL_INT32,
    "int64": nccl.NCCL_INT64,
    "bool": nccl.NCCL_UINT8,
}

# backend-neutral reduction name -> NCCL operation; on booleans (sent as bytes of 0 and 1),
# logical or and and are max and min
_OPS = {
    "sum": nccl.NCCL_SUM,
    "prod": nccl.NCCL_PROD,
    "min": nccl.NCCL_MIN,
    "max": nccl.NCCL_MAX,
    "lor": nccl.NCCL_MAX,
    "land": nccl.NCCL_MIN,
}


class EventRequest:
    """A CUDA event recorded after the queued NCCL calls: done once they have run. It holds
    the arrays the calls read and write (NCCL sees only pointers), so they outlive them."""

    __slots__ = ("arrays", "event", "nbytes", "source")

    def __init__(self, stream, arrays):
        self.event = cupy.cuda.Event(block=False, disable_timing=True)
        self.event.record(stream)
        self.arrays = arrays
        self.source = None
        self.nbytes = None

    def test(self) -> bool:
        return self.event.done

    def received(self) -> tuple[int, int]:
        return self.source, self.nbytes


def _dtype(buf):
    name = "bool" if buf.dtype == cupy.bool_ else buf.dtype.name
    code = _DTYPES.get(name)
    if code is None:
        raise backend_error(f"NCCL has no {name} type (it moves {', '.join(sorted(_DTYPES))})")
    return code


def _no_tag(tag: int) -> None:
    if tag:
        raise backend_error(f"NCCL messages have no tags (got tag={tag}); leave tag at 0")


class NCCLBackend:
    """Collectives among the ranks of one MPI communicator, on cupy arrays, through NCCL."""

    name = "nccl"
    device_type = "cuda"
    errors = (nccl.NcclError, MPI.Exception)
    reductions = frozenset(_OPS)

    def __init__(self, comm, timeout: float):
        self.mpi = comm
        self.timeout = timeout
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._communicators: dict[int, nccl.NcclCommunicator] = {}

    @staticmethod
    def describe(exc) -> str:
        if isinstance(exc, MPI.Exception):
            return exc.Get_error_string()
        return str(exc)

    def close(self) -> None:
        for communicator in self._communicators.values():
            communicator.destroy()
        self._communicators.clear()

    def _communicator(self, buf):
        device = buf.device.id
        communicator = self._communicators.get(device)
        if communicator is None:
            with cupy.cuda.Device(device):
                communicator = nccl.NcclCommunicator(self.size, self._unique_id(), self.rank)
            self._communicators[device] = communicator
        return communicator

    def _unique_id(self) -> tuple:
        """Rank 0's NCCL id, broadcast over MPI (within the timeout: every rank that gets it
        goes on to join the communicator)."""
        uid = np.array(nccl.get_unique_id() if self.rank == 0 else [0] * 128, dtype=np.int64)
        request = self.mpi.Ibcast(uid, root=0)
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if time.monotonic() > deadline:
                raise backend_error(
                    f"rank {self.rank}: setting up NCCL, rank 0's id did not arrive within "
                    f"{self.timeout:g} s"
                )
            time.sleep(1e-3)
        return tuple(int(v) for v in uid)

    def _enqueue(self, arrays, calls):
        """Run calls(communicator, stream) on the arrays' device and its current stream."""
        with arrays[0].device:
            comm = self._communicator(arrays[0])
            stream = cupy.cuda.get_current_stream()
            calls(comm, stream.ptr)
            return [EventRequest(stream, arrays)]

    def all_reduce(self, buf, op: str):
        def calls(comm, stream):
            ptr = buf.data.ptr
            comm.allReduce(ptr, ptr, buf.size, _dtype(buf), _OPS[op], stream)

        return self._enqueue((buf,), calls)

    def broadcast(self, buf, root: int):
        def calls(comm, stream):
            comm.bcast(buf.data.ptr, buf.size, _dtype(buf), root, stream)

        return self._enqueue((buf,), calls)

    def reduce(self, buf, op: str, root: int):
        # NCCL writes only at the root; elsewhere a scratch output keeps the tensor as it was
        out = buf if self.rank == root else cupy.empty_like(buf)

        def calls(comm, stream):
            comm.reduce(buf.data.ptr, out.data.ptr, buf.size, _dtype(buf), _OPS[op], root, stream)

        return self._enqueue((buf, out), calls)

    def all_gather(self, send, recv):
        def calls(comm, stream):
            comm.allGather(send.data.ptr, recv.data.ptr, send.size, _dtype(send), stream)

        return self._enqueue((send, recv), calls)

    def reduce_scatter(self, send, recv, op: str):
        def calls(comm, stream):
            comm.reduceScatter(
                send.data.ptr, recv.data.ptr, recv.size, _dtype(send), _OPS[op], stream
            )

        return self._enqueue((send, recv), calls)

    def _exchange(self, sends, recvs, arrays):
        """Grouped point-to-point: sends and recvs are (peer, array) pairs."""

        def calls(comm, stream):
            nccl.groupStart()
            try:
                for peer, array in sends:
                    comm.send(array.data.ptr, array.size, _dtype(array), peer, stream)
                for peer, array in recvs:
                    comm.recv(array.data.ptr, array.size, _dtype(array), peer, stream)
            finally:
                nccl.groupEnd()

        return self._enqueue(arrays, calls)

    def gather(self, send, recv, root: int):
        if self.rank != root:
            return self._exchange([(root, send)], [], (send,))
        with send.device:
            chunks = recv.reshape(self.size, -1)
            chunks[root][...] = send.reshape(-1)
        peers = [(r, chunks[r]) for r in range(self.size) if r != root]
        return self._exchange([], peers, (send, recv))

    def scatter(self, send, recv, root: int):
        if self.rank != root:
            return self._exchange([], [(root, recv)], (recv,))
        with recv.device:
            chunks = send.reshape(self.size, -1)
            recv.reshape(-1)[...] = chunks[root]
        peers = [(r, chunks[r]) for r in range(self.size) if r != root]
        return self._exchange(peers, [], (recv, send))

    def all_to_all(self, send, send_counts, recv, recv_counts):
        sends, recvs = [], []
        s = r = 0
        flat_send, flat_recv = send.reshape(-1), recv.reshape(-1)
        for peer in range(self.size):
            if send_counts[peer]:
                sends.append((peer, flat_send[s : s + send_counts[peer]]))
            if recv_counts[peer]:
                recvs.append((peer, flat_recv[r : r + recv_counts[peer]]))
            s += send_counts[peer]
            r += recv_counts[peer]
        return self._exchange(sends, recvs, (send, recv))

    def send(self, buf, dst: int, tag: int):
        _no_tag(tag)
        return self._exchange([(dst, buf)], [], (buf,))

    def recv(self, buf, src: int | None, tag: int):
        _no_tag(tag)
        if src is None:
            raise backend_error("irecv: NCCL receives from a named rank only: pass src=")
        requests = self._exchange([], [(src, buf)], (buf,))
        requests[0].source, requests[0].nbytes = src, buf.nbytes
        return requests

    def barrier(self):
        from .mpi import MPIRequest

        return [MPIRequest(self.mpi.Ibarrier())]
