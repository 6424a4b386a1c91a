"""Work: the handle of a collective in flight (what async_op=True returns), and its wait.

Every collective is started non-blocking in the backend (MPI's Iallreduce and friends, NCCL on
a CUDA stream) and finished here: wait() polls until the backend's requests complete or the
group's timeout passes, so a rank whose peers never arrive raises instead of hanging. Under
the launcher, a peer that has left the job (ended, or left the group) makes the collective
fail PEER_GRACE_S after this rank heard of it, naming that peer, rather than at the timeout;
the grace lets a collective that the peer took part in before it left finish. What
must happen once the data has arrived (copying into a non-contiguous tensor, dividing for AVG)
runs when the Work is seen complete, by wait() or is_completed().
"""

from __future__ import annotations

import datetime
import time

import numpy as np

from ..errors import type_error
from . import _channel
from ._errors import DistError, backend_error, dist_error

PEER_GRACE_S = 3.0


class Check:
    """The other ranks' description of the same collective, gathered alongside it: a rank
    that called another collective, or passed another shape or dtype, is named in an error
    on every rank instead of producing garbage or a hang."""

    def __init__(self, request, mine: np.ndarray, every: np.ndarray, describe):
        self.request = request
        self.mine = mine
        self.every = every
        self.describe = describe

    def verify(self, what: str) -> None:
        if (self.every == self.mine).all():
            return
        lines = "; ".join(
            f"rank {r}: {self.describe(row)}" for r, row in enumerate(self.every.tolist())
        )
        raise dist_error(
            f"{what}: the ranks do not agree on the collective (every rank must call the same "
            f"collective, in the same order, with matching tensors): {lines}"
        )


class Work:
    """A started collective: wait(), is_completed(), is_success(), exception(), result()."""

    def __init__(self, pg, backend, what: str, requests, finish=None, outputs=(), check=None):
        self._pg = pg
        self._backend = backend
        self._what = what
        self._pending = list(requests)
        self._finish = finish
        self._outputs = list(outputs)
        self._check = check
        self._done = False
        self._exception: BaseException | None = None
        self.sender: int | None = None  # a receive's sender (global rank), once finished
        self.peers: list[int] | None = None  # global ranks it waits for (None: the group's)

    def _fail(self, exc: BaseException) -> None:
        self._exception = exc
        self._done = True
        self._pg.broken = f"{self._what} on rank {self._pg.rank()}: {exc}"
        raise exc

    def _poll(self) -> bool:
        """True once complete (finishing it then); raises what went wrong."""
        if self._done:
            if self._exception is not None:
                raise self._exception
            return True
        try:
            if self._check is not None and self._check.request.test():
                check, self._check = self._check, None
                check.verify(self._what)
            self._pending = [r for r in self._pending if not r.test()]
        except DistError as exc:
            self._fail(exc)
        except self._backend.errors as exc:
            self._fail(self._translate(exc))
        if self._pending or self._check is not None:
            return False
        try:
            if self._finish is not None:
                self._finish()
        except DistError as exc:
            self._fail(exc)
        self._done = True
        return True

    def _translate(self, exc) -> DistError:
        # a mismatch between ranks often shows as an error of the library: say which, when the
        # ranks' descriptions of the collective have arrived
        check = self._check
        deadline = time.monotonic() + 5.0
        while check is not None and time.monotonic() < deadline:
            try:
                if check.request.test():
                    check.verify(self._what)
                    break
            except DistError as mismatch:
                return mismatch
            except self._backend.errors:
                break
            time.sleep(1e-3)
        return backend_error(
            f"{self._what} failed on rank {self._pg.rank()} in {self._backend.name}: "
            f"{self._backend.describe(exc)}"
        )

    def is_completed(self) -> bool:
        """Whether the collective has finished (its output tensors then hold the result)."""
        return self._poll()

    def is_success(self) -> bool:
        try:
            return self._poll()
        except DistError:
            return False

    def exception(self) -> BaseException | None:
        return self._exception

    def wait(self, timeout=None) -> bool:
        """Block until the collective has finished; raise if it failed or if `timeout` (the
        group's timeout by default) passes first."""
        if timeout is None:
            seconds = self._pg.timeout
        elif isinstance(timeout, datetime.timedelta):
            seconds = timeout.total_seconds()
        elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            seconds = float(timeout)
        else:
            raise type_error(f"wait: timeout must be a timedelta or seconds, got {timeout!r}")
        started = time.monotonic()
        deadline = started + seconds
        spins = 0
        while not self._poll():
            if _channel.departed:
                self._check_peers(started)
            if time.monotonic() > deadline:
                self._fail(
                    backend_error(
                        f"{self._what} on rank {self._pg.rank()} (of {self._pg.size()}) did not "
                        f"finish within {seconds:g} s: another rank has not reached it, has "
                        "failed, or is waiting in a different collective"
                    )
                )
            spins += 1
            if spins > 64:  # spin briefly for fast collectives, then let the other ranks run
                time.sleep(min(1e-3, (spins - 64) * 1e-5))
        return True

    def _check_peers(self, started: float) -> None:
        """Fail once a rank this collective waits for has been gone for PEER_GRACE_S."""
        me = self._pg.ranks[self._pg.rank()]
        peers = self._pg.ranks if self.peers is None else self.peers
        gone = _channel.departed_among(r for r in peers if r != me)
        if gone is None:
            return
        rank, how, heard = gone
        if time.monotonic() < max(heard, started) + PEER_GRACE_S:
            return
        numbered_as_world = self._pg.ranks == list(range(self._pg.size()))
        who = f"rank {rank}" if numbered_as_world else f"global rank {rank}"
        self._fail(
            backend_error(
                f"{self._what} on rank {self._pg.rank()} (of {self._pg.size()}) cannot finish: "
                f"{who} has left the process group ({how}) while this rank waited for it"
            )
        )

    def source_rank(self) -> int:
        """The global rank a finished irecv received from."""
        if self.sender is None:
            raise dist_error(f"source_rank: {self._what} is not a finished receive")
        return self.sender

    def result(self) -> list:
        """The collective's output tensors (after wait())."""
        self.wait()
        return list(self._outputs)

    def __repr__(self) -> str:
        state = "failed" if self._exception else ("completed" if self._done else "in flight")
        return f"<ember.distributed.Work {self._what} {state}>"


def start_check(pg, codes: list[int], describe) -> Check | None:
    """Gather every rank's `codes` for the collective about to start (see Check)."""
    if not pg.check_collectives or pg.size() == 1:
        return None
    from .backends.mpi import MPIRequest

    mine = np.full(8, -1, dtype=np.int64)
    mine[: len(codes)] = codes
    every = np.empty((pg.size(), 8), dtype=np.int64)
    request = MPIRequest(pg._comm.Iallgather(mine, every))
    return Check(request, mine, every, describe)
