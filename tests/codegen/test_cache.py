"""The compiled-kernel cache: memory hits, disk hits across processes, corrupt entries rebuilt,
keys that change with everything the object code depends on, and directories it must refuse."""

import ctypes
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from ember.codegen.llvm import cache, target

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# y[i] = x[i] * SCALE + 1 for i in [s, e)
IR_TEMPLATE = """
define void @k(ptr noalias %x, ptr noalias %y, i64 %s, i64 %e) {
entry:
  %empty = icmp sge i64 %s, %e
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ %s, %entry ], [ %next, %loop ]
  %px = getelementptr inbounds float, ptr %x, i64 %i
  %v = load float, ptr %px
  %m = fmul float %v, SCALE
  %r = fadd float %m, 1.0
  %py = getelementptr inbounds float, ptr %y, i64 %i
  store float %r, ptr %py
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %e
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""
IR = IR_TEMPLATE.replace("SCALE", "2.0")
IR_TIMES_3 = IR_TEMPLATE.replace("SCALE", "3.0")
SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def run_kernel(library, scale=2.0, n=1000, seed=0):
    """Runs @k on random floats and checks y == x * scale + 1."""
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    y = np.zeros_like(x)
    library.function("k", SIGNATURE)(x.ctypes.data, y.ctypes.data, 0, n)
    np.testing.assert_allclose(y, x * np.float32(scale) + np.float32(1), rtol=1e-6)


def assert_valid_entry(path, key):
    """Reads the disk format independently of the cache's own decoder."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"EMBERKO1"
    assert data[8:72] == key.encode("ascii")
    length = int.from_bytes(data[72:80], "little")
    payload = data[112:]
    assert len(payload) == length > 0
    assert hashlib.sha256(payload).digest() == data[80:112]


def disk_entries(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(cache.SUFFIX))


CHILD = """
import json, sys, time, ctypes
import numpy as np
from ember.codegen.llvm import cache
start_at = float(sys.argv[1])
ir = sys.stdin.read()
time.sleep(max(0.0, start_at - time.time()))
kernels = cache.default_cache()
library = kernels.load(ir)
signature = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
x = np.arange(4096, dtype=np.float32) - 100
y = np.zeros_like(x)
library.function("k", signature)(x.ctypes.data, y.ctypes.data, 0, x.size)
print(json.dumps({
    "stats": kernels.stats.as_dict(),
    "correct": bool(np.array_equal(y, x * np.float32(2) + np.float32(1))),
    "key": cache.cache_key(ir),
    "directory": kernels.directory,
}))
"""


def start_child(directory, start_at=0.0, hash_seed="0"):
    env = dict(os.environ, EMBER_CACHE_DIR=str(directory), PYTHONHASHSEED=hash_seed)
    env.pop("EMBER_LOG", None)
    # run outside the repository (as test_layering does), so `ember` is the installed package
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(start_at)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(PACKAGE_DIR),
        env=env,
    )
    process.stdin.write(IR)
    process.stdin.close()
    return process


def child_result(process):
    stdout = process.stdout.read()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


# -- memory and disk hits --------------------------------------------------------------------


def test_a_miss_compiles_once_and_the_same_ir_is_then_a_memory_hit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMBER_LOG", "kernels")
    kernels = cache.KernelCache(str(tmp_path))
    first = kernels.load(IR)
    second = kernels.load(IR)
    assert second is first
    assert kernels.stats.as_dict() == {
        "hits_memory": 1,
        "hits_disk": 0,
        "compiles": 1,
        "rebuilt_corrupt": 0,
    }
    run_kernel(first)
    key = cache.cache_key(IR)
    assert disk_entries(tmp_path) == [key + cache.SUFFIX]
    assert_valid_entry(kernels.entry_path(key), key)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines  # the compile; the memory hit stays quiet
    assert "compiled" in lines[0] and key[:12] in lines[0] and " ms" in lines[0]


def test_a_second_process_loads_the_entry_from_disk_without_compiling(tmp_path):
    kernels = cache.KernelCache(str(tmp_path))
    kernels.load(IR)
    result = child_result(start_child(tmp_path, hash_seed="12345"))
    assert result["stats"]["compiles"] == 0
    assert result["stats"]["hits_disk"] == 1
    assert result["correct"]
    assert result["directory"] == str(tmp_path)
    # keys do not depend on the interpreter's string hashing
    assert result["key"] == cache.cache_key(IR)


