"""The one reader of safetensors files: checkpoints (serialization.py) and graph files
(runtime/graph_file.py) are both read through it, so both get every check.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and data offsets (and a `__metadata__` map of strings) padded with
spaces to a multiple of 8 bytes, then the data, which the tensors fill exactly. Every
length, offset, dtype, shape and JSON document is checked against the file before it is used,
and the data against its CRC-32 where ember's writers put one in the metadata. Nothing in the
file is unpickled, evaluated or imported, and the data is never copied: the tensors are
read-only arrays over the memory-mapped file (or over the caller's bytes).

A check that fails calls the caller's `fail` with a Problem (what failed, a message naming the
field, and the numbers in it), and raises what `fail` returns: each caller raises its own
error class in its own words (ember.load a CheckpointError, runtime.load a FormatError).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
import zlib
from collections.abc import Callable
from typing import NamedTuple

import ml_dtypes  # noqa: F401  (gives numpy the dtype named "bfloat16")
import numpy as np

# safetensors refuses headers over 100 MB; a caller may set a lower limit
MAX_HEADER_BYTES = 100 << 20
MAX_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = 64
MAX_TENSORS = 1 << 20
MAX_NDIM = 32
# the safetensors writer pads the header with spaces so that the data starts at a multiple of
# 8 bytes; the reader requires it, so a length field or a header off by a few bytes (which
# would shift every tensor by as many bytes) is refused, not read as garbage weights
DATA_ALIGNMENT = 8
# ember's writers put the CRC-32 of the data in the metadata under this key; the reader checks
# it where present (files without it, older ones, load as before), so data that was changed or
# shifted after writing is refused rather than read as other weights
CHECKSUM_KEY = "data_crc32"

# safetensors' dtype names and the ember dtype names they hold
DTYPES = {
    "F16": "float16",
    "BF16": "bfloat16",
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


class Problem(NamedTuple):
    """A check the file failed. `code` says which: "short" (under 8 bytes),
    "length_over_limit", "length_beyond_file", "length_too_small" (the header length field),
    "json", "not_object" (the header), "metadata", "too_many_tensors", "entry" (a tensor's
    fields, dtype or shape), "offsets" (not a [begin, end] range), "beyond_data" (past the
    end of the file), "overlap", "gap" (tensors that do not fill the data exactly),
    "misaligned" (data that does not start at a multiple of DATA_ALIGNMENT), "checksum" (data
    whose CRC-32 is not the metadata's)."""

    code: str
    message: str  # what is wrong, naming the field: "header['w'].dtype: expected one of ..."
    details: dict  # the names and numbers in the message, for a caller with its own words


Fail = Callable[[Problem], Exception]


def value_error(problem: Problem) -> Exception:
    return ValueError(problem.message)


class TensorEntry(NamedTuple):
    """A tensor's header entry, checked: its dtype code, shape and data offsets."""

    dtype: str  # the safetensors dtype code, "F32"
    shape: tuple
    begin: int  # offsets into the data, which starts after the header
    end: int


# -- JSON, checked ---------------------------------------------------------------------------


class _Refused(Exception):
    """A JSON document that is not accepted; the message says why."""


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _reject_constant(name: str):
    raise _Refused(f"JSON: {name} is not JSON (only finite numbers are)")


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"JSON: the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _check_depth(value, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a document with a value nested deeper than limit (the document is at depth 1):
    a container at depth `limit` or more that holds anything."""
    if value.__class__ is not dict and value.__class__ is not list:
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if item.__class__ is dict else item
        if depth >= limit and children:
            raise _Refused(f"JSON nested deeper than {limit} levels")
        for child in children:
            if child.__class__ is dict or child.__class__ is list:
                stack.append((child, depth + 1))


def _json_document(text, limit: int):
    if len(text) > limit:
        raise _Refused(f"{len(text)} bytes of JSON, more than the limit of {limit}")
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise _Refused(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise _Refused(f"invalid JSON: {exc}") from None
    _check_depth(value)
    return value


def parse_json(text, where: str, limit: int = MAX_JSON_BYTES,
               error: Callable[[str], Exception] = ValueError):
    """A JSON document from text (str or bytes), checked for size, depth, duplicate keys and
    non-finite numbers; error(message naming `where`) is raised otherwise."""
    try:
        return _json_document(text, limit)
    except _Refused as exc:
        raise error(f"{where}: {exc}") from None


# -- the file --------------------------------------------------------------------------------


class SafetensorsFile:
    """A safetensors file whose header is checked: its metadata strings, its tensor entries
    (entries()) and its tensors as read-only arrays (tensors()), both checked when first asked
    for, so a caller may check its metadata first.

    source is a path (the file is memory-mapped; an OSError is the caller's to word) or the
    file's bytes. fail(problem) gives the exception to raise for a failed check.
    """

    def __init__(self, source, *, fail: Fail = value_error,
                 max_header_bytes: int = MAX_HEADER_BYTES):
        self.fail = fail
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.path = None
            self._data = np.frombuffer(source, np.uint8)
            self._data.flags.writeable = False  # a bytearray's too
        else:
            self.path = os.fspath(source)
            if os.path.getsize(self.path) == 0:  # which np.memmap cannot map
                self._data = np.zeros(0, np.uint8)
            else:
                # a plain ndarray over the map (whose base it keeps): every view of a memmap
                # is a memmap, with a Python hook per view
                self._data = np.memmap(self.path, np.uint8, mode="r").view(np.ndarray)
        self.size = self._data.size
        header = self._header(self._data[:8].tobytes(), max_header_bytes)
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict):
            raise self._problem(
                "metadata", f"header.__metadata__: expected an object, got {_kind(metadata)}"
            )
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise self._problem(
                    "metadata",
                    f"header.__metadata__[{key!r}]: expected a string, got {_kind(value)}",
                    key=key,
                )
        if len(header) > MAX_TENSORS:
            raise self._problem(
                "too_many_tensors",
                f"header: {len(header)} tensors, more than the limit of {MAX_TENSORS}",
                count=len(header), limit=MAX_TENSORS,
            )
        self.metadata: dict[str, str] = metadata
        self._raw_entries = header
        self._entries: dict[str, TensorEntry] | None = None

    def _problem(self, code: str, message: str, **details) -> Exception:
        return self.fail(Problem(code, message, details))

    def _header(self, head: bytes, limit: int) -> dict:
        """The header's JSON object, its length field checked against the file and limit."""
        size = self.size
        if size < 8:
            raise self._problem(
                "short",
                f"header length: the file has {size} bytes, fewer than the 8 of the header "
                "length",
                size=size, head=head,
            )
        (n,) = struct.unpack("<Q", head)
        details = {"n": n, "size": size, "after": size - 8, "limit": limit, "head": head}
        message = (f"header length: {n} bytes, but the file has {size - 8} after the length "
                   f"(and the limit is {limit})")
        if n > limit:
            raise self._problem("length_over_limit", message, **details)
        if 8 + n > size:
            raise self._problem("length_beyond_file", message, **details)
        if n < 2:  # "{}" is the shortest header
            raise self._problem("length_too_small", message, **details)
        try:
            header = _json_document(self._data[8 : 8 + n].tobytes(), limit)
        except _Refused as exc:
            raise self._problem("json", f"header: {exc}", reason=str(exc), head=head) from None
        if not isinstance(header, dict):
            raise self._problem(
                "not_object", f"header: expected a JSON object, got {_kind(header)}", head=head
            )
        self._data_start = 8 + n
        self.data_size = size - 8 - n
        return header

    def entries(self) -> dict[str, TensorEntry]:
        """Every tensor's entry, checked: known dtype, at most MAX_NDIM non-negative sizes,
        data offsets inside the file holding exactly the shape's bytes, and the tensors filling
        the data without overlaps or gaps (as safetensors requires), from a data start where
        the safetensors writer puts it."""
        if self._entries is None:
            self._check_alignment()
            entries = {name: self._entry(name, entry) for name, entry in self._raw_entries.items()}
            self._check_tiling(entries)
            self._check_checksum()
            self._entries = entries
        return self._entries

    def tensors(self) -> dict[str, np.ndarray]:
        """Every tensor as a read-only array over the file's data (little-endian)."""
        start = self._data_start
        tensors = {}
        for name, entry in self.entries().items():
            raw = self._data[start + entry.begin : start + entry.end]
            dtype = np.dtype(DTYPES[entry.dtype]).newbyteorder("<")
            tensors[name] = raw.view(dtype).reshape(entry.shape)
        return tensors

    def _size(self, value, where: str, code: str, name: str) -> int:
        if value.__class__ is not int or value < 0:
            raise self._problem(
                code, f"{where}: expected a non-negative integer, got {value!r}", name=name
            )
        return value

    def _entry(self, name: str, entry) -> TensorEntry:
        where = f"header[{name!r}]"
        if not isinstance(entry, dict):
            raise self._problem("entry", f"{where}: expected an object, got {_kind(entry)}",
                                name=name)
        fields = {"dtype", "shape", "data_offsets"}
        if set(entry) != fields:
            odd = sorted(set(entry) ^ fields)
            code = "offsets" if odd[0] == "data_offsets" else "entry"
            raise self._problem(
                code,
                f"{where}: expected the fields dtype, shape, data_offsets; {odd[0]!r} "
                f"is {'missing' if odd[0] in fields else 'unknown'}",
                name=name,
            )
        code = entry["dtype"]
        if not isinstance(code, str) or code not in DTYPES:
            raise self._problem(
                "entry", f"{where}.dtype: expected one of {', '.join(DTYPES)}, got {code!r}",
                name=name,
            )
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > MAX_NDIM:
            raise self._problem(
                "entry",
                f"{where}.shape: expected a list of at most {MAX_NDIM} sizes, got {_kind(shape)}",
                name=name,
            )
        shape = tuple(self._size(d, f"{where}.shape[{i}]", "entry", name)
                      for i, d in enumerate(shape))
        offsets = entry["data_offsets"]
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise self._problem(
                "offsets", f"{where}.data_offsets: expected [begin, end], got {offsets!r}",
                name=name,
            )
        begin = self._size(offsets[0], f"{where}.data_offsets[0]", "offsets", name)
        end = self._size(offsets[1], f"{where}.data_offsets[1]", "offsets", name)
        if begin > end or end > self.data_size:
            raise self._problem(
                "offsets" if begin > end else "beyond_data",
                f"{where}.data_offsets: [{begin}, {end}] is not a range inside the "
                f"{self.data_size} data bytes of the file",
                name=name, end=end, data_size=self.data_size,
            )
        nbytes = math.prod(shape) * np.dtype(DTYPES[code]).itemsize
        if nbytes != end - begin:
            raise self._problem(
                "entry",
                f"{where}: shape {list(shape)} of {code} is {nbytes} bytes, but "
                f"data_offsets hold {end - begin}",
                name=name,
            )
        return TensorEntry(code, shape, begin, end)

    def _check_alignment(self) -> None:
        start = self._data_start
        if start % DATA_ALIGNMENT:
            raise self._problem(
                "misaligned",
                f"header length: the data starts at byte {start} of the file, not at a multiple "
                f"of {DATA_ALIGNMENT} as safetensors writes it (the header's padding): the "
                f"header length field is off, or bytes were inserted or removed before the "
                f"data, which would shift every tensor",
                start=start,
            )

    def _check_checksum(self) -> None:
        expected = self.metadata.get(CHECKSUM_KEY)
        if expected is None:
            return
        found = checksum(self._data[self._data_start :])
        if found != expected:
            raise self._problem(
                "checksum",
                f"data: its CRC-32 is {found}, but the metadata's {CHECKSUM_KEY} says "
                f"{expected[:16]!r}: the data was changed or shifted after it was written",
                found=found, expected=expected,
            )

    def _check_tiling(self, entries: dict) -> None:
        ranges = sorted((e.begin, e.end, name) for name, e in entries.items())
        for (_, end, name), (begin, _, other) in itertools.pairwise(ranges):
            if begin < end:
                raise self._problem(
                    "overlap", f"header[{other!r}].data_offsets: its data overlaps {name!r}'s",
                    name=other, other=name,
                )
            if begin > end:
                raise self._problem(
                    "gap",
                    f"header[{other!r}].data_offsets: it starts at byte {begin} of the data, "
                    f"but {name!r} ends at {end} (the tensors must fill the data exactly)",
                    name=other,
                )
        first = ranges[0][0] if ranges else 0
        covered = ranges[-1][1] if ranges else 0
        if first != 0 or covered != self.data_size:
            raise self._problem(
                "gap",
                f"data: the tensors span bytes {first} to {covered} of the "
                f"{self.data_size} data bytes (they must fill the data exactly)",
                name=None,
            )


# -- the checksum ember's writers store (runtime/safetensors_writer.py) -------------------


def checksum(data) -> str:
    """The CRC-32 of data (bytes or an array of uint8) as 8 hex digits."""
    return f"{zlib.crc32(memoryview(data)) & 0xFFFFFFFF:08x}"


