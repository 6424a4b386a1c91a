"""The runner of one rank: `python -m ember.distributed._rank [-m] script args...`.

The launcher starts each rank's script through this module (as `python -m mpi4py script.py`
does) so that the rank can tell the launcher how its script ended, which the process itself
cannot do once it is past it: an exit code (`sys.exit(3)`) is reported before MPI's finalize,
which would otherwise wait for the other ranks, and an uncaught exception goes to
sys.excepthook (the process group's hook ends every rank) without this file's frames in the
traceback. The script runs as `python script.py` would run it: as `__main__`, with its own
sys.argv and its directory first on sys.path.
"""

from __future__ import annotations

import os
import runpy
import sys

from . import _channel
from ._supervisor import rank_from_environment

_OWN_FILES = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), "<frozen runpy>"}


def _user_traceback(tb):
    """The traceback without the frames of this runner and of runpy."""
    while tb is not None and tb.tb_next is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename not in _OWN_FILES and os.path.abspath(filename) not in _OWN_FILES:
            break
        tb = tb.tb_next
    return tb


def _exit_code(exc: SystemExit) -> int:
    """The status the interpreter would exit with for this SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    if isinstance(code, bool):
        return int(code)
    sys.stderr.write(f"{code}\n")  # sys.exit("message") prints the message, exits with 1
    return 1


def run(argv: list[str]) -> int:
    """Run the script (or, after -m, the module) with its arguments; its exit status."""
    if not argv or argv[0] == "-m" and len(argv) < 2:
        sys.stderr.write("usage: python -m ember.distributed._rank [-m] script args...\n")
        return 2
    if argv[0] != "-m" and not os.path.isfile(argv[0]):
        path = os.path.abspath(argv[0])
        sys.stderr.write(f"{sys.executable}: can't open file {path!r}: no such file\n")
        _channel.connect(rank_from_environment())
        _channel.exiting(2)
        return 2
    _channel.connect(rank_from_environment())
    status = 0
    try:
        if argv[0] == "-m":
            sys.argv[:] = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv[:] = argv
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        status = _exit_code(exc)
    except BaseException as exc:  # noqa: BLE001 (an uncaught exception: what Python prints)
        # the process group's hook, once a group is up, reports it and ends every rank
        tb = _user_traceback(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        _channel.failed(_channel.describe(exc))
        status = 130 if isinstance(exc, KeyboardInterrupt) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    _channel.exiting(status)
    return status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
