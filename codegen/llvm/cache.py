"""The compiled-kernel cache: object code by key, in memory for the process and on disk across
processes, so that a kernel is optimized and emitted once per machine, not once per run.

A key (`cache_key`) hashes the module's LLVM IR with everything else the object code depends
on: the host target (`target.target_key()`), CODEGEN_VERSION and ember's version. A generated
task (runtime/windows.py's load_task: the packed GEMM, the LSTM passes, the pool tasks) is
keyed by its name instead (`generated_key`), which names everything its generator takes (the
process's tasks are found by name already), with the sources of ember's generators and of the
runtime that calls them: its IR is made only when the key misses. The packed GEMM's IR took
~70 ms to make, a fifth of the time from script() to a small MLP step's first results with
every kernel on disk. A disk entry is `<directory>/<key>.ko`:

    MAGIC (8 bytes) | key (64 ASCII hex) | payload length (8, little-endian) |
    HMAC-SHA256 of the three fields before it and the payload (32) | payload (the object code)

Object code from disk is executed, and LLVM's object loader is not built for hostile input (a
few changed bytes crash the process with SIGSEGV or SIGABRT), so an entry reaches LLVM only when
it is authentic: its HMAC is keyed by a 32-byte secret, `<directory>/secret.key`, made with
os.urandom on first use, mode 0600, owned by this user. A plain checksum only catches accidents:
anyone can recompute it over garbage. The HMAC can be made only by a process that can read the
secret, which is this user's (who could as well edit ember's own source), so an entry
forged, damaged and re-checksummed, or copied from another directory or machine is rebuilt,
never loaded. Checking the object file's structure instead would not do: LLVM is crashed by
relocations and section tables that look well-formed, and well-formed code can still be wrong;
nor would probe-loading in a child process, which costs a fork per disk hit (unsafe in a
threaded process) and proves only that loading survives, not that the code is ours.

Before any of that, an entry is lstat-ed and must be a regular file (not a symlink, FIFO or
device: nothing is opened that could block), owned by this user and at most MAX_ENTRY_BYTES;
it is opened with O_NOFOLLOW | O_NONBLOCK and read no further than that bound. The directory is
used only when it is owned by this user and neither group- nor world-writable (sticky bit or
not), the same rule as ssh's StrictModes: anyone else who can create or rename files there
could plant entries or swap the secret. A refused directory warns once (UserWarning) and kernels
are compiled in memory; a refused entry is logged on the "kernels" channel, compiled again and
overwritten; the user never sees a cache error.

EMBER_CACHE_DIR names the directory; EMBER_CACHE_DIR=off (or 0, false, no, none) keeps kernels
in memory only, as does `KernelCache(directory="")`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import hmac
import os
import stat
import struct
import threading
import time
import warnings

from ..._log import log
from . import target

# Bump when the code that emits kernels changes what a given IR text means at run time (calling
# convention, runtime helpers linked in): old entries then miss instead of being loaded.
CODEGEN_VERSION = "1"

MAGIC = b"EMBERKO2"  # KO1 entries (a plain sha256) are refused as bad magic and rebuilt
SUFFIX = ".ko"
SECRET_NAME = "secret.key"
SECRET_BYTES = 32
# the largest entry read: entries are KBs to a few MB of object code; a bigger file is refused
# from its size alone, before anything is read
MAX_ENTRY_BYTES = 128 << 20
_HEADER = struct.Struct("<8s64sQ32s")  # magic, key hex, payload length, HMAC
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_OFF = {"off", "0", "false", "no", "none"}
# Windows has no getuid and its st_mode bits are synthesized, so neither check means anything
# there; everywhere else both apply.
_POSIX = hasattr(os, "getuid")


class CorruptEntry(Exception):
    """A disk entry that must not be loaded; the message says why."""


@dataclasses.dataclass
class CacheStats:
    hits_memory: int = 0
    hits_disk: int = 0
    compiles: int = 0
    rebuilt_corrupt: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@functools.cache
def _ember_version() -> str:
    """ember's version, the package's own (_version.py): importlib.metadata's lookup imported
    the email package and scanned every distribution on sys.path, ~40 ms of a process's first
    scripted call."""
    from ..._version import __version__

    return __version__


def cache_key(module_ir: str) -> str:
    """sha256 hex of the IR, the host target, CODEGEN_VERSION and ember's version. Each part is
    length-prefixed so that no two different tuples of parts hash the same bytes, and nothing
    depends on Python's hash() or repr, so every process on the machine agrees."""
    return _digest("ember-kernel", module_ir)


