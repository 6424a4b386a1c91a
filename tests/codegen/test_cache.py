"""The compiled-kernel cache: memory hits, disk hits across processes, corrupt entries rebuilt,
keys that change with everything the object code depends on, and directories it must refuse."""

import ctypes
import hashlib
import hmac
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


def directory_secret(directory):
    with open(os.path.join(directory, "secret.key"), "rb") as f:
        return f.read()


def assert_valid_entry(path, key):
    """Reads the disk format independently of the cache's own decoder: the HMAC-SHA256, keyed
    by the directory's secret, of the header's first three fields and the payload."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"EMBERKO2"
    assert data[8:72] == key.encode("ascii")
    length = int.from_bytes(data[72:80], "little")
    payload = data[112:]
    assert len(payload) == length > 0
    secret = directory_secret(os.path.dirname(path))
    assert len(secret) == 32
    assert hmac.new(secret, data[:80] + payload, hashlib.sha256).digest() == data[80:112]


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


def another_kernels_entry(data, key, directory):
    # a complete, authentic entry for other IR: its HMAC passes, its key must not
    secret = directory_secret(directory)
    return cache.encode_entry(cache.cache_key(IR_TIMES_3), target.emit_object(IR_TIMES_3), secret)


def an_old_format_entry(data, key):
    # the first format: the same header with a plain sha256 where the HMAC now is
    payload = data[112:]
    return b"EMBERKO1" + data[8:80] + hashlib.sha256(payload).digest() + payload


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
        an_old_format_entry,
    ],
)
def test_a_corrupt_entry_is_rebuilt_never_trusted(tmp_path, monkeypatch, capsys, corrupt):
    key = cache.cache_key(IR)
    path = cache.KernelCache(str(tmp_path)).entry_path(key)
    cache.KernelCache(str(tmp_path)).load(IR)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        if corrupt is another_kernels_entry:
            f.write(corrupt(data, key, tmp_path))
        else:
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


def test_a_generated_task_is_made_only_when_its_key_misses(tmp_path):
    made = []

    def make_ir():
        made.append(1)
        return IR

    kernels = cache.KernelCache(str(tmp_path))
    run_kernel(kernels.load_generated("ember_test_scale2", make_ir))
    assert kernels.load_generated("ember_test_scale2", make_ir) is not None
    assert len(made) == 1 and kernels.stats.compiles == 1
    # another process's cache on the directory: from disk, the IR never made
    fresh = cache.KernelCache(str(tmp_path))
    run_kernel(fresh.load_generated("ember_test_scale2", make_ir))
    assert len(made) == 1 and fresh.stats.hits_disk == 1 and fresh.stats.compiles == 0
    key = cache.generated_key("ember_test_scale2")
    assert disk_entries(tmp_path) == [key + cache.SUFFIX]
    assert_valid_entry(fresh.entry_path(key), key)


def test_a_generated_key_changes_with_the_name_the_sources_and_the_target(monkeypatch):
    key = cache.generated_key("ember_test_scale2")
    assert len(key) == 64 and cache.generated_key("ember_test_scale2") == key
    assert cache.generated_key("ember_test_scale3") != key
    assert key != cache.cache_key(IR) and key != cache.cache_key("ember_test_scale2")
    # an edit to a generator (or the runtime calling one) changes every generated key
    assert cache._sources_digest() == cache._sources_digest.__wrapped__()
    monkeypatch.setattr(cache, "_sources_digest", lambda: "0" * 64)
    assert cache.generated_key("ember_test_scale2") != key
    monkeypatch.undo()
    monkeypatch.setattr(cache, "CODEGEN_VERSION", cache.CODEGEN_VERSION + ".next")
    assert cache.generated_key("ember_test_scale2") != key
    monkeypatch.undo()
    triple, cpu, features, llvmlite_version = target.target_key()
    monkeypatch.setattr(target, "target_key", lambda: (triple, cpu, features + ",-avx2",
                                                       llvmlite_version))
    assert cache.generated_key("ember_test_scale2") != key


def test_the_sources_digest_covers_the_generators_and_the_runtime(tmp_path, monkeypatch):
    # the digest of a copy of the three folders equals the package's; one byte changed in a
    # generator, or in the runtime, changes it
    import shutil

    root = tmp_path / "pkg"
    for top in ("codegen", "ir", "runtime"):
        shutil.copytree(os.path.join(PACKAGE_DIR, top), root / top,
                        ignore=shutil.ignore_patterns("__pycache__"))
    fake = root / "codegen" / "llvm" / "cache.py"
    digest = cache._sources_digest.__wrapped__
    monkeypatch.setattr(cache, "__file__", str(fake))
    assert digest() == cache._sources_digest()
    for edited in (root / "codegen" / "llvm" / "gemm.py", root / "runtime" / "windows.py"):
        original = edited.read_bytes()
        edited.write_bytes(original + b"\n")
        assert digest() != cache._sources_digest()
        edited.write_bytes(original)
    assert digest() == cache._sources_digest()


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
    # one secret, made by whichever came first; no temporary files left behind
    assert sorted(os.listdir(shared)) == [key + cache.SUFFIX, "secret.key"]
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
    with pytest.warns(UserWarning, match="world-writable"):
        run_kernel(kernels.load(IR))
        run_kernel(kernels.load(IR_TIMES_3), scale=3.0)
    assert kernels.stats.compiles == 2 and kernels.stats.hits_disk == 0
    assert disk_entries(directory) == [key + cache.SUFFIX]  # nothing written there
    assert "world-writable" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no owners without getuid")
def test_a_directory_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "theirs"
    cache.KernelCache(str(directory)).load(IR)
    monkeypatch.setattr(cache.os, "getuid", lambda: os.stat(directory).st_uid + 1)
    kernels = cache.KernelCache(str(directory))
    with pytest.warns(UserWarning, match="owned by uid"):
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
    assert stat.S_IMODE(os.stat(directory / "secret.key").st_mode) == 0o600
    assert os.path.getsize(directory / "secret.key") == 32


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


PROGRAMS_OUTLIVE_CACHE = """
import gc, os, sys
import numpy as np
import ember
import ember.nn.functional as F
from ember.codegen.llvm import cache

