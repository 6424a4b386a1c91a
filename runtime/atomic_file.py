"""Files written whole or not at all: `replacing(path)` yields a binary file whose contents
replace `path` by one rename when the block ends normally; a save that raises, or is killed,
leaves `path` as it was and no partial file next to it.

On Linux the contents are written to an unnamed file (O_TMPFILE): the kernel frees it when the
process dies, even by SIGKILL, and a name is given to it only once it is complete (linked
through /proc/self/fd, then renamed over the target). Where that is not available (another OS,
or a filesystem without O_TMPFILE such as NFS), they go to a named temporary file
`.<target name>.<host>.<pid>.<random>.ember-partial` next to the target, removed on any
exception; one left by a process that was killed is removed by the next save to the same
target, once its pid is no longer running on this host.

A target that exists but is not a regular file (/dev/null, a FIFO) is written in place, as
open(path, "wb") would; so is a regular file in a directory where no temporary file can be
made. A symlinked target is written through the link, as open() would.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

PARTIAL_SUFFIX = ".ember-partial"
_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_TAIL = re.compile(r"([0-9]+)\.[0-9a-f]{12}" + re.escape(PARTIAL_SUFFIX))
# Off where the OS has no O_TMPFILE; tests turn it off to exercise the named fallback.
use_unnamed = hasattr(os, "O_TMPFILE") and sys.platform.startswith("linux")


def _host() -> str:
    return platform.node().replace(os.sep, "_") or "localhost"


def partial_prefix(target: str) -> str:
    """The name prefix of the temporary files made for target (a path)."""
    return f".{os.path.basename(target)}.{_host()}."


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be saving to the same target
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate it there; never remove what may be live
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: running, as another user
        return True
    return True


def remove_leftovers(target: str) -> list[str]:
    """Remove the temporary files that killed saves to target left on this host; returns
    their names. Files of live processes, of other hosts (a shared filesystem) and anything
    not named like ours are left alone."""
    directory = os.path.dirname(target) or "."
    prefix = partial_prefix(target)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(PARTIAL_SUFFIX)):
            continue
        match = _TAIL.fullmatch(name[len(prefix) :])
        if match is None or _pid_running(int(match[1])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


def _open_unnamed(directory: str) -> int | None:
    if not use_unnamed:
        return None
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError:
        # EOPNOTSUPP or EISDIR: this filesystem or kernel has none; anything else (no
        # permission, no such directory) the named fallback reports in its own words
        return None
    if not os.path.exists(f"/proc/self/fd/{fd}"):  # no /proc: it could not be linked
        os.close(fd)
        return None
    return fd


def _partial_name(target: str) -> str:
    name = f"{partial_prefix(target)}{os.getpid()}.{os.urandom(6).hex()}{PARTIAL_SUFFIX}"
    return os.path.join(os.path.dirname(target) or ".", name)


def _named_temporary(target: str) -> tuple[int, str]:
    path = _partial_name(target)
    return os.open(path, _CREATE_FLAGS, 0o666), path


def _link_unnamed(fd: int, path: str) -> None:
    # linkat(..., AT_SYMLINK_FOLLOW) on /proc/self/fd/N names an O_TMPFILE file without
    # privileges; CPython calls linkat (not link, which would link the /proc entry itself)
    # only when given a directory fd
    directory = os.open(os.path.dirname(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(
            f"/proc/self/fd/{fd}",
            os.path.basename(path),
            dst_dir_fd=directory,
            follow_symlinks=True,
        )
    finally:
        os.close(directory)


@contextlib.contextmanager
def _in_place(target: str) -> Iterator[BinaryIO]:
    with open(target, "wb") as f:
        yield f


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file whose contents become the file at path when the block ends normally.
    On any exception, path is unchanged and nothing is left behind."""
    target = os.path.realpath(os.fspath(path))
    try:
        info = os.stat(target)
    except OSError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        with _in_place(target) as f:
            yield f
        return
    directory = os.path.dirname(target) or "."
    remove_leftovers(target)
    fd = _open_unnamed(directory)
    temporary = None
    if fd is None:
        try:
            fd, temporary = _named_temporary(target)
        except PermissionError:
            if info is None:
                raise
            # the file may be writable where its directory is not: write it as open() would
            with _in_place(target) as f:
                yield f
            return
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if temporary is None:  # complete: name it (a name the next save may clean up)
                temporary = _partial_name(target)
                _link_unnamed(f.fileno(), temporary)
        os.replace(temporary, target)
    except BaseException:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise
