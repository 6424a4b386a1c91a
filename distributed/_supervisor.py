"""One rank's parent: runs the rank's process, and tells the launcher how it ended.

`python -m ember.distributed.run` has mpiexec start this file once per rank (as `python -I
_supervisor.py command...`); it starts the command (the rank itself, which inherits MPI's
connection to its process manager) and waits for it. When the rank ends, this process is the
only one that sees how (its exit code, or the signal that killed it), so it reports that to
the launcher, names the rank, and waits for the launcher's verdict ("ok", or "stop" when the
job has failed) before it exits as the rank did, so that the launcher has heard of the end
before mpiexec does. Without a launcher to talk to, it only runs the rank and exits as the
rank did.

The standard library only: it starts fast and imports nothing of the package around it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

# how the launcher is reached; the rank's process reads them too (ember.distributed._channel)
ADDRESS_VARIABLE = "EMBER_RUN_ADDR"
TOKEN_VARIABLE = "EMBER_RUN_TOKEN"
# where the MPI launchers put a process's rank: MPICH and Intel MPI, Open MPI, PMIx
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")

VERDICT_WAIT_S = 10.0  # how long to wait for the launcher's verdict
# what mpiexec passes on to the processes it started when it is signalled (or stops a job)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)
# MPICH's mpiexec, when it leaves the cleanup to the launcher (-disable-auto-cleanup), tells
# the other processes of a failed one with SIGUSR1; the launcher already knows, and the rank,
# whose default action on SIGUSR1 is to die, must not hear of it
NOTICE = signal.SIGUSR1
_PR_SET_PDEATHSIG = 1


def rank_from_environment() -> int | None:
    """This process's rank, as the MPI launcher that started it announces it."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def launcher_address() -> tuple[str, int, str] | None:
    """(host, port, token) of the launcher watching this job, when there is one."""
    address = os.environ.get(ADDRESS_VARIABLE, "")
    token = os.environ.get(TOKEN_VARIABLE, "")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not token:
        return None
    return host, int(port), token


def _start_rank() -> None:
    """In the rank's process, before it starts: a process group of its own (mpiexec's
    signals reach it through this process only), default SIGUSR1, and death with this
    process."""
    os.setpgid(0, 0)
    signal.signal(NOTICE, signal.SIG_DFL)
    die_with_parent()


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (no-op elsewhere), so a
    rank never outlives the process that watches it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def exit_status(returncode: int) -> dict:
    """subprocess's returncode as the launcher's message reads it."""
    if returncode < 0:
        return {"signal": -returncode}
    return {"code": returncode}


def _report(status: dict, rank: int | None, pid: int) -> None:
    """Send the rank's end to the launcher, and wait for its verdict ("ok", or "stop" when
    the job has failed): the launcher has then taken the end in before mpiexec sees it."""
    found = launcher_address()
    if found is None or rank is None:
        return
    host, port, token = found
    message = {"token": token, "role": "supervisor", "rank": rank, "pid": pid}
    message.update(status, host=socket.gethostname())
    try:
        with socket.create_connection((host, port), timeout=VERDICT_WAIT_S) as conn:
            conn.sendall(json.dumps(message).encode() + b"\n")
            conn.makefile("rb").readline()
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: python -I _supervisor.py command [args...]\n")
        return 2
    # if mpiexec's process manager dies, this process and (below) the rank go with it
    die_with_parent(signal.SIGTERM)

    def forward(sig, frame):
        if child is not None and child.returncode is None:
            try:
                child.send_signal(sig)
            except OSError:
                pass

    child = None
    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.signal(NOTICE, signal.SIG_IGN)  # ignored even while the interpreter shuts down
    # close_fds=False: the rank inherits the descriptors MPI's process manager handed this
    # process (PMI_FD and friends), so it joins the job as if mpiexec had started it
    child = subprocess.Popen(argv, close_fds=False, preexec_fn=_start_rank)
    returncode = child.wait()
    status = exit_status(returncode)
    _report(status, rank_from_environment(), child.pid)
    if "signal" in status:
        return 128 + status["signal"]
    return status["code"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