def generated_key(name: str) -> str:
    """The key of the generated task `name`, without its IR: the name, the sources of the
    generators and of the runtime (_sources_digest), and what cache_key adds."""
    return _digest("ember-generated", name, _sources_digest())


@functools.cache
def _sources_digest() -> str:
    """sha256 hex of the Python sources under codegen/, ir/ and runtime/, in path order: an
    edit to a generator, or to a caller's arguments for one, changes every generated key.
    About 1 MB, read once a process (~2 ms)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    digest = hashlib.sha256()
    for top in ("codegen", "ir", "runtime"):
        for folder, folders, files in os.walk(os.path.join(root, top)):
            folders[:] = sorted(f for f in folders if f != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    digest.update(os.path.relpath(path, root).encode("utf-8") + b"\0")
                    with open(path, "rb") as source:
                        data = source.read()
                    digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _digest(kind: str, *rest: str) -> str:
    parts = [
        kind,
        CODEGEN_VERSION,
        _ember_version(),
        *(str(part) for part in target.target_key()),
        *rest,
    ]
    digest = hashlib.sha256(len(parts).to_bytes(8, "little"))
    for part in parts:
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _mac(secret: bytes, fields: bytes, objects: bytes) -> bytes:
    mac = hmac.new(secret, fields, hashlib.sha256)
    mac.update(objects)
    return mac.digest()


def encode_entry(key: str, objects: bytes, secret: bytes) -> bytes:
    """A disk entry holding `objects` under `key`, authenticated with `secret`."""
    fields = MAGIC + key.encode("ascii") + len(objects).to_bytes(8, "little")
    return fields + _mac(secret, fields, objects) + objects


def decode_entry(data: bytes, key: str, secret: bytes) -> bytes:
    """The object code in an entry read from disk, or CorruptEntry saying why it is refused."""
    if len(data) < _HEADER.size:
        raise CorruptEntry(f"truncated header ({len(data)} bytes)")
    magic, stored_key, length, mac = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntry(f"bad magic {magic!r}")
    if stored_key != key.encode("ascii"):
        raise CorruptEntry(f"holds key {stored_key[:12]!r}, not the one asked for")
    payload = data[_HEADER.size :]
    if len(payload) != length:
        raise CorruptEntry(f"payload is {len(payload)} bytes, header says {length}")
    expected = _mac(secret, data[: _HEADER.size - 32], payload)
    if not hmac.compare_digest(mac, expected):
        raise CorruptEntry("not authenticated by this cache's secret (damaged or not written here)")
    return payload


def default_directory() -> str:
    """EMBER_CACHE_DIR if set, else $XDG_CACHE_HOME/ember/kernels, else ~/.cache/ember/kernels;
    "" when EMBER_CACHE_DIR turns the disk cache off."""
    chosen = os.environ.get("EMBER_CACHE_DIR", "")
    if chosen.strip().lower() in _OFF:
        return ""
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG spec says to ignore a relative XDG_CACHE_HOME
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ember", "kernels")


class KernelCache:
    """Object code by key: `load(module_ir)` returns a loaded target.ObjectLibrary, compiling
    only when neither memory nor disk holds a valid entry. Thread-safe; processes may share a
    directory (entries are replaced atomically)."""

    def __init__(self, directory: str | None = None):
        if directory is None:
            directory = default_directory()
        self.directory = os.path.abspath(os.path.expanduser(directory)) if directory else ""
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._libraries: dict[str, target.ObjectLibrary] = {}
        self._building: dict[str, threading.Lock] = {}  # key -> held while one thread builds it
        # None until the directory is first checked; then whether to read and write entries
        self._readable: bool | None = None if self.directory else False
        self._writable = bool(self.directory)
        self._secret: bytes | None = None  # the directory's, read when it is first checked

    def __repr__(self) -> str:
        return f"KernelCache({self.directory!r}, {self.stats})"

    def entry_path(self, key: str) -> str | None:
        """Where the entry for `key` lives on disk; None for a memory-only cache."""
        return os.path.join(self.directory, key + SUFFIX) if self.directory else None

    def load(self, module_ir: str) -> target.ObjectLibrary:
        """The object code of `module_ir`, loaded; the same library for the same IR."""
        return self.load_keyed(cache_key(module_ir), lambda: module_ir)

    def load_generated(self, name: str, make_ir) -> target.ObjectLibrary:
        """The object code of the generated task `name` (generated_key), loaded; make_ir()
        gives its IR, called only when neither memory nor disk holds it."""
        return self.load_keyed(generated_key(name), make_ir)

    def load_keyed(self, key: str, make_ir) -> target.ObjectLibrary:
        """The object code under `key`, loaded, or built from make_ir() and stored there."""
        with self._lock:
            library = self._libraries.get(key)
            if library is not None:
                self.stats.hits_memory += 1
                return library
            building = self._building.setdefault(key, threading.Lock())
        # one builder per key: a second thread asking for it waits, then finds it in memory
        with building:
            with self._lock:
                library = self._libraries.get(key)
                if library is not None:
                    self.stats.hits_memory += 1
                    return library
            try:
                library = self._build(key, make_ir)
                with self._lock:
                    self._libraries[key] = library
            finally:
                with self._lock:
                    self._building.pop(key, None)
        return library

    # -- building one entry --------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _build(self, key: str, make_ir) -> target.ObjectLibrary:
        if self._disk_readable():
            path = self.entry_path(key)
            try:
                objects = self._read(path, key)
                if objects is not None:
                    try:
                        library = target.ObjectLibrary(objects)
                    except RuntimeError as error:  # how llvmlite reports an LLVM error
                        raise CorruptEntry(f"LLVM refused its object code ({error})") from error
                    self._count("hits_disk")
                    log("kernels", f"kernel {key[:12]} loaded from disk ({path})")
                    return library
            except CorruptEntry as error:
                self._count("rebuilt_corrupt")
                log("kernels", f"kernel {key[:12]}: cache entry {path} rebuilt: {error}")
        start = time.perf_counter()
        objects = target.emit_object(make_ir())
        self._count("compiles")
        elapsed = (time.perf_counter() - start) * 1000
        log("kernels", f"kernel {key[:12]} compiled in {elapsed:.1f} ms")
        library = target.ObjectLibrary(objects)
        if self._writable:
            self._write(self.entry_path(key), key, objects)
        return library

    def _read(self, path: str, key: str) -> bytes | None:
        """Authenticated object code from disk; None when there is no entry; CorruptEntry when
        there is one that must not be trusted."""
        data = _read_regular_file(path, MAX_ENTRY_BYTES)
        return None if data is None else decode_entry(data, key, self._secret)

    def _write(self, path: str, key: str, objects: bytes) -> None:
        """Write the entry through a uniquely named temporary file and os.replace, so a reader
        sees the old entry or the new one, never half of one, and two writers of the same key
        both leave a complete entry. No fsync: an entry torn by a power cut fails its HMAC
        and is rebuilt, which is cheaper than syncing every compile."""
        entry = encode_entry(key, objects, self._secret)
        if len(entry) > MAX_ENTRY_BYTES:
            log("kernels", f"kernel {key[:12]}: {len(entry)} bytes, too large to cache on disk")
            return
        temporary = os.path.join(
            self.directory, f".{key[:16]}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
        )
        try:
            fd = os.open(temporary, _CREATE_FLAGS, 0o600)
        except OSError as error:
            self._stop_writing(error)
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(entry)
            os.replace(temporary, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            self._stop_writing(error)

    def _stop_writing(self, error: OSError) -> None:
        # the first failure says it once; kernels keep working from memory, and entries
        # already on disk stay readable (a read-only, prebuilt cache is still useful)
        with self._lock:
            if not self._writable:
                return
            self._writable = False
        log("kernels", f"kernel cache {self.directory} not writable ({error}); memory only")

    # -- the directory and its secret ------------------------------------------------------

    def _disk_readable(self) -> bool:
        if self._readable is None:
            with self._lock:
                if self._readable is None:
                    self._readable = self._check_directory()
                    self._writable = self._writable and self._readable
        return self._readable

    def _check_directory(self) -> bool:
        """Create the directory (0o700), decide whether its files may be trusted, and read (or
        make) its secret."""
        directory = self.directory
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            info = os.stat(directory)
        except OSError as error:
            log("kernels", f"kernel cache {directory} unusable ({error}); memory only")
            return False
        refusal, fix = None, ""
        if not stat.S_ISDIR(info.st_mode):
            refusal = "not a directory"
        elif _POSIX and info.st_uid != os.getuid():
            refusal = f"owned by uid {info.st_uid}, not by this user (uid {os.getuid()})"
        elif _POSIX and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            # even with the sticky bit, others could create the names of entries not made yet
            who = "world" if info.st_mode & stat.S_IWOTH else "group"
            refusal = f"{who}-writable (mode {stat.S_IMODE(info.st_mode):o})"
            fix = f"make it private (chmod go-w {directory}), or "
        if refusal:
            warnings.warn(
                f"ember: the kernel cache {directory} is not used: it is {refusal}, so "
                f"another user could put object code there that ember would run. Kernels are "
                f"compiled in memory only; {fix}choose another directory with EMBER_CACHE_DIR "
                f"(EMBER_CACHE_DIR=off turns the disk cache off and this warning with it).",
                UserWarning,
                stacklevel=2,
            )
            log("kernels", f"kernel cache {directory} refused: {refusal}; memory only")
            return False
        self._secret = self._directory_secret()
        return self._secret is not None

    def _directory_secret(self) -> bytes | None:
        """The directory's secret, made on first use; None when none can be had (a read-only
        directory without one): then nothing on it can be authenticated, and it is not used."""
        path = os.path.join(self.directory, SECRET_NAME)
        for _ in range(3):  # other processes may make or replace it at the same time
            try:
                secret = _read_regular_file(path, SECRET_BYTES, private=True)
                if secret is not None and len(secret) != SECRET_BYTES:
                    raise CorruptEntry(f"{len(secret)} bytes, not {SECRET_BYTES}")
            except CorruptEntry as error:
                # someone else may know it: entries it signed are rebuilt under a new one
                warnings.warn(
                    f"ember: the kernel cache's secret {path} is not trusted ({error}); it is "
                    f"replaced by a new one, and the kernels cached under it are compiled again",
                    UserWarning,
                    stacklevel=3,
                )
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as unlink_error:
                    log("kernels", f"kernel cache {path}: {unlink_error}; memory only")
                    return None
                continue
            if secret is not None:
                return secret
            try:
                return _make_secret(self.directory, path)
            except FileExistsError:
                continue  # another process made it first: use theirs
            except OSError as error:
                log("kernels", f"kernel cache {path} cannot be made ({error}); memory only")
                return None
        log("kernels", f"kernel cache {path} keeps changing; memory only")
        return None


def _file_problem(info: os.stat_result, limit: int, private: bool) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        kinds = {stat.S_IFLNK: "a symlink", stat.S_IFIFO: "a FIFO", stat.S_IFDIR: "a directory"}
        kind = kinds.get(stat.S_IFMT(info.st_mode), "a special file")
        return f"not a regular file ({kind})"
    # in a directory others could write, another user could create our entry's name
    if _POSIX and info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}, not by this user"
    if _POSIX and private and info.st_mode & 0o077:
        return f"mode {stat.S_IMODE(info.st_mode):o}, readable or writable by others"
    if info.st_size > limit:
        return f"{info.st_size} bytes, over the {limit} it may have"
    return None


def _read_regular_file(path: str, limit: int, private: bool = False) -> bytes | None:
    """The contents of the regular file at path, owned by this user (and, if private, by it
    alone) and at most `limit` bytes; None when there is no file; CorruptEntry for anything
    else. Only a regular file is ever opened (a FIFO would block, a device could do anything),
    never through a symlink, and no more than limit + 1 bytes are read."""
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CorruptEntry(f"unreadable ({error})") from error
    problem = _file_problem(before, limit, private)
    if problem:
        raise CorruptEntry(problem)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as error:  # ELOOP: it became a symlink after the lstat
        raise CorruptEntry(f"unreadable ({error})") from error
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise CorruptEntry("replaced while it was opened")
        problem = _file_problem(info, limit, private)
        if problem:
            raise CorruptEntry(problem)
        data = bytearray()
        while len(data) <= limit:  # a file that grows after the fstat is still bounded
            chunk = os.read(fd, min(limit + 1 - len(data), 1 << 20))
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise CorruptEntry(f"unreadable ({error})") from error
    finally:
        os.close(fd)
    if len(data) > limit:
        raise CorruptEntry(f"grew past the {limit} bytes it may have")
    return bytes(data)


def _make_secret(directory: str, path: str) -> bytes:
    """A fresh secret at path, mode 0600; FileExistsError when another process made one first.
    It is written under a temporary name and linked into place, so no reader ever sees half
    of one."""
    secret = os.urandom(SECRET_BYTES)
    temporary = os.path.join(directory, f".secret.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temporary, _CREATE_FLAGS, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        os.link(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return secret


_default: KernelCache | None = None
_default_lock = threading.Lock()


def default_cache() -> KernelCache:
    """The process-wide cache, created on first use; EMBER_CACHE_DIR is read again on every
    call, and a changed directory gets a fresh cache (tests point it at a temporary one)."""
    global _default
    directory = default_directory()
    with _default_lock:
        if _default is None or _default.directory != directory:
            _default = KernelCache(directory)
        return _default
