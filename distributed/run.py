"""The launcher: `python -m ember.distributed.run --nproc N script.py args...`.

Starts N processes of this Python on the script (or, with -m, a module) through the MPI launcher
installed with mpi4py (the environment's own mpiexec, next to this Python, when there is one),
so `init_process_group()` in the script finds its rank and world size. `--hostfile FILE` passes
a host list to mpiexec to spread the processes over machines. The launcher becomes mpiexec
(exec), so its exit status is the run's: non-zero when any rank failed.

With more than one process, each one's math library uses one thread unless OMP_NUM_THREADS
says otherwise (as torchrun does): N processes of N threads each on N cores run far slower.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from ..errors import runtime_error


def find_mpiexec() -> str:
    """The mpiexec of this Python's environment, else the first one on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(local, os.X_OK):
        return local
    found = shutil.which("mpiexec")
    if found is None:
        raise runtime_error(
            "mpiexec not found: install an MPI into this environment with "
            "pip install 'ember[distributed]' (mpi4py and mpich)"
        )
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ember.distributed.run",
        description="Run a training script in N processes that form one process group.",
    )
    parser.add_argument(
        "--nproc",
        "--nproc-per-node",
        "--nproc_per_node",
        dest="nproc",
        type=int,
        default=1,
        help="number of processes to start (default 1)",
    )
    parser.add_argument(
        "--hostfile", help="file of host names for mpiexec, to run on several machines"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the mpiexec command instead of running it"
    )
    parser.add_argument(
        "-m",
        "--module",
        action="store_true",
        help="the script is a module name, run as `python -m module`",
    )
    parser.add_argument("script", help="the script (or, with -m, the module) to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    return parser


def command(argv: list[str]) -> tuple[list[str], bool]:
    """The mpiexec command line that runs argv's script in --nproc processes, and whether
    --dry-run asked only to print it."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.nproc < 1:
        parser.error(f"--nproc must be at least 1, got {options.nproc}")
    target = ["-m", options.script] if options.module else [options.script]
    cmd = [find_mpiexec(), "-n", str(options.nproc)]
    if options.hostfile is not None:
        if not os.path.isfile(options.hostfile):
            parser.error(f"--hostfile {options.hostfile}: no such file")
        cmd += ["-hostfile", options.hostfile]
    return cmd + [sys.executable, *target, *options.args], options.dry_run


def environment(nproc: int) -> dict[str, str]:
    """The ranks' environment: this one, with one math-library thread per process."""
    env = dict(os.environ)
    if nproc > 1:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def main(argv: list[str] | None = None) -> None:
    cmd, dry_run = command(sys.argv[1:] if argv is None else argv)
    if dry_run:
        print(" ".join(cmd))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, environment(int(cmd[2])))


if __name__ == "__main__":
    main()
