"""Saves that are written whole or not at all: ember.save and the graph-file writer replace
their target by one rename, and a save that raises or is SIGKILLed mid-write leaves the old
file and no partial one (runtime/atomic_file.py)."""

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import ember
import numpy as np
import pytest
from ember.runtime import atomic_file, graph_file, safetensors_writer

PACKAGE_PARENT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
LINUX = sys.platform.startswith("linux")

# saves a 256 MiB file to argv[2] with the writer named by argv[1], after saying "ready"
KILLED_CHILD = """
import sys
import numpy as np
if sys.argv[3] == "named":
    from ember.runtime import atomic_file
    atomic_file.use_unnamed = False
weights = np.ones((64, 1024, 1024), dtype=np.float32)
if sys.argv[1] == "checkpoint":
    import ember
    obj = {"w": ember.tensor(weights)}
    write = lambda: ember.save(obj, sys.argv[2])
else:
    from ember.runtime.graph_file import write_container
    write = lambda: write_container(sys.argv[2], {"w": weights}, {"format": "test"})
print("ready", flush=True)
write()
print("done", flush=True)
"""


def open_files_in(pid, directory):
    """(fd path, target) of the files the process has open in directory."""
    found = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            where = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if where.startswith(str(directory) + os.sep):
            found.append((os.path.join(fd_dir, fd), where))
    return found


def kill_mid_write(tmp_path, writer, mode):
    """Starts a child saving 256 MiB to tmp_path/"model", SIGKILLs it once it has a file open
    there holding some data, and returns the path."""
    target = tmp_path / "model"
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, writer, str(target), mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PACKAGE_PARENT,
        env=env,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sizes = []
            for fd_path, _ in open_files_in(child.pid, tmp_path):
                try:
                    sizes.append(os.stat(fd_path).st_size)
                except OSError:
                    pass
            # (the safetensors package sized its temporary file in full before writing it)
            if any(size > 0 for size in sizes):
                break
            assert child.poll() is None, "the save finished before it could be killed"
        else:
            pytest.fail("the child never started writing")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return target


def previous_file(target, writer):
    """An earlier save at target, to check that a killed save leaves it as it was."""
    if writer == "checkpoint":
        ember.save({"w": ember.tensor(np.arange(5, dtype=np.float32))}, str(target))
    else:
        graph_file.write_container(str(target), {"w": np.arange(5, dtype=np.float32)}, {})
    return target.read_bytes()


@pytest.mark.skipif(not LINUX, reason="finds the child's open files through /proc")
@pytest.mark.parametrize("writer", ["checkpoint", "graph file"])
def test_a_save_killed_mid_write_leaves_the_old_file_and_nothing_else(tmp_path, writer):
    target = tmp_path / "model"
    before = previous_file(target, writer)
    kill_mid_write(tmp_path, writer, "unnamed")
    assert os.listdir(tmp_path) == ["model"]
    assert target.read_bytes() == before


@pytest.mark.skipif(not LINUX, reason="finds the child's open files through /proc")
@pytest.mark.parametrize("writer", ["checkpoint", "graph file"])
def test_without_unnamed_files_a_killed_saves_leftover_is_removed_by_the_next_save(
    tmp_path, writer, monkeypatch
):
    target = tmp_path / "model"
    before = previous_file(target, writer)
    kill_mid_write(tmp_path, writer, "named")
    [leftover] = [name for name in os.listdir(tmp_path) if name != "model"]
    assert leftover.startswith(".model.") and leftover.endswith(".ember-partial")
    assert target.read_bytes() == before
    monkeypatch.setattr(atomic_file, "use_unnamed", False)
    ember.save({"w": ember.ones(3)}, str(target))
    assert os.listdir(tmp_path) == ["model"]
    assert ember.load(str(target))["w"].tolist() == [1.0, 1.0, 1.0]


def test_leftovers_of_live_processes_other_hosts_and_other_targets_are_kept(tmp_path):
    target = str(tmp_path / "model")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        prefix = atomic_file.partial_prefix(target)
        names = {
            "dead": f"{prefix}{dead.pid}.0123456789ab.ember-partial",
            "live": f"{prefix}{sleeper.pid}.0123456789ab.ember-partial",
            "other host": f".model.some-other-host.{dead.pid}.0123456789ab.ember-partial",
            "other target": f"{atomic_file.partial_prefix(target + '2')}{dead.pid}"
            f".0123456789ab.ember-partial",
            "not ours": f"{prefix}{dead.pid}.notours",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        assert atomic_file.remove_leftovers(target) == [names["dead"]]
        assert sorted(os.listdir(tmp_path)) == sorted(n for k, n in names.items() if k != "dead")
    finally:
        sleeper.kill()
        sleeper.wait()


class FullDisk(Exception):
    pass


@pytest.mark.parametrize("unnamed", [True, False])
@pytest.mark.parametrize("writer", ["checkpoint", "graph file"])
def test_a_save_that_raises_mid_write_leaves_the_old_file_and_nothing_else(
    tmp_path, monkeypatch, writer, unnamed
):
    monkeypatch.setattr(atomic_file, "use_unnamed", unnamed and atomic_file.use_unnamed)
    target = tmp_path / "model"
    before = previous_file(target, writer)
    write = safetensors_writer.write

    def fails_half_way(f, prepared):
        f.write(prepared.header)
        f.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors_writer, "write", fails_half_way)
    arrays = {"a": np.ones(1000, np.float32), "b": np.zeros(10, np.int64)}
    with pytest.raises(OSError, match="No space left"):
        if writer == "checkpoint":
            ember.save({k: ember.tensor(v) for k, v in arrays.items()}, str(target))
        else:
            graph_file.write_container(str(target), arrays, {})
    assert os.listdir(tmp_path) == ["model"]
    assert target.read_bytes() == before
    monkeypatch.setattr(safetensors_writer, "write", write)


def test_interrupting_a_save_with_ctrl_c_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_file, "use_unnamed", False)

    def interrupted(f, prepared):
        f.write(prepared.header)
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors_writer, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ember.save({"w": ember.ones(3)}, str(tmp_path / "model"))
    assert os.listdir(tmp_path) == []


def test_a_symlinked_target_is_written_through_the_link(tmp_path):
    real = tmp_path / "real.ckpt"
    link = tmp_path / "link.ckpt"
    ember.save({"w": ember.zeros(2)}, str(real))
    link.symlink_to(real)
    ember.save({"w": ember.ones(2)}, str(link))
    assert link.is_symlink()
    assert ember.load(str(real))["w"].tolist() == [1.0, 1.0]
    assert sorted(os.listdir(tmp_path)) == ["link.ckpt", "real.ckpt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_target_that_is_not_a_regular_file_is_written_in_place(tmp_path):
    # as open(path, "wb") would: renaming a file over it would replace a FIFO, or /dev/null
    # for root, with a regular file
    obj = {"w": ember.arange(6, dtype=ember.float32)}
    ember.save(obj, str(tmp_path / "regular"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    ember.save(obj, str(fifo))
    reader.join(timeout=60)
    assert received == [(tmp_path / "regular").read_bytes()]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["fifo", "regular"]


def test_a_saved_file_gets_the_mode_open_would_give_it(tmp_path):
    if not hasattr(os, "umask"):
        pytest.skip("no umask")
    old = os.umask(0o022)
    try:
        ember.save({"w": ember.ones(2)}, str(tmp_path / "model"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "model").st_mode & 0o777 == 0o644


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        ember.save({"w": ember.ones(2)}, str(tmp_path / "no" / "such" / "model"))