def test_a_fresh_cache_on_the_same_directory_hits_disk_and_logs_it(tmp_path, monkeypatch, capsys):
    cache.KernelCache(str(tmp_path)).load(IR)
    monkeypatch.setenv("EMBER_LOG", "kernels")
    capsys.readouterr()
    kernels = cache.KernelCache(str(tmp_path))
    run_kernel(kernels.load(IR))
    assert kernels.stats.hits_disk == 1 and kernels.stats.compiles == 0
    assert "from disk" in capsys.readouterr().err


def test_different_ir_gets_its_own_entry_and_its_own_code(tmp_path):
    kernels = cache.KernelCache(str(tmp_path))
    run_kernel(kernels.load(IR), scale=2.0)
    run_kernel(kernels.load(IR_TIMES_3), scale=3.0)
    assert kernels.stats.compiles == 2
    assert len(disk_entries(tmp_path)) == 2


# -- corrupt entries ---------------------------------------------------------------------------


def flip_payload_bytes(data, key):
    middle = 112 + (len(data) - 112) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 8]) + data[middle + 8 :]


def change_a_constant(data, key):
    # same length, well-formed object code, different numbers: only the checksum can tell
    one, five = np.float32(1).tobytes(), np.float32(5).tobytes()
    assert one in data[112:]
    return data[:112] + data[112:].replace(one, five)


def truncate(data, key):
    return data[: len(data) - 17]


def truncate_into_header(data, key):
    return data[:40]


def replace_the_key(data, key):
    other = cache.cache_key(IR_TIMES_3).encode("ascii")
    return data[:8] + other + data[72:]


def another_kernels_entry(data, key):
    # a complete, self-consistent entry for other IR: its checksum passes, its key must not
    return cache.encode_entry(cache.cache_key(IR_TIMES_3), target.emit_object(IR_TIMES_3))


def garbage(data, key):
    return os.urandom(len(data))


def empty(data, key):
    return b""


def bad_magic(data, key):
    return b"EMBERKO0" + data[8:]


def trailing_bytes(data, key):
    return data + b"\0"


@pytest.mark.parametrize(
    "corrupt",
    [
        flip_payload_bytes,
        change_a_constant,
        truncate,
        truncate_into_header,
        replace_the_key,
        another_kernels_entry,
        garbage,
        empty,
        bad_magic,
        trailing_bytes,
    ],
)
def test_a_corrupt_entry_is_rebuilt_never_trusted(tmp_path, monkeypatch, capsys, corrupt):
    key = cache.cache_key(IR)
    path = cache.KernelCache(str(tmp_path)).entry_path(key)
    cache.KernelCache(str(tmp_path)).load(IR)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(corrupt(data, key))
    monkeypatch.setenv("EMBER_LOG", "kernels")
    capsys.readouterr()

    kernels = cache.KernelCache(str(tmp_path))
    run_kernel(kernels.load(IR))
    assert kernels.stats.compiles == 1
    assert kernels.stats.rebuilt_corrupt == 1
    assert kernels.stats.hits_disk == 0
    assert "rebuilt" in capsys.readouterr().err
    assert_valid_entry(path, key)
    again = cache.KernelCache(str(tmp_path))
    run_kernel(again.load(IR))
    assert again.stats.hits_disk == 1 and again.stats.compiles == 0


def test_an_unreadable_entry_is_rebuilt_in_memory_and_writing_stops(tmp_path):
    key = cache.cache_key(IR)
    kernels = cache.KernelCache(str(tmp_path))
    os.mkdir(kernels.entry_path(key))  # open() fails, and so does replacing it
    run_kernel(kernels.load(IR))
    assert kernels.stats.rebuilt_corrupt == 1 and kernels.stats.compiles == 1
    run_kernel(kernels.load(IR_TIMES_3), scale=3.0)  # writing is off: no second failure
    assert disk_entries(tmp_path) == [key + cache.SUFFIX]
    assert os.path.isdir(kernels.entry_path(key))
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs chown (root)")
def test_an_entry_owned_by_another_user_is_not_trusted(tmp_path):
    key = cache.cache_key(IR)
    kernels = cache.KernelCache(str(tmp_path))
    kernels.load(IR)
    os.chown(kernels.entry_path(key), 4242, 4242)
    again = cache.KernelCache(str(tmp_path))
    run_kernel(again.load(IR))
    assert again.stats.rebuilt_corrupt == 1 and again.stats.hits_disk == 0
    assert os.stat(again.entry_path(key)).st_uid == os.getuid()