@ember.script
def f(x, w, b):
    return F.layer_norm(x * 2.0 + 1.0, (16,), w, b).exp().sum(-1)

x = ember.randn(8, 16, requires_grad=True)
w, b = ember.randn(16, requires_grad=True), ember.randn(16, requires_grad=True)
first = f(x, w, b)
first.sum().backward()
grad = x.grad.numpy().copy()
with ember.no_grad():
    inference = f(x, w, b).numpy().copy()
os.environ["EMBER_CACHE_DIR"] = sys.argv[1]
cache.default_cache()  # a fresh cache: the old one, and its hold on its libraries, goes
gc.collect()
for _ in range(2):
    x.grad = None
    out = f(x, w, b)
    out.sum().backward()
    assert np.allclose(out.detach().numpy(), first.detach().numpy(), rtol=1e-6)
    assert np.allclose(x.grad.numpy(), grad, rtol=1e-5)
    with ember.no_grad():
        assert np.allclose(f(x, w, b).numpy(), inference, rtol=1e-6)
print("ok")
"""


def test_compiled_programs_keep_their_code_when_the_cache_is_replaced(tmp_path):
    """A changed EMBER_CACHE_DIR replaces the process's kernel cache, which held every library
    it loaded; a program compiled before (its forward and backward kernels, its runs of
    kernels, the one native entry of a no_grad call) keeps its own library, so its code is
    still there. Before, its next call ran freed code: a segfault or an illegal instruction.
    In a child process, so such a crash is a failure here, not the end of the run."""
    env = dict(os.environ, EMBER_CACHE_DIR=str(tmp_path / "before"))
    env.pop("EMBER_LOG", None)
    result = subprocess.run([sys.executable, "-c", PROGRAMS_OUTLIVE_CACHE, str(tmp_path / "after")],
                            capture_output=True, text=True, cwd=os.path.dirname(PACKAGE_DIR),
                            env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# -- entries that must not reach LLVM, and files that are not entries ----------------------------

TAMPER_CHILD = """
import ctypes, json, sys
import numpy as np
from ember.codegen.llvm import cache
signature = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
ir = sys.stdin.read()
results = []
for directory in sys.argv[1:]:
    kernels = cache.KernelCache(directory)
    library = kernels.load(ir)
    x = np.arange(64, dtype=np.float32)
    y = np.zeros_like(x)
    library.function("k", signature)(x.ctypes.data, y.ctypes.data, 0, x.size)
    correct = bool(np.array_equal(y, 2 * x + 1))
    results.append({"stats": kernels.stats.as_dict(), "correct": correct})
