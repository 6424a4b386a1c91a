"""The launcher's watch over a job: it runs mpiexec, hears from every rank, and ends the job
when a rank ends early or abnormally, naming the rank and how it ended.

mpiexec starts each rank under a supervisor (_supervisor.py), which runs the rank's script
through the runner (_rank.py). Both talk to the launcher over TCP, one JSON object a line,
each connection opened with the job's token:

- the rank says when it joins the default group, when it leaves it (destroy_process_group,
  or the end of its script), and why it ends early (an uncaught exception, an exit code);
  the launcher acknowledges each report ({"ack": id}) before the rank goes on;
- the supervisor says how the rank's process ended (its exit code, or the signal that killed
  it) and waits for the verdict: "ok" or "stop".

A rank that ends with a non-zero code, on an exception or by a signal, fails the job; so does
one that ends with code 0 before the end of its script (os._exit(0): MPI is not finalized, so
no other rank can finish a collective with it, nor its own finalize) unless every other rank
ends too within EXIT_GRACE_S. On a failure the launcher waits GRACE_S for the output to
drain, stops every rank (SIGTERM through mpiexec, SIGKILL after KILL_AFTER_S), and once mpiexec
has ended prints one line: which rank failed and how, which ranks it stopped, and its exit
status (the rank's code, 128 + the signal's number, or 1). A rank that leaves the group
cleanly while others still run is fine: the launcher tells the others, and a collective that
still waits for it fails after a few seconds, naming it (work.py), rather than at the group's
timeout.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from ._supervisor import ADDRESS_VARIABLE, TOKEN_VARIABLE, die_with_parent

GRACE_S = 0.5  # from the first failure until the other ranks are stopped
EXIT_GRACE_S = 2.0  # how long the others have to end too, after a rank's early exit 0
KILL_AFTER_S = 5.0  # from SIGTERM until the ranks still running are killed
_POLL_S = 0.05
_PREFIX = "ember.distributed.run:"


@dataclass
class _Rank:
    """What the launcher knows about one rank."""

    pid: int | None = None
    host: str = ""
    in_group: bool = False
    departed: bool = False  # the other ranks have been told that it left
    ended: str | None = None  # how its process ended, once it has
    stopped: bool = False  # it ended after the job had failed
    script_ended: bool = False  # the runner saw its script end (MPI's finalize comes next)


@dataclass
class _Failure:
    rank: int
    text: str
    status: int
    at: float = field(default_factory=time.monotonic)


class _Connection:
    """One rank's or supervisor's connection; lines are handled once the token checked out."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.role: str | None = None
        self.rank: int | None = None

    def send(self, message: dict) -> None:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass


