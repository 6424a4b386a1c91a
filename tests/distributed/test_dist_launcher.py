"""`python -m ember.distributed.run --nproc N script.py args...` starts N ranks of one group."""

import json
import os
import subprocess
import sys

import pytest
from dist_helpers import WORKERS

pytest.importorskip("mpi4py")
HELLO = os.path.join(WORKERS, "hello_worker.py")


def run(*args, timeout=60):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    return subprocess.run(
        [sys.executable, "-m", "ember.distributed.run", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def ranks_in(folder, n):
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(n)]


@pytest.mark.parametrize("nproc", [1, 3])
def test_launcher_starts_nproc_ranks_with_the_script_arguments(tmp_path, nproc):
    result = run("--nproc", nproc, HELLO, tmp_path, "--lr", "0.1", "-m", "x")
    assert result.returncode == 0, result.stderr
    total = nproc * (nproc + 1) / 2
    # several processes each get one math-library thread, as torchrun gives them
    threads = "1" if nproc > 1 else None
    assert ranks_in(tmp_path, nproc) == [
        {
            "rank": r,
            "size": nproc,
            "args": ["--lr", "0.1", "-m", "x"],
            "sum": total,
            "threads": threads,
        }
        for r in range(nproc)
    ]


def test_launcher_passes_a_hostfile_to_mpiexec(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("localhost:2\n")
    printed = run("--nproc", 2, "--hostfile", hostfile, "--dry-run", HELLO, tmp_path)
    command = printed.stdout.split()
    assert command[:5] == [
        os.path.join(os.path.dirname(sys.executable), "mpiexec"),
        "-n",
        "2",
        "-hostfile",
        str(hostfile),
    ]
    assert command[5:] == [sys.executable, HELLO, str(tmp_path)]
    result = run("--nproc", 2, "--hostfile", hostfile, HELLO, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["size"] for r in ranks_in(tmp_path, 2)] == [2, 2]


def test_launcher_runs_a_module_with_dash_m():
    printed = run("--nproc", 2, "--dry-run", "-m", "package.train", "--epochs", "3")
    assert printed.stdout.split()[3:] == [sys.executable, "-m", "package.train", "--epochs", "3"]


def test_launcher_reports_its_usage_errors(tmp_path):
    assert run("--nproc", 2).returncode == 2
    result = run("--nproc", 0, HELLO)
    assert result.returncode == 2 and "--nproc must be at least 1" in result.stderr
    result = run("--hostfile", tmp_path / "missing", HELLO)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_the_runs_exit_status_is_non_zero_when_a_rank_fails(tmp_path):
    result = run("--nproc", 2, os.path.join(WORKERS, "failing_worker.py"), "raise")
    assert result.returncode != 0
    assert "rank 1 (of 2) failed with ValueError" in result.stderr
