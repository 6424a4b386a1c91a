"""Writing safetensors files, byte for byte the same for the same arrays and metadata.

The safetensors package's own writer emits `__metadata__` in its hash map's order, which
changes from process to process, so two saves of one model differed. Here the header is JSON
with sorted metadata keys and no whitespace, the tensors follow in a fixed order (widest
items first, so every tensor's data is aligned to its item size, then by name), and the
header is padded with spaces to a multiple of 8, as the format asks. Arrays are streamed
to the file, never copied into one buffer. Any safetensors reader reads the result
(runtime/safetensors_file.py and the safetensors package are checked against it in the tests).
"""

from __future__ import annotations

import json
import zlib
from typing import BinaryIO

import numpy as np

from .safetensors_file import CHECKSUM_KEY, DTYPE_CODES


class Prepared:
    """A header (with its 8-byte length prefix) and the arrays in the order it lays them out."""

    def __init__(self, header: bytes, arrays: list[np.ndarray]):
        self.header = header
        self.arrays = arrays

    @property
    def header_size(self) -> int:
        return len(self.header) - 8

    @property
    def size(self) -> int:
        return len(self.header) + sum(array.nbytes for array in self.arrays)


def _code(array: np.ndarray, name: str) -> str:
    code = DTYPE_CODES.get(array.dtype.name)
    if code is None:
        raise TypeError(f"tensor {name!r}: dtype {array.dtype} cannot be stored in safetensors")
    return code


def prepare(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Prepared:
    """The header of a safetensors file holding `arrays` (name -> numpy array) and `metadata`
    (str -> str), and the arrays as they will be written: C order, little-endian."""
    laid_out = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
            array = array.copy(order="C")
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        laid_out.append((name, _code(array, name), array))
    laid_out.sort(key=lambda entry: (-entry[2].dtype.itemsize, entry[0]))
    # the data's CRC-32, which ember's reader checks (runtime/safetensors_file.py): a header
    # length off by a byte, or bytes inserted before the data, shift every tensor
    crc = 0
    for _, _, array in laid_out:
        if array.nbytes:
            crc = zlib.crc32(memoryview(array.reshape(-1).view(np.uint8)), crc)
    metadata = {**(metadata or {}), CHECKSUM_KEY: f"{crc & 0xFFFFFFFF:08x}"}
    header: dict = {"__metadata__": {key: metadata[key] for key in sorted(metadata)}}
    offset = 0
    for name, code, array in laid_out:
        end = offset + array.nbytes
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")
    text += b" " * (-len(text) % 8)
    return Prepared(len(text).to_bytes(8, "little") + text, [entry[2] for entry in laid_out])


def write(f: BinaryIO, prepared: Prepared) -> None:
    """Write the prepared file to the binary file f, array by array."""
    f.write(prepared.header)
    for array in prepared.arrays:
        if array.nbytes:
            f.write(memoryview(array.reshape(-1).view(np.uint8)))