class Job:
    """One run of `mpiexec ... supervisor runner script` under the launcher's watch."""

    def __init__(self, command: list[str], nproc: int, env: dict[str, str], remote: bool):
        self.command = command
        self.nproc = nproc
        self.env = dict(env)
        self.ranks = {r: _Rank() for r in range(nproc)}
        self.failure: _Failure | None = None
        self.token = secrets.token_hex(16)
        self.selector = selectors.DefaultSelector()
        self.server = socket.create_server(("" if remote else "127.0.0.1", 0))
        self.server.setblocking(False)
        self.selector.register(self.server, selectors.EVENT_READ)
        host = socket.getfqdn() if remote else "127.0.0.1"
        self.env[ADDRESS_VARIABLE] = f"{host}:{self.server.getsockname()[1]}"
        self.env[TOKEN_VARIABLE] = self.token
        self.links: dict[int, _Connection] = {}  # rank -> its runner's connection
        self.pending: dict[int, float] = {}  # rank -> when its exit 0 becomes a failure
        self.verdicts: dict[int, _Connection] = {}  # rank -> its supervisor, awaiting one
        self.process: subprocess.Popen | None = None
        self.terminated_at: float | None = None
        self.killed = False
        self.signalled: tuple[int, float] | None = None  # a signal to the launcher, and when

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Run the job to its end; the launcher's exit status."""
        previous = {
            sig: signal.signal(sig, self._forward) for sig in (signal.SIGTERM, signal.SIGHUP)
        }
        # a Ctrl-C in the terminal reaches mpiexec itself (same process group), which passes
        # it on to the ranks; the launcher only waits for them to end
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupted)
        try:
            self.process = subprocess.Popen(
                self.command, env=self.env, preexec_fn=lambda: die_with_parent(signal.SIGTERM)
            )
            while self.process.poll() is None:
                self._serve(_POLL_S)
                self._settle()
                self._stop_if_failed()
            self._serve(0.0)  # reports still in flight
            return self._finish(self.process.returncode)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            self.server.close()

    def _interrupted(self, sig, frame) -> None:
        if self.signalled is None:
            self.signalled = (sig, time.monotonic())

    def _forward(self, sig, frame) -> None:
        self._interrupted(sig, frame)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def _serve(self, timeout: float) -> None:
        while True:
            events = self.selector.select(timeout)
            if not events:
                return
            for key, _ in events:
                if key.fileobj is self.server:
                    self._accept()
                else:
                    self._read(key.data)
            timeout = 0.0

    def _accept(self) -> None:
        try:
            sock, _ = self.server.accept()
        except OSError:
            return
        sock.setblocking(True)
        sock.settimeout(1.0)
        conn = _Connection(sock)
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.buffer += data
        while b"\n" in conn.buffer:
            line, conn.buffer = conn.buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
                self._handle(conn, message)
            except (ValueError, KeyError, TypeError):
                self._close(conn)  # not one of ours
                return

    def _close(self, conn: _Connection) -> None:
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if conn.role == "rank" and self.links.get(conn.rank) is conn:
            del self.links[conn.rank]

    # -- what the ranks and supervisors say ----------------------------------------------------

    def _handle(self, conn: _Connection, message: dict) -> None:
        if conn.role is None:
            if message["token"] != self.token or int(message["rank"]) not in self.ranks:
                raise ValueError("not a rank of this job")
            conn.role, conn.rank = message["role"], int(message["rank"])
            state = self.ranks[conn.rank]
            if message.get("host"):
                state.host = str(message["host"])
            if conn.role == "rank":
                state.pid = int(message["pid"])
                self.links[conn.rank] = conn
                return
            if conn.role == "supervisor":
                verdict = self._process_ended(conn.rank, message)
                if verdict is None:
                    self.verdicts[conn.rank] = conn
                else:
                    conn.send({"verdict": verdict})
                return
            raise ValueError(f"unknown role {conn.role!r}")
        if conn.role == "rank":
            self._rank_event(conn.rank, message["event"], message)
            conn.send({"ack": message["id"]})

    def _rank_event(self, rank: int, event: str, message: dict) -> None:
        state = self.ranks[rank]
        if event == "joined":
            state.in_group, state.departed = True, False
            self._tell_others(rank, {"event": "peer_joined", "rank": rank})
        elif event == "left":
            self._leave(rank, str(message["how"]))
        elif event == "failed":
            self._fail(rank, f"failed with {message['error']}", 1)
            self._leave(rank, f"it failed with {message['error']}")
        elif event == "exiting":
            code = int(message["code"])
            state.script_ended = True
            if code != 0:
                self._fail(rank, f"exited with code {code}", code)
            self._leave(rank, f"its script ended with exit code {code}")

    def _process_ended(self, rank: int, message: dict) -> str | None:
        """A supervisor's report of its rank's end; the verdict it waits for, or None while
        the verdict waits on the other ranks (see _settle)."""
        state = self.ranks[rank]
        state.pid = int(message.get("pid") or state.pid or 0) or None
        state.stopped = self.failure is not None
        if "signal" in message:
            number = int(message["signal"])
            state.ended = f"was killed by signal {_signal_name(number)}"
            status = 128 + number
        else:
            status = int(message["code"])
            state.ended = f"exited with code {status}"
        if status != 0:
            self._fail(rank, state.ended, status)
        elif not state.script_ended and self.failure is None:
            # os._exit(0), or the like: MPI was not finalized, so a rank still running can
            # neither finish a collective with it nor its own finalize; fine only if the
            # others end too, at about the same time
            where = "still in the process group" if state.in_group else "without MPI's finalize"
            state.ended += f" before the end of its script (os._exit?), {where},"
            self.pending[rank] = time.monotonic() + EXIT_GRACE_S
        self._leave(rank, f"its process {state.ended.rstrip(',')}")
        if rank in self.pending:
            return None
        return "stop" if self.failure is not None else "ok"

    def _settle(self) -> None:
        """Give the verdict on each rank that ended with code 0 before its script ended: fine
        once every other rank has ended too, a failure once EXIT_GRACE_S has passed first."""
        for rank, deadline in list(self.pending.items()):
            others_run = any(s.ended is None for r, s in self.ranks.items() if r != rank)
            if others_run and self.failure is None and time.monotonic() >= deadline:
                self._fail(rank, f"{self.ranks[rank].ended} while other ranks went on", 1)
            if others_run and self.failure is None:
                continue
            del self.pending[rank]
            conn = self.verdicts.pop(rank, None)
            if conn is not None:
                conn.send({"verdict": "stop" if self.failure is not None else "ok"})

    def _leave(self, rank: int, how: str) -> None:
        """Tell the other ranks, once, that `rank` has left the job, and how."""
        state = self.ranks[rank]
        state.in_group = False
        if not state.departed:
            state.departed = True
            self._tell_others(rank, {"event": "peer_left", "rank": rank, "how": how})

    def _tell_others(self, rank: int, message: dict) -> None:
        for other, conn in list(self.links.items()):
            if other != rank:
                conn.send(message)

    # -- failing the job -----------------------------------------------------------------------

    def _describe(self, rank: int) -> str:
        state = self.ranks[rank]
        where = [f"pid {state.pid}"] if state.pid else []
        if state.host:
            where.append(f"on {state.host}")
        return f"rank {rank} (of {self.nproc}" + (f", {' '.join(where)})" if where else ")")

    def _fail(self, rank: int, text: str, status: int) -> None:
        if self.failure is not None:
            return  # the first failure is the cause; what follows is the job being stopped
        self.failure = _Failure(rank, f"{self._describe(rank)} {text}", status)

    def _stop_if_failed(self) -> None:
        """Once the job has failed: SIGTERM to every rank (mpiexec passes it on) after
        GRACE_S; SIGKILL to the ranks of this host still running KILL_AFTER_S later; and
        to mpiexec itself, should it still be there a little after that."""
        if self.failure is None or self.process is None:
            return
        now = time.monotonic()
        if self.terminated_at is None:
            if now >= self.failure.at + GRACE_S:
                self.terminated_at = now
                self.process.send_signal(signal.SIGTERM)
            return
        if now >= self.terminated_at + KILL_AFTER_S and not self.killed:
            self.killed = True
            here = socket.gethostname()
            for state in self.ranks.values():
                if state.ended is None and state.pid and state.host in ("", here):
                    try:
                        os.kill(state.pid, signal.SIGKILL)
                    except OSError:
                        pass
        if now >= self.terminated_at + KILL_AFTER_S + 2.0:
            self.process.kill()

    def _finish(self, returncode: int) -> int:
        """Say how the job ended, once mpiexec has passed on the ranks' last output; the
        launcher's exit status."""
        failure = self.failure
        if self.signalled is not None and (failure is None or failure.at > self.signalled[1]):
            # the ranks ended because the launcher was told to stop them
            number = self.signalled[0]
            _say(f"stopped by {_signal_name(number)}; exit status {128 + number}")
            return 128 + number
        if failure is not None:
            stopped = [
                str(r)
                for r, s in self.ranks.items()
                if r != failure.rank and (s.ended is None or s.stopped)
            ]
            text = failure.text
            if stopped:
                text += f"; stopped rank{'s' if len(stopped) > 1 else ''} {', '.join(stopped)}"
            _say(f"{text}; exit status {failure.status}")
            return failure.status
        if returncode != 0:
            _say(f"mpiexec ended the job with exit status {returncode}")
            return returncode if returncode > 0 else 128 - returncode
        return 0


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"{number}"


def _say(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{_PREFIX} {text}\n")
    sys.stderr.flush()


def run_job(command: list[str], nproc: int, env: dict[str, str], remote: bool) -> int:
    """Run mpiexec's command under the launcher's watch; the job's exit status."""
    return Job(command, nproc, env, remote).run()
