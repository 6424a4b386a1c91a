"""TensorBoard's event files, written without TensorBoard: records and their protobufs.

An event file is a sequence of TFRecords (a little-endian u64 length, its masked CRC-32C,
the bytes, their masked CRC-32C), each the serialized `Event` message of TensorFlow's
event.proto. The few messages a SummaryWriter writes are encoded here by field number
(protobuf's wire format: a varint key `field << 3 | wire type`, then the value), so that
TensorBoard reads the files and no protobuf or tensorboard package is needed to write them.

Field numbers, from tensorflow/core/util/event.proto and framework/summary.proto:
    Event: wall_time 1 (double), step 2 (int64), file_version 3, summary 5, session_log 7
    Summary: value 1 (repeated Value)
    Value: tag 1, simple_value 2 (float), image 4, histo 5, tensor 8, metadata 9
    Image: height 1, width 2, colorspace 3, encoded_image_string 4
    HistogramProto: min 1, max 2, num 3, sum 4, sum_squares 5, bucket_limit 6, bucket 7
    SummaryMetadata: plugin_data 1 (PluginData: plugin_name 1, content 2)
    TensorProto: dtype 1, tensor_shape 2, float_val 5, double_val 6, string_val 8
    TensorShapeProto: dim 2 (Dim: size 1); SessionLog: status 1 (START = 1)
"""

from __future__ import annotations

import struct

# -- protobuf's wire format --------------------------------------------------------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 as two's complement, ten bytes
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def int_field(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(int(value))


def double_field(field: int, value: float) -> bytes:
    return _key(field, _FIXED64) + struct.pack("<d", value)


def float_field(field: int, value: float) -> bytes:
    return _key(field, _FIXED32) + struct.pack("<f", value)


def bytes_field(field: int, value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return _key(field, _BYTES) + _varint(len(data)) + data


def packed_doubles(field: int, values) -> bytes:
    return bytes_field(field, struct.pack(f"<{len(values)}d", *values))


# -- the messages ------------------------------------------------------------------------------

DT_FLOAT, DT_DOUBLE, DT_STRING = 1, 2, 7


def event(wall_time: float, step: int = 0, *, file_version: str | None = None,
          summary: bytes | None = None, session_start: bool = False) -> bytes:
    out = double_field(1, wall_time) + int_field(2, step)
    if file_version is not None:
        out += bytes_field(3, file_version)
    if summary is not None:
        out += bytes_field(5, summary)
    if session_start:
        out += bytes_field(7, int_field(1, 1))
    return out


def summary(*values: bytes) -> bytes:
    return b"".join(bytes_field(1, v) for v in values)


def plugin_metadata(plugin_name: str, content: bytes = b"") -> bytes:
    plugin = bytes_field(1, plugin_name) + (bytes_field(2, content) if content else b"")
    return bytes_field(1, plugin)


def value(tag: str, *, simple_value: float | None = None, image: bytes | None = None,
          histo: bytes | None = None, tensor: bytes | None = None,
          metadata: bytes | None = None) -> bytes:
    out = bytes_field(1, tag)
    if simple_value is not None:
        out += float_field(2, simple_value)
    if image is not None:
        out += bytes_field(4, image)
    if histo is not None:
        out += bytes_field(5, histo)
    if tensor is not None:
        out += bytes_field(8, tensor)
    if metadata is not None:
        out += bytes_field(9, metadata)
    return out


def image(height: int, width: int, colorspace: int, png: bytes) -> bytes:
    return (int_field(1, height) + int_field(2, width) + int_field(3, colorspace)
            + bytes_field(4, png))


def histogram(minimum: float, maximum: float, num: float, total: float, sum_squares: float,
              bucket_limit, bucket) -> bytes:
    return (double_field(1, minimum) + double_field(2, maximum) + double_field(3, num)
            + double_field(4, total) + double_field(5, sum_squares)
            + packed_doubles(6, bucket_limit) + packed_doubles(7, bucket))


def tensor(dtype: int, dims: tuple, *, strings=(), floats=(), doubles=()) -> bytes:
    shape = b"".join(bytes_field(2, int_field(1, n)) for n in dims)
    out = int_field(1, dtype) + bytes_field(2, shape)
    if floats:
        out += bytes_field(5, struct.pack(f"<{len(floats)}f", *floats))
    if doubles:
        out += packed_doubles(6, doubles)
    for s in strings:
        out += bytes_field(8, s)
    return out


# -- TFRecord framing --------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecords use."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord holding data."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked(crc32c(length))) + data
            + struct.pack("<I", _masked(crc32c(data))))
