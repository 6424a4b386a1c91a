"""The graph file container: a safetensors file read field by field, and written.

A graph file is a safetensors file (8-byte little-endian header length, a JSON header naming
each tensor's dtype, shape and data offsets, a `__metadata__` map of strings, then the data).
Its tensors are the graph's constants; its metadata holds the format name, the schema version,
the graph, the ops it uses and the signature (see runtime/loaded.py).

Reading parses the header here rather than in the safetensors package, so that every length,
offset, dtype, shape and JSON document is checked against the file before it is used; a broken
or hostile file raises a FormatError naming the field. The data is memory-mapped, never read
whole, and nothing in the file is unpickled, evaluated or imported.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct

import numpy as np

from ..errors import EmberError

FORMAT_NAME = "ember.graph"
SCHEMA_VERSION = (1, 0)  # major.minor: a newer minor loads, a newer major is refused

MAX_HEADER_BYTES = 64 << 20
MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 64
MAX_TENSORS = 1 << 20
MAX_NDIM = 32

# safetensors' dtype names and the ember dtype names they hold
DTYPES = {
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "BOOL": "bool",
}
DTYPE_CODES = {name: code for code, name in DTYPES.items()}


class FormatError(EmberError, ValueError):
    """A graph file that cannot be loaded: broken, hostile, or from an incompatible ember."""


class Container:
    """A checked safetensors file: its metadata strings and its tensors, memory-mapped."""

    def __init__(self, path: str, metadata: dict, tensors: dict, size: int):
        self.path = path
        self.metadata = metadata  # str -> str
        self.tensors = tensors  # name -> read-only numpy array over the mapped file
        self.size = size


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _reject_constant(name: str):
    raise FormatError(f"JSON: {name} is not JSON (only finite numbers are)")


def _check_depth(value, where: str, limit: int = MAX_JSON_DEPTH) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise FormatError(f"{where}: JSON nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise FormatError(f"JSON: the key {key!r} appears twice in one object")
        out[key] = value
    return out


def parse_json(text, where: str, limit: int = MAX_JSON_BYTES):
    """A JSON document from text (str or bytes), checked for size, depth and duplicate keys."""
    if len(text) > limit:
        raise FormatError(f"{where}: {len(text)} bytes of JSON, more than the limit of {limit}")
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(
                f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    except RecursionError:
        raise FormatError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise FormatError(f"{where}: invalid JSON: {exc}") from None
    _check_depth(value, where)
    return value


def _size(value, where: str) -> int:
    if value.__class__ is not int or value < 0:
        raise FormatError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


def _tensor_entry(name: str, entry, data_size: int) -> tuple:
    where = f"header[{name!r}]"
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: expected an object, got {_kind(entry)}")
    fields = {"dtype", "shape", "data_offsets"}
    if set(entry) != fields:
        odd = sorted(set(entry) ^ fields)
        raise FormatError(
            f"{where}: expected the fields dtype, shape, data_offsets; {odd[0]!r} "
            f"is {'missing' if odd[0] in fields else 'unknown'}"
        )
    code = entry["dtype"]
    if not isinstance(code, str) or code not in DTYPES:
        raise FormatError(f"{where}.dtype: expected one of {', '.join(DTYPES)}, got {code!r}")
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise FormatError(
            f"{where}.shape: expected a list of at most {MAX_NDIM} sizes, got {_kind(shape)}"
        )
    shape = tuple(_size(d, f"{where}.shape[{i}]") for i, d in enumerate(shape))
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise FormatError(f"{where}.data_offsets: expected [begin, end], got {offsets!r}")
    begin = _size(offsets[0], f"{where}.data_offsets[0]")
    end = _size(offsets[1], f"{where}.data_offsets[1]")
    if not begin <= end <= data_size:
        raise FormatError(
            f"{where}.data_offsets: [{begin}, {end}] is not a range inside the "
            f"{data_size} data bytes of the file"
        )
    dtype = np.dtype(DTYPES[code]).newbyteorder("<")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != end - begin:
        raise FormatError(
            f"{where}: shape {list(shape)} of {code} is {nbytes} bytes, but "
            f"data_offsets hold {end - begin}"
        )
    return dtype, shape, begin, end


def read_container(path: str) -> Container:
    """The checked header of the safetensors file at path, its tensors memory-mapped."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    if size < 8:
        raise FormatError(
            f"header length: the file has {size} bytes, fewer than the 8 of the header length"
        )
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    (header_size,) = struct.unpack("<Q", mapped[:8].tobytes())
    if header_size > min(size - 8, MAX_HEADER_BYTES) or header_size < 2:
        raise FormatError(
            f"header length: {header_size} bytes, but the file has {size - 8} "
            f"after the length (and the limit is {MAX_HEADER_BYTES})"
        )
    header = parse_json(mapped[8 : 8 + header_size].tobytes(), "header", MAX_HEADER_BYTES)
    if not isinstance(header, dict):
        raise FormatError(f"header: expected a JSON object, got {_kind(header)}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise FormatError(f"header.__metadata__: expected an object, got {_kind(metadata)}")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise FormatError(
                f"header.__metadata__[{key!r}]: expected a string, got {_kind(value)}"
            )
    if len(header) > MAX_TENSORS:
        raise FormatError(f"header: {len(header)} tensors, more than the limit of {MAX_TENSORS}")
    data_start = 8 + header_size
    data_size = size - data_start
    entries = {name: _tensor_entry(name, entry, data_size) for name, entry in header.items()}
    ranges = sorted((begin, end, name) for name, (_, _, begin, end) in entries.items())
    for (_, end, name), (begin, _, other) in itertools.pairwise(ranges):
        if begin < end:
            raise FormatError(f"header[{other!r}].data_offsets: its data overlaps {name!r}'s")
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        raw = mapped[data_start + begin : data_start + end]
        tensors[name] = raw.view(dtype).reshape(shape) if shape else raw.view(dtype).reshape(())
    return Container(path, metadata, tensors, size)


def write_container(path: str, tensors: dict, metadata: dict) -> None:
    """Write a safetensors file of named numpy arrays (C order, little-endian) and metadata
    strings, through the safetensors package."""
    from safetensors.numpy import save_file

    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    save_file(arrays, path, metadata=metadata)
