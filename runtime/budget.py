"""The memory budget of a graph file: what its values declare, checked before anything runs.

A graph file of a few kilobytes can declare a one_hot of 2**26 classes or an expand to 2**40
rows. Loading adds up the sizes of the values every node makes (views included: a sum over an
expand reads every element the expand declares) and refuses the file, naming the largest
node, when the total passes the budget; symbolic sizes count at their least (2) at load, and at
their bound sizes at the first call with those sizes.

The budget is EMBER_MAX_BYTES (bytes, or with a K, M, G or T suffix: 512M), else half the
machine's physical memory. The total over-counts what runs at once (the memory plan reuses
buffers), so a file under it fits; one over it could not run on this machine anyway.
"""

from __future__ import annotations

import math
import os
import re

from ..ir.symbolic import SYMBOL_MIN, SymInt
from .graph_file import FormatError

_SIZE = re.compile(r"\s*([0-9]+)\s*([KMGT]?)i?B?\s*\Z", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
FALLBACK_BYTES = 8 << 30  # where the machine's memory cannot be read


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, or None where os.sysconf cannot say."""
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * page if pages > 0 and page > 0 else None


def max_bytes() -> int:
    """The budget: EMBER_MAX_BYTES, else half the physical memory."""
    text = os.environ.get("EMBER_MAX_BYTES", "").strip()
    if text:
        match = _SIZE.match(text)
        if not match or int(match.group(1)) == 0:
            raise FormatError(
                f"EMBER_MAX_BYTES: expected a positive number of bytes (like 1073741824 or "
                f"1G), got {text[:32]!r}"
            )
        return int(match.group(1)) * _UNITS[match.group(2).upper()]
    memory = physical_memory()
    return memory // 2 if memory else FALLBACK_BYTES


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _size(d, sizes: dict | None) -> int:
    if isinstance(d, SymInt):
        bound = d.subs(sizes if sizes is not None else {})
        if isinstance(bound, SymInt):  # unbound symbols: their least value
            bound = bound.subs(dict.fromkeys(bound.free_symbols, SYMBOL_MIN))
        d = bound
    return max(int(d), 0)  # -1: a size only the kernel knows (nonzero), bounded by its input


def value_bytes(value_type, sizes: dict | None = None) -> int:
    """The bytes of a value of this type, at these symbol sizes (None: at their least)."""
    numel = math.prod(_size(d, sizes) for d in value_type.shape)
    return numel * value_type.dtype.itemsize


def check_budget(graph, sizes: dict | None = None, limit: int | None = None) -> int:
    """The bytes the values of graph's nodes declare, at these symbol sizes (None: at their
    least); a FormatError naming the largest node when they pass the limit (max_bytes())."""
    limit = max_bytes() if limit is None else limit
    total, largest = 0, (0, -1)
    for i, node in enumerate(graph.nodes):
        made = sum(value_bytes(v.type, sizes) for v in node.outputs)
        total += made
        largest = max(largest, (made, i))
    if total > limit:
        made, i = largest
        node = graph.nodes[i]
        types = ", ".join(f"{v.type.dtype.name}{list(v.type.shape)}" for v in node.outputs)
        at = f" at the sizes {dict(sorted(sizes.items()))}" if sizes else ""
        raise FormatError(
            f"metadata.graph: nodes[{i}] ({node.op}) makes {types}, {format_bytes(made)}; the "
            f"graph's values need {format_bytes(total)}{at}, more than the budget of "
            f"{format_bytes(limit)} (EMBER_MAX_BYTES)"
        )
    return total