# -- keys ------------------------------------------------------------------------------------


def test_the_key_changes_with_ir_codegen_version_and_target(monkeypatch):
    key = cache.cache_key(IR)
    assert len(key) == 64 and int(key, 16) >= 0
    assert cache.cache_key(IR) == key
    assert cache.cache_key(IR_TIMES_3) != key
    assert cache.cache_key(IR + " ") != key

    monkeypatch.setattr(cache, "CODEGEN_VERSION", cache.CODEGEN_VERSION + ".next")
    assert cache.cache_key(IR) != key
    monkeypatch.undo()
    assert cache.cache_key(IR) == key

    triple, cpu, features, llvmlite_version = target.target_key()
    for changed in [
        ("i686-unknown-linux-gnu", cpu, features, llvmlite_version),
        (triple, "some-other-cpu", features, llvmlite_version),
        (triple, cpu, features + ",-avx2", llvmlite_version),
        (triple, cpu, features, llvmlite_version + ".post1"),
    ]:
        monkeypatch.setattr(target, "target_key", lambda changed=changed: changed)
        assert cache.cache_key(IR) != key, changed
    monkeypatch.undo()


def test_an_entry_built_for_another_codegen_version_is_not_loaded(tmp_path, monkeypatch):
    cache.KernelCache(str(tmp_path)).load(IR)
    monkeypatch.setattr(cache, "CODEGEN_VERSION", cache.CODEGEN_VERSION + ".next")
    kernels = cache.KernelCache(str(tmp_path))
    run_kernel(kernels.load(IR))
    assert kernels.stats.compiles == 1 and kernels.stats.hits_disk == 0
    assert len(disk_entries(tmp_path)) == 2


# -- concurrency -------------------------------------------------------------------------------


def test_two_processes_compiling_the_same_ir_at_once_both_succeed(tmp_path):
    shared = tmp_path / "shared"  # empty, not even created yet
    start_at = time.time() + 1.5  # both import first, then compile together
    processes = [start_child(shared, start_at) for _ in range(3)]
    results = [child_result(process) for process in processes]
    assert all(result["correct"] for result in results)
    assert all(result["stats"]["rebuilt_corrupt"] == 0 for result in results)
    assert sum(r["stats"]["compiles"] + r["stats"]["hits_disk"] for r in results) == 3
    key = cache.cache_key(IR)
    assert os.listdir(shared) == [key + cache.SUFFIX]  # no temporary files left behind
    assert_valid_entry(os.path.join(shared, key + cache.SUFFIX), key)


def test_an_entry_appears_complete_by_renaming_a_temporary_file(tmp_path, monkeypatch):
    key = cache.cache_key(IR)
    kernels = cache.KernelCache(str(tmp_path))
    renames = []
    replace = os.replace

    def spy(source, destination):
        # what a reader could see at the final name is the old entry, then the whole new one
        assert not os.path.exists(destination)
        assert_valid_entry(source, key)
        renames.append((source, destination))
        replace(source, destination)

    monkeypatch.setattr(cache.os, "replace", spy)
    kernels.load(IR)
    [(source, destination)] = renames
    assert destination == kernels.entry_path(key)
    assert os.path.dirname(source) == str(tmp_path) and source != destination


def test_two_threads_loading_the_same_ir_at_once_share_one_library(tmp_path):
    kernels = cache.KernelCache(str(tmp_path))
    barrier = threading.Barrier(4)
    libraries, errors = [], []

    def worker(seed):
        try:
            barrier.wait()
            library = kernels.load(IR)
            run_kernel(library, seed=seed)
            libraries.append(library)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(libraries) == 4 and all(library is libraries[0] for library in libraries)
    assert kernels.stats.compiles == 1 and kernels.stats.hits_memory == 3


# -- directories -------------------------------------------------------------------------------


