"""The compiled-kernel cache: object code by key, in memory for the process and on disk across
processes, so that a kernel is optimized and emitted once per machine, not once per run.

A key (`cache_key`) hashes the module's LLVM IR with everything else the object code depends
on: the host target (`target.target_key()`), CODEGEN_VERSION and ember's version. A disk entry
is `<directory>/<key>.ko`:

    MAGIC (8 bytes) | key (64 ASCII hex) | payload length (8, little-endian) |
    sha256 of the payload (32) | payload (the object code)

Object code from disk is executed, so an entry is trusted only when all of it checks out
(magic, the very key asked for, exact length, checksum, owned by this user), and the
directory only when no other user can put files in it. Anything else is logged on the
"kernels" channel, compiled again and overwritten; the user never sees a cache error.

EMBER_CACHE_DIR names the directory; EMBER_CACHE_DIR=off (or 0, false, no, none) keeps kernels
in memory only, as does `KernelCache(directory="")`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import stat
import struct
import threading
import time

from ..._log import log
from . import target

# Bump when the code that emits kernels changes what a given IR text means at run time (calling
# convention, runtime helpers linked in): old entries then miss instead of being loaded.
CODEGEN_VERSION = "1"

MAGIC = b"EMBERKO1"
SUFFIX = ".ko"
_HEADER = struct.Struct("<8s64sQ32s")  # magic, key hex, payload length, payload sha256
_OFF = {"off", "0", "false", "no", "none"}
_FALLBACK_VERSION = "0.1.0"  # when ember runs from a folder without installed metadata
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
    import importlib.metadata

    try:
        return importlib.metadata.version("ember")
    except importlib.metadata.PackageNotFoundError:
        return _FALLBACK_VERSION


def cache_key(module_ir: str) -> str:
    """sha256 hex of the IR, the host target, CODEGEN_VERSION and ember's version. Each part is
    length-prefixed so that no two different tuples of parts hash the same bytes, and nothing
    depends on Python's hash() or repr, so every process on the machine agrees."""
    parts = [
        "ember-kernel",
        CODEGEN_VERSION,
        _ember_version(),
        *(str(part) for part in target.target_key()),
        module_ir,
    ]
    digest = hashlib.sha256(len(parts).to_bytes(8, "little"))
    for part in parts:
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def encode_entry(key: str, objects: bytes) -> bytes:
    """A disk entry holding `objects` under `key`."""
    header = _HEADER.pack(
        MAGIC, key.encode("ascii"), len(objects), hashlib.sha256(objects).digest()
    )
    return header + objects


def decode_entry(data: bytes, key: str) -> bytes:
    """The object code in an entry read from disk, or CorruptEntry saying why it is refused."""
    if len(data) < _HEADER.size:
        raise CorruptEntry(f"truncated header ({len(data)} bytes)")
    magic, stored_key, length, checksum = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntry(f"bad magic {magic!r}")
    if stored_key != key.encode("ascii"):
        raise CorruptEntry(f"holds key {stored_key[:12]!r}, not the one asked for")
    payload = data[_HEADER.size :]
    if len(payload) != length:
        raise CorruptEntry(f"payload is {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != checksum:
        raise CorruptEntry("payload checksum mismatch")
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

    def __repr__(self) -> str:
        return f"KernelCache({self.directory!r}, {self.stats})"

    def entry_path(self, key: str) -> str | None:
        """Where the entry for `key` lives on disk; None for a memory-only cache."""
        return os.path.join(self.directory, key + SUFFIX) if self.directory else None

    def load(self, module_ir: str) -> target.ObjectLibrary:
        """The object code of `module_ir`, loaded; the same library for the same IR."""
        key = cache_key(module_ir)
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
                library = self._build(key, module_ir)
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

    def _build(self, key: str, module_ir: str) -> target.ObjectLibrary:
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
        objects = target.emit_object(module_ir)
        self._count("compiles")
        elapsed = (time.perf_counter() - start) * 1000
        log("kernels", f"kernel {key[:12]} compiled in {elapsed:.1f} ms")
        library = target.ObjectLibrary(objects)
        if self._writable:
            self._write(self.entry_path(key), key, objects)
        return library

    def _read(self, path: str, key: str) -> bytes | None:
        """Verified object code from disk; None when there is no entry; CorruptEntry when there
        is one that must not be trusted."""
        try:
            with open(path, "rb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise CorruptEntry("not a regular file")
                # in a sticky shared directory another user may still create our entry's name
                if _POSIX and info.st_uid != os.getuid():
                    raise CorruptEntry(f"owned by uid {info.st_uid}, not by this user")
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise CorruptEntry(f"unreadable ({error})") from error
        return decode_entry(data, key)

    def _write(self, path: str, key: str, objects: bytes) -> None:
        """Write the entry through a uniquely named temporary file and os.replace, so a reader
        sees the old entry or the new one, never half of one, and two writers of the same key
        both leave a complete entry. No fsync: an entry torn by a power cut fails its checksum
        and is rebuilt, which is cheaper than syncing every compile."""
        temporary = os.path.join(
            self.directory, f".{key[:16]}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
        )
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(temporary, flags, 0o600)
        except OSError as error:
            self._stop_writing(error)
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(encode_entry(key, objects))
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

    # -- the directory ------------------------------------------------------------------

    def _disk_readable(self) -> bool:
        if self._readable is None:
            with self._lock:
                if self._readable is None:
                    self._readable = self._check_directory()
                    self._writable = self._writable and self._readable
        return self._readable

    def _check_directory(self) -> bool:
        """Create the directory (0o700) and decide whether its files may be trusted."""
        directory = self.directory
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            info = os.stat(directory)
        except OSError as error:
            log("kernels", f"kernel cache {directory} unusable ({error}); memory only")
            return False
        refusal = None
        if not stat.S_ISDIR(info.st_mode):
            refusal = "not a directory"
        elif _POSIX and info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            # anyone could drop object code there, or swap our entries for theirs
            refusal = "world-writable without the sticky bit"
        elif _POSIX and info.st_uid != os.getuid():
            refusal = f"owned by uid {info.st_uid}, not by this user"
        if refusal:
            log("kernels", f"kernel cache {directory} refused: {refusal}; memory only")
            return False
        return True


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
