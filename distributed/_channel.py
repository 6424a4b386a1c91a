"""A rank's link to the launcher that watches the job (`python -m ember.distributed.run`).

The rank tells the launcher when it joins the process group, when it leaves it
(destroy_process_group, or the end of its script), and why it is about to end when it ends
early (an uncaught exception, a non-zero exit code), each acknowledged before the rank goes on,
so the launcher knows it before it sees the process end. The launcher tells every rank when
another one has left or ended: a collective still waiting for that rank then fails within a few
seconds, naming it, instead of waiting for the group's timeout (work.py).

Started by the per-rank runner (_rank.py) from the variables the launcher sets; in a process
that mpiexec started directly there is no launcher, and every call here does nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time

from ._supervisor import ADDRESS_VARIABLE, TOKEN_VARIABLE, launcher_address

ACK_WAIT_S = 5.0  # how long a report waits for the launcher's acknowledgement

# global rank -> (how it left the job, time.monotonic() when this rank heard of it)
departed: dict[int, tuple[str, float]] = {}

_link: _Link | None = None


class _Link:
    """The connection to the launcher, with a thread that reads what the launcher sends."""

    def __init__(self, host: str, port: int, token: str, rank: int):
        self.rank = rank
        self.sock = socket.create_connection((host, port), timeout=ACK_WAIT_S)
        self.sock.settimeout(None)
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.waiting: dict[int, threading.Event] = {}
        self.send(
            {
                "token": token,
                "role": "rank",
                "rank": rank,
                "pid": os.getpid(),
                "host": socket.gethostname(),
            }
        )
        threading.Thread(target=self._read, name="ember-launcher-link", daemon=True).start()

    def send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\n"
        with self.lock:
            self.sock.sendall(data)

    def request(self, event: str, **fields) -> None:
        """Send an event and wait until the launcher has taken it in."""
        ident = next(self.ids)
        done = threading.Event()
        self.waiting[ident] = done
        try:
            self.send({"id": ident, "event": event, **fields})
            done.wait(ACK_WAIT_S)
        except OSError:
            pass
        finally:
            self.waiting.pop(ident, None)

    def _read(self) -> None:
        try:
            for line in self.sock.makefile("rb"):
                message = json.loads(line)
                if "ack" in message:
                    done = self.waiting.get(message["ack"])
                    if done is not None:
                        done.set()
                elif message.get("event") == "peer_left":
                    departed[int(message["rank"])] = (str(message["how"]), time.monotonic())
                elif message.get("event") == "peer_joined":
                    departed.pop(int(message["rank"]), None)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # the launcher is gone: the rank goes on without it


def connect(rank: int | None) -> None:
    """Join the launcher named by the environment (once). The variables are removed, so the
    processes this rank starts do not pose as ranks."""
    global _link
    found = launcher_address()
    os.environ.pop(ADDRESS_VARIABLE, None)
    os.environ.pop(TOKEN_VARIABLE, None)
    if _link is not None or found is None or rank is None:
        return
    try:
        _link = _Link(*found, rank)
    except OSError:
        _link = None


def _request(event: str, **fields) -> None:
    if _link is not None:
        _link.request(event, **fields)


def joined() -> None:
    """This rank has joined the default process group."""
    _request("joined")


def left(how: str) -> None:
    """This rank has left the default process group; `how` says how, for the others."""
    _request("left", how=how)


def failed(error: str) -> None:
    """This rank is ending on an uncaught exception (`error`: its type and message)."""
    _request("failed", error=error)


def exiting(code: int) -> None:
    """This rank's script has ended with exit status `code` (the process ends next)."""
    _request("exiting", code=code)


def describe(exc: BaseException) -> str:
    """An exception as one line: its type, and its message when it has one."""
    text = " ".join(str(exc).split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def departed_among(ranks) -> tuple[int, str, float] | None:
    """(global rank, how it left, when this rank heard of it) of the first of `ranks` that
    has left the job, or None."""
    for rank in ranks:
        found = departed.get(rank)
        if found is not None:
            return rank, found[0], found[1]
    return None