print(json.dumps(results))
"""


def tampered_payloads(payload):
    rng = np.random.default_rng(20)
    yield rng.integers(0, 256, len(payload), dtype=np.uint8).tobytes()  # garbage
    yield b"\x7fELF" + rng.integers(0, 256, len(payload) - 4, dtype=np.uint8).tobytes()
    for _ in range(4):  # a few bytes changed past the ELF identification
        damaged = bytearray(payload)
        for where in rng.integers(64, len(payload), 20):
            damaged[where] = rng.integers(0, 256)
        yield bytes(damaged)


def test_object_code_changed_with_its_checksum_recomputed_is_rebuilt_not_run(tmp_path):
    # what anyone can do without the cache's secret: change the payload and put the sha256 of
    # the new payload where the old entry format kept its checksum. LLVM's loader crashes the
    # process on most of these (SIGSEGV, or "LLVM ERROR" and SIGABRT), so they must never reach it.
    key = cache.cache_key(IR)
    directories = []
    for i, payload in enumerate(tampered_payloads(target.emit_object(IR))):
        directory = tmp_path / f"case{i}"
        kernels = cache.KernelCache(str(directory))
        kernels.load(IR)
        path = kernels.entry_path(key)
        with open(path, "rb") as f:
            header = f.read(80)
        with open(path, "wb") as f:
            f.write(header + hashlib.sha256(payload).digest() + payload)
        directories.append(str(directory))
    env = dict(os.environ)
    env.pop("EMBER_LOG", None)
    process = subprocess.run(
        [sys.executable, "-c", TAMPER_CHILD, *directories],
        input=IR,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(PACKAGE_DIR),
        env=env,
    )
    assert process.returncode == 0, (process.returncode, process.stderr[-2000:])
    results = json.loads(process.stdout.strip().splitlines()[-1])
    assert len(results) == len(directories) == 6
    for result in results:
        assert result["correct"]
        assert result["stats"]["rebuilt_corrupt"] == 1 and result["stats"]["hits_disk"] == 0
    for directory in directories:
        assert_valid_entry(os.path.join(directory, key + cache.SUFFIX), key)


def test_a_valid_entry_copied_from_another_cache_directory_is_not_trusted(tmp_path):
    # well-formed object code with a correct checksum, but not written by this cache: an entry
    # is trusted only when it carries the directory's own secret
    key = cache.cache_key(IR)
    elsewhere = cache.KernelCache(str(tmp_path / "elsewhere"))
    elsewhere.load(IR)
    mine = cache.KernelCache(str(tmp_path / "mine"))
    mine.load(IR_TIMES_3)  # the directory exists, with its own secret
    os.replace(elsewhere.entry_path(key), mine.entry_path(key))
    kernels = cache.KernelCache(str(tmp_path / "mine"))
    run_kernel(kernels.load(IR))
    assert kernels.stats.rebuilt_corrupt == 1 and kernels.stats.hits_disk == 0
    assert_valid_entry(kernels.entry_path(key), key)


def test_a_symlink_in_place_of_an_entry_is_not_followed(tmp_path):
    key = cache.cache_key(IR)
    kernels = cache.KernelCache(str(tmp_path))
    kernels.load(IR)
    path = kernels.entry_path(key)
    os.replace(path, tmp_path / "moved-away")
    os.symlink(tmp_path / "moved-away", path)
    again = cache.KernelCache(str(tmp_path))
    run_kernel(again.load(IR))
    assert again.stats.rebuilt_corrupt == 1 and again.stats.hits_disk == 0
    assert not os.path.islink(path)
    assert_valid_entry(path, key)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_in_place_of_an_entry_does_not_hang_the_load(tmp_path):
    key = cache.cache_key(IR)
    kernels = cache.KernelCache(str(tmp_path))
    path = kernels.entry_path(key)
    os.mkfifo(path)
    done = []
    worker = threading.Thread(target=lambda: done.append(kernels.load(IR)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # opening the FIFO blocks until a writer comes: be that writer
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=60)
        pytest.fail("loading with a FIFO in place of the entry blocked")
    run_kernel(done[0])
    assert kernels.stats.rebuilt_corrupt == 1 and kernels.stats.compiles == 1
    assert_valid_entry(path, key)


def test_a_huge_sparse_entry_is_refused_without_reading_it(tmp_path):
    import tracemalloc

    key = cache.cache_key(IR)
    kernels = cache.KernelCache(str(tmp_path))
    kernels.load(IR)
    path = kernels.entry_path(key)
    with open(path, "r+b") as f:
        f.truncate(3 << 30)  # 3 GiB, all of it a hole past the real entry
    again = cache.KernelCache(str(tmp_path))
    tracemalloc.start()
    try:
        run_kernel(again.load(IR))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"loading allocated {peak} bytes"
    assert again.stats.rebuilt_corrupt == 1 and again.stats.hits_disk == 0
    assert_valid_entry(path, key)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o770, 0o775, 0o1777, 0o3777, 0o720], ids=oct)
def test_a_directory_other_users_can_write_is_refused_with_a_warning(tmp_path, mode):
    directory = tmp_path / "shared"
    cache.KernelCache(str(directory)).load(IR)
    directory.chmod(mode)
    kernels = cache.KernelCache(str(directory))
    with pytest.warns(UserWarning, match="writable") as warned:
        run_kernel(kernels.load(IR))
        run_kernel(kernels.load(IR_TIMES_3), scale=3.0)
    assert len(warned) == 1
    message = str(warned[0].message)
    assert str(directory) in message and "chmod" in message and "EMBER_CACHE_DIR" in message
    # neither read (not even to be rebuilt) nor written
    assert kernels.stats.compiles == 2 and kernels.stats.hits_disk == 0
    assert kernels.stats.rebuilt_corrupt == 0
    assert disk_entries(directory) == [cache.cache_key(IR) + cache.SUFFIX]


# -- the directory's secret ----------------------------------------------------------------------


def loose_mode(path):
    os.chmod(path, 0o644)


def short(path):
    with open(path, "r+b") as f:
        f.truncate(16)


def symlink_to_a_copy(path):
    copy = os.path.join(os.path.dirname(os.path.dirname(path)), "copied-secret")
    os.replace(path, copy)
    os.symlink(copy, path)


def another_owner(path):
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("needs chown (root)")
    os.chown(path, 4242, 4242)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
@pytest.mark.parametrize("damage", [loose_mode, short, symlink_to_a_copy, another_owner])
def test_an_untrusted_secret_is_replaced_and_what_it_signed_is_rebuilt(tmp_path, damage):
    directory = tmp_path / "kernels"
    key = cache.cache_key(IR)
    cache.KernelCache(str(directory)).load(IR)
    secret_path = directory / "secret.key"
    old_secret = secret_path.read_bytes()
    damage(str(secret_path))
    kernels = cache.KernelCache(str(directory))
    with pytest.warns(UserWarning, match="secret.key is not trusted"):
        run_kernel(kernels.load(IR))
    assert kernels.stats.rebuilt_corrupt == 1 and kernels.stats.hits_disk == 0
    assert not secret_path.is_symlink()
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert secret_path.read_bytes() != old_secret and len(secret_path.read_bytes()) == 32
    assert_valid_entry(kernels.entry_path(key), key)
    again = cache.KernelCache(str(directory))
    run_kernel(again.load(IR))
    assert again.stats.hits_disk == 1


def test_processes_sharing_a_directory_share_one_secret(tmp_path):
    shared = tmp_path / "shared"
    first = cache.KernelCache(str(shared))
    first.load(IR)
    second = cache.KernelCache(str(shared))
    run_kernel(second.load(IR))
    assert second.stats.hits_disk == 1
    assert sorted(os.listdir(shared)) == [cache.cache_key(IR) + cache.SUFFIX, "secret.key"]
