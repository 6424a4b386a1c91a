"""The C allocator's policy for eager arrays: keep freed memory instead of returning it.

Eager mode allocates a fresh numpy array for every op's result and frees it soon after. With
glibc's default policy, arrays above 128 KB come from mmap or from the top of the heap, and
freed memory at the top is handed back to the kernel (trimmed) as soon as 2x that size is
free, so the next step's arrays fault their pages in again: the MLP training step spent a
third of its time in page faults (2.0 ms against 1.35 ms with the policy below). PyTorch keeps
such memory in its own allocator; ember cannot replace numpy's, so it sets glibc's
thresholds instead, once, when tensors are first used:

    M_MMAP_THRESHOLD  32 MB   arrays below this come from the heap, which is reused
    M_TRIM_THRESHOLD 256 MB   free memory at the top of the heap kept up to this
    M_TOP_PAD         16 MB   the heap grows in steps of this

EMBER_MALLOC=default leaves the C allocator as it was (other platforms and allocators are
never touched). The cost is memory the process keeps after a peak: at most the trim
threshold above what it uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 256 << 20), (M_TOP_PAD, 16 << 20))

_applied = None


def tune_malloc() -> bool:
    """Apply SETTINGS through glibc's mallopt; True when they were applied (once)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if (not sys.platform.startswith("linux")
            or os.environ.get("EMBER_MALLOC", "").strip().lower() in ("default", "0", "off")):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing useful
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _applied = all(mallopt(option, value) == 1 for option, value in SETTINGS)
    return _applied
