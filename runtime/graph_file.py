"""The graph file container: a safetensors file, read through the one hardened reader
(runtime/safetensors_file.py), and written.

A graph file is a safetensors file (8-byte little-endian header length, a JSON header naming
each tensor's dtype, shape and data offsets, a `__metadata__` map of strings, then the data).
Its tensors are the graph's constants; its metadata holds the format name, the schema version,
the graph, the ops it uses and the signature (see runtime/loaded.py).

Every length, offset, dtype, shape and JSON document is checked against the file before it is
used, and the data against the CRC-32 the writer puts in the metadata (data_crc32; files
without one load too); a broken or hostile file raises a FormatError naming the field. The data is
memory-mapped, never read whole, and nothing in the file is unpickled, evaluated or imported.
"""

from __future__ import annotations

from ..errors import EmberError
from . import atomic_file, safetensors_file, safetensors_writer
from .safetensors_file import MAX_JSON_BYTES, Problem, SafetensorsFile

FORMAT_NAME = "ember.graph"
SCHEMA_VERSION = (1, 0)  # major.minor: a newer minor loads, a newer major is refused

MAX_HEADER_BYTES = 64 << 20


class FormatError(EmberError, ValueError):
    """A graph file that cannot be loaded: broken, hostile, or from an incompatible ember."""


class Container:
    """A checked safetensors file: its metadata strings and its tensors, memory-mapped."""

    def __init__(self, path: str, metadata: dict, tensors: dict, size: int):
        self.path = path
        self.metadata = metadata  # str -> str
        self.tensors = tensors  # name -> read-only numpy array over the mapped file
        self.size = size


def _format_error(problem: Problem) -> FormatError:
    return FormatError(problem.message)


def parse_json(text, where: str, limit: int = MAX_JSON_BYTES):
    """A JSON document from text (str or bytes), checked for size, depth and duplicate keys."""
    return safetensors_file.parse_json(text, where, limit, error=FormatError)


def read_container(path: str) -> Container:
    """The checked header of the safetensors file at path, its tensors memory-mapped."""
    try:
        file = SafetensorsFile(path, fail=_format_error, max_header_bytes=MAX_HEADER_BYTES)
        tensors = file.tensors()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    return Container(path, file.metadata, tensors, file.size)


def write_container(path: str, tensors: dict, metadata: dict) -> None:
    """Write a safetensors file of named numpy arrays and metadata strings: the same bytes for
    the same contents (runtime/safetensors_writer.py), replacing path whole or not at all
    (runtime/atomic_file.py)."""
    prepared = safetensors_writer.prepare(tensors, metadata)
    with atomic_file.replacing(path) as f:
        safetensors_writer.write(f, prepared)