def test_an_uncreatable_directory_degrades_to_memory_only(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    monkeypatch.setenv("EMBER_LOG", "kernels")
    kernels = cache.KernelCache(str(blocker / "kernels"))
    run_kernel(kernels.load(IR))
    run_kernel(kernels.load(IR_TIMES_3), scale=3.0)
    assert kernels.load(IR) is kernels.load(IR)
    assert kernels.stats.compiles == 2
    unusable = [line for line in capsys.readouterr().err.splitlines() if "memory only" in line]
    assert len(unusable) == 1, unusable
    assert blocker.read_bytes() == b"not a directory"


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() == 0, reason="root ignores modes")
def test_a_read_only_directory_degrades_to_memory_only(tmp_path):
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        kernels = cache.KernelCache(str(directory))
        run_kernel(kernels.load(IR))
        assert kernels.stats.compiles == 1
        assert os.listdir(directory) == []
    finally:
        directory.chmod(0o700)


def test_a_world_writable_directory_without_sticky_bit_is_refused(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o777)
    cache.KernelCache(str(tmp_path / "private")).load(IR)
    key = cache.cache_key(IR)
    # an entry planted there is not loaded either
    os.replace(tmp_path / "private" / (key + cache.SUFFIX), directory / (key + cache.SUFFIX))
    monkeypatch.setenv("EMBER_LOG", "kernels")
    kernels = cache.KernelCache(str(directory))
    run_kernel(kernels.load(IR))
    run_kernel(kernels.load(IR_TIMES_3), scale=3.0)
    assert kernels.stats.compiles == 2 and kernels.stats.hits_disk == 0
    assert disk_entries(directory) == [key + cache.SUFFIX]  # nothing written there
    assert "world-writable" in capsys.readouterr().err


def test_a_world_writable_directory_with_sticky_bit_is_used(tmp_path):
    directory = tmp_path / "sticky"
    directory.mkdir()
    directory.chmod(0o1777)
    kernels = cache.KernelCache(str(directory))
    run_kernel(kernels.load(IR))
    assert disk_entries(directory) == [cache.cache_key(IR) + cache.SUFFIX]


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no owners without getuid")
def test_a_directory_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "theirs"
    cache.KernelCache(str(directory)).load(IR)
    monkeypatch.setattr(cache.os, "getuid", lambda: os.stat(directory).st_uid + 1)
    kernels = cache.KernelCache(str(directory))
    run_kernel(kernels.load(IR))
    run_kernel(kernels.load(IR_TIMES_3), scale=3.0)
    # refused as a whole: its entry is neither read (and rebuilt) nor joined by a new one
    assert kernels.stats.compiles == 2 and kernels.stats.hits_disk == 0
    assert kernels.stats.rebuilt_corrupt == 0
    assert disk_entries(directory) == [cache.cache_key(IR) + cache.SUFFIX]


def test_a_new_directory_is_private(tmp_path):
    directory = tmp_path / "new"
    cache.KernelCache(str(directory)).load(IR)
    assert stat.S_IMODE(os.stat(directory).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(directory / (cache.cache_key(IR) + cache.SUFFIX)).st_mode) == 0o600


# -- choosing the directory ------------------------------------------------------------------


def test_default_directory_follows_ember_cache_dir_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.default_directory() == str(tmp_path / "mine")
    monkeypatch.delenv("EMBER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_directory() == str(tmp_path / "xdg" / "ember" / "kernels")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_directory() == str(tmp_path / "home" / ".cache" / "ember" / "kernels")


@pytest.mark.parametrize("switch", ["off", "0", "OFF", "none"])
def test_ember_cache_dir_off_keeps_kernels_in_memory(tmp_path, monkeypatch, switch):
    monkeypatch.setenv("EMBER_CACHE_DIR", switch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cache.default_directory() == ""
    kernels = cache.KernelCache()
    run_kernel(kernels.load(IR))
    assert kernels.entry_path(cache.cache_key(IR)) is None
    assert kernels.stats.compiles == 1
    assert os.listdir(tmp_path) == []
    memory_only = cache.KernelCache("")
    memory_only.load(IR)
    assert memory_only.stats.compiles == 1 and os.listdir(tmp_path) == []


def test_default_cache_is_shared_until_ember_cache_dir_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "a"))
    first = cache.default_cache()
    assert cache.default_cache() is first and first.directory == str(tmp_path / "a")
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "b"))
    second = cache.default_cache()
    assert second is not first and second.directory == str(tmp_path / "b")
    second.load(IR)
    assert disk_entries(tmp_path / "b") == [cache.cache_key(IR) + cache.SUFFIX]
