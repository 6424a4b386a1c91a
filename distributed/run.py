"""The launcher: `python -m ember.distributed.run --nproc N script.py args...`.

Starts N processes of this Python on the script (or, with -m, a module) through the MPI launcher
installed with mpi4py (the environment's own mpiexec, next to this Python, when there is one),
so `init_process_group()` in the script finds its rank and world size. `--hostfile FILE` passes
a host list to mpiexec to spread the processes over machines.

The launcher watches the job (_launcher.py), as torchrun's agent watches its workers: each rank
runs under a supervisor that reports how it ended. A rank that ends early or abnormally (a
non-zero exit code, an uncaught exception, a signal, or os._exit while it is still in the
process group) ends the whole job within a few seconds, with a message naming the rank and its
exit code or signal, and the launcher's exit status is non-zero. A rank that leaves the group
cleanly while the others go on is fine, unless they wait for it in a collective: that collective
then fails within seconds, naming the rank that left.

With more than one process, each one's math library uses one thread unless OMP_NUM_THREADS
says otherwise (as torchrun does): N processes of N threads each on N cores run far slower.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys

from ..errors import runtime_error
from ._launcher import run_job

SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_supervisor.py")
RUNNER = f"{__package__}._rank"


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


def is_hydra(mpiexec: str) -> bool:
    """Whether mpiexec is MPICH's (Hydra), the one that knows -disable-auto-cleanup."""
    try:
        found = subprocess.run(
            [mpiexec, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "HYDRA" in found.stdout


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


def command(argv: list[str]) -> tuple[list[str], argparse.Namespace]:
    """The mpiexec command line that runs argv's script in --nproc processes (each under its
    supervisor, through the runner), and the parsed options."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.nproc < 1:
        parser.error(f"--nproc must be at least 1, got {options.nproc}")
    target = ["-m", options.script] if options.module else [options.script]
    mpiexec = find_mpiexec()
    cmd = [mpiexec, "-n", str(options.nproc)]
    if is_hydra(mpiexec):
        # the launcher decides when the job has failed and stops it; left to itself, MPICH's
        # mpiexec kills the other ranks the moment one ends abnormally, racing the launcher
        # and printing its own report, which names a PID instead of the rank
        cmd.append("-disable-auto-cleanup")
    if options.hostfile is not None:
        if not os.path.isfile(options.hostfile):
            parser.error(f"--hostfile {options.hostfile}: no such file")
        cmd += ["-hostfile", options.hostfile]
    supervisor = [sys.executable, "-I", SUPERVISOR]
    rank = [sys.executable, "-m", RUNNER, *target, *options.args]
    return cmd + supervisor + rank, options


def environment(nproc: int) -> dict[str, str]:
    """The ranks' environment: this one, with one math-library thread per process."""
    env = dict(os.environ)
    if nproc > 1:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def main(argv: list[str] | None = None) -> int:
    cmd, options = command(sys.argv[1:] if argv is None else argv)
    if options.dry_run:
        print(shlex.join(cmd))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    remote = options.hostfile is not None
    return run_job(cmd, options.nproc, environment(options.nproc), remote)


if __name__ == "__main__":
    sys.exit(main())
