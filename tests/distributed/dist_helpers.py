"""Helpers of the distributed tests: start worker scripts in N processes through the
environment's mpiexec, or through the launcher (python -m ember.distributed.run), with a
timeout."""

import os
import subprocess
import sys

import pytest

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers")


def launch(
    worker: str,
    nproc: int,
    *args,
    timeout: float = 60,
    check: bool = True,
    env=None,
    launcher: bool = False,
):
    """Run workers/<worker> in nproc MPI processes (started by mpiexec, or with launcher=True
    by ember's launcher, which watches them); returns the CompletedProcess."""
    pytest.importorskip("mpi4py")
    if launcher:
        start = [sys.executable, "-m", "ember.distributed.run", "--nproc", str(nproc)]
    else:
        start = [MPIEXEC, "-n", str(nproc), sys.executable]
    command = start + [os.path.join(WORKERS, worker)]
    environment = dict(os.environ, **(env or {}))
    environment.pop("EMBER_LOG", None)
    result = subprocess.run(
        command + [str(a) for a in args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    if check:
        assert result.returncode == 0, (
            f"{worker} in {nproc} processes exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
