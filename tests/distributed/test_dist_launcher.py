"""`python -m ember.distributed.run --nproc N script.py args...` starts N ranks of one group,
and ends the job, naming the rank, when one of them ends early or abnormally."""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest
from dist_helpers import WORKERS

pytest.importorskip("mpi4py")
HELLO = os.path.join(WORKERS, "hello_worker.py")
EXITS = os.path.join(WORKERS, "exits_worker.py")


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
    command = shlex.split(printed.stdout)
    # the launcher, not MPICH's mpiexec, stops the job when a rank fails
    assert command[:6] == [
        os.path.join(os.path.dirname(sys.executable), "mpiexec"),
        "-n",
        "2",
        "-disable-auto-cleanup",
        "-hostfile",
        str(hostfile),
    ]
    # each rank runs under its supervisor, through the runner that reports how it ended
    assert command[6:8] == [sys.executable, "-I"]
    assert command[8].endswith(os.path.join("distributed", "_supervisor.py"))
    assert command[9:] == [sys.executable, "-m", "ember.distributed._rank", HELLO, str(tmp_path)]
    result = run("--nproc", 2, "--hostfile", hostfile, HELLO, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["size"] for r in ranks_in(tmp_path, 2)] == [2, 2]


def test_launcher_runs_a_module_with_dash_m():
    printed = run("--nproc", 2, "--dry-run", "-m", "package.train", "--epochs", "3")
    assert shlex.split(printed.stdout)[-4:] == ["-m", "package.train", "--epochs", "3"]


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


# -- a rank that ends early or abnormally ends the job, naming it ----------------------------


def run_exits(how, folder):
    """Run exits_worker.py in 2 ranks; (result, seconds from rank 1's end to the job's)."""
    result = run("--nproc", 2, EXITS, how, folder, timeout=50)
    ended = time.time()
    failed_at = folder / "failed_at"
    seconds = ended - float(failed_at.read_text()) if failed_at.exists() else None
    return result, seconds


def launcher_lines(result):
    return [
        line for line in result.stderr.splitlines() if line.startswith("ember.distributed.run:")
    ]


FAILURES = {
    "os_exit0": (
        1,
        "exited with code 0 before the end of its script (os._exit?), still in the process "
        "group, while other ranks went on",
    ),
    "os_exit7": (7, "exited with code 7"),
    "sys_exit3": (3, "exited with code 3"),
    "sigkill": (128 + 9, "was killed by signal SIGKILL"),
}


@pytest.mark.parametrize("how", FAILURES)
def test_a_rank_that_ends_early_ends_the_job_within_seconds_naming_it(tmp_path, how):
    result, seconds = run_exits(how, tmp_path)
    status, how_it_ended = FAILURES[how]
    assert result.returncode == status, result.stderr
    # one line, once mpiexec has ended: the rank, how it ended, the ranks stopped, the status
    [line] = launcher_lines(result)
    assert line.startswith("ember.distributed.run: rank 1 (of 2, pid "), line
    assert line.endswith(f" {how_it_ended}; stopped rank 0; exit status {status}"), line
    # rank 0 was stopped in the middle of its loop, well before the 60 s collective timeout
    assert "rank 0 finished" not in result.stdout
    assert seconds < 10, (seconds, result.stderr)
    # no report from MPICH's mpiexec, which names a PID instead of the rank
    assert "BAD TERMINATION" not in result.stdout + result.stderr


def test_a_rank_that_ignores_sigterm_is_killed_when_the_job_stops(tmp_path):
    result, seconds = run_exits("sigterm_ignored", tmp_path)
    assert result.returncode == 3
    [line] = launcher_lines(result)
    assert line.endswith("exited with code 3; stopped rank 0; exit status 3"), line
    assert seconds < 10, (seconds, result.stderr)  # rank 0 was busy for 30 s


def test_a_rank_that_raises_ends_the_job_naming_it_and_its_error(tmp_path):
    result, seconds = run_exits("raise", tmp_path)
    assert result.returncode == 1
    [line] = launcher_lines(result)
    assert line.startswith("ember.distributed.run: rank 1 (of 2, pid "), line
    assert line.endswith(
        "failed with ValueError: rank 1 cannot go on; stopped rank 0; exit status 1"
    )
    # the rank's traceback starts at the script: the runner's and runpy's frames are left out
    traceback = result.stderr[result.stderr.index("Traceback") :]
    assert "exits_worker.py" in traceback.splitlines()[1]
    assert "runpy" not in traceback and "_rank.py" not in traceback
    assert seconds < 10


def test_a_clean_exit_while_the_others_wait_for_the_rank_fails_them_within_seconds(tmp_path):
    result, seconds = run_exits("sys_exit0", tmp_path)
    assert result.returncode == 1
    [line] = launcher_lines(result)
    assert line.startswith("ember.distributed.run: rank 0 (of 2, pid "), line
    assert (
        "failed with DistBackendError: all_reduce on rank 0 (of 2) cannot finish: rank 1 has "
        "left the process group (its script ended with exit code 0) while this rank waited "
        "for it" in line
    )
    assert "rank 0 finished" not in result.stdout
    assert seconds < 10, (seconds, result.stderr)


def test_a_collective_after_a_rank_left_the_group_fails_within_seconds_naming_it(tmp_path):
    result, seconds = run_exits("leave_then_collective", tmp_path)
    assert result.returncode == 1
    [line] = launcher_lines(result)
    assert (
        "rank 1 has left the process group (it called destroy_process_group) while this rank "
        "waited for it" in line
    )
    assert seconds < 10, (seconds, result.stderr)


def test_a_rank_that_leaves_cleanly_while_the_others_go_on_is_a_clean_job(tmp_path):
    result, _ = run_exits("leave_early", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rank 0 finished its own work" in result.stdout
    assert launcher_lines(result) == []


def test_every_rank_ending_with_os_exit_0_together_is_a_clean_job(tmp_path):
    result, _ = run_exits("all_os_exit0", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rank 0 finished" in result.stdout and "rank 1 finished" in result.stdout
    assert launcher_lines(result) == []


def test_a_sigterm_to_the_launcher_stops_every_rank(tmp_path):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "ember.distributed.run", "--nproc", "2", EXITS, "run_long"]
        + [str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    pids = [tmp_path / "pid0", tmp_path / "pid1"]
    deadline = time.monotonic() + 40
    while not all(p.exists() and p.read_text() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    launcher.terminate()
    stdout, stderr = launcher.communicate(timeout=10)
    assert launcher.returncode == 128 + 15, stderr
    assert launcher_lines(subprocess.CompletedProcess([], 0, stdout, stderr)) == [
        "ember.distributed.run: stopped by SIGTERM; exit status 143"
    ]
    assert "finished" not in stdout
    for pid in pids:  # no rank outlives the launcher
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid.read_text()), 0)
