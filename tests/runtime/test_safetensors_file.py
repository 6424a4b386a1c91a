"""The one safetensors reader behind checkpoints (ember.load) and graph files (runtime.load):
a broken or hostile container is refused by both, each in its own error class and words, and
a valid one is read as read-only arrays over the file, nothing copied or executed."""

import io
import json
import struct

import ember
import numpy as np
import pytest
from ember import serialization
from ember.runtime import FormatError, graph_file
from ember.runtime.graph_file import read_container
from ember.runtime.safetensors_file import SafetensorsFile, parse_json


def _checkpoint() -> bytes:
    buffer = io.BytesIO()
    ember.save({"w": ember.randn(2, 3), "i": ember.arange(4)}, buffer)
    return buffer.getvalue()


def _split(blob: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(header, data: bytes) -> bytes:
    """A container as the safetensors writer lays it out: the header padded with spaces so the
    data starts at a multiple of 8."""
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _edited(edit) -> bytes:
    header, data = _split(_checkpoint())
    edited = edit(header, data)
    return edited if isinstance(edited, bytes) else _join(header, data)


def _set(entry: str, field: str, value):
    def edit(header, data):
        header[entry][field] = value

    return edit


def _overlap(header, data):
    header["i"]["data_offsets"] = [0, 32]  # int64 x 4 over the start of the float32 tensor
    header["w"]["data_offsets"] = [8, 32]


def _cut_padding(header, data):
    # a header length one byte short of its padding: the JSON still parses, and the data would
    # start one byte early, every tensor read one byte off; the data's start shows it
    text = json.dumps(header).encode()
    pad = -(8 + len(text)) % 8 or 8
    return struct.pack("<Q", len(text) + pad - 1) + text + b" " * pad + data


def _cut_padding_and_tail(header, data):
    # as above, and the file's last byte cut so that the tensors still fill the data exactly
    return _cut_padding(header, data)[:-1]


def _shifted_data(header, data):
    # a byte inserted before the data and the last one cut: the header is untouched and the
    # tensors fill the data, every one read a byte off; the data's CRC-32 shows it
    return _join(header, b" " + data[:-1])


HOSTILE = {
    "header length over the limit": (
        lambda h, d: struct.pack("<Q", 1 << 40) + b"{}", "length_over_limit"),
    "header length beyond the file": (
        lambda h, d: struct.pack("<Q", 4096) + b"{}", "length_beyond_file"),
    "header length too small for JSON": (
        lambda h, d: struct.pack("<Q", 1) + b"{", "length_too_small"),
    "fewer than 8 bytes": (lambda h, d: b"\x80\x04", "short"),
    "not JSON": (lambda h, d: _join("{not json", d), "json"),
    "a duplicate key": (lambda h, d: _join('{"a": {}, "a": {}}', d), "json"),
    "NaN": (lambda h, d: _join('{"a": NaN}', d), "json"),
    "JSON nested too deep": (lambda h, d: _join("[" * 5000 + "]" * 5000, d), "json"),
    "a header that is a list": (lambda h, d: _join("[]", d), "not_object"),
    "a metadata value that is not a string": (
        lambda h, d: h["__metadata__"].update(version=1), "metadata"),
    "an unknown dtype": (_set("w", "dtype", "F8_E4M3"), "entry"),
    "a negative size": (_set("w", "shape", [-2, 3]), "entry"),
    "a shape the bytes do not hold": (_set("w", "shape", [3, 3]), "entry"),
    "an extra field": (_set("w", "code", "__import__('os').system('x')"), "entry"),
    "offsets that are not a range": (_set("w", "data_offsets", [24, 0]), "offsets"),
    "offsets that are not integers": (_set("w", "data_offsets", [0, "24"]), "offsets"),
    "offsets past the end": (_set("w", "data_offsets", [0, 10**9]), "beyond_data"),
    "overlapping tensors": (_overlap, "overlap"),
    "bytes after the last tensor": (lambda h, d: _join(h, d + b"\x00" * 8), "gap"),
    "a header length cut into the padding": (_cut_padding, "misaligned"),
    "the same, and the file's tail cut to match": (_cut_padding_and_tail, "misaligned"),
    "the data shifted by a byte": (_shifted_data, "checksum"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_container_is_refused_by_both_readers_in_their_own_words(case, tmp_path):
    edit, code = HOSTILE[case]
    blob = _edited(edit)
    problems = []

    def record(problem):
        problems.append(problem)
        return ValueError(problem.message)

    with pytest.raises(ValueError):
        file = SafetensorsFile(blob, fail=record, max_header_bytes=graph_file.MAX_HEADER_BYTES)
        file.tensors()
    assert [p.code for p in problems] == [code]
    message = problems[0].message

    # a checkpoint: a CheckpointError naming the file
    with pytest.raises(serialization.CheckpointError, match=r"^ember\.load\('BytesIO'\): "):
        ember.load(io.BytesIO(blob))

    # a graph file: a FormatError whose words are the reader's, naming the field
    path = tmp_path / "hostile.ember"
    path.write_bytes(blob)
    with pytest.raises(FormatError) as info:
        read_container(str(path))
    assert str(info.value) == message


def test_a_checkpoint_words_the_header_problems_its_own_way():
    blob = _edited(_set("w", "data_offsets", [0, 10**9]))
    with pytest.raises(serialization.CheckpointError, match="truncated: tensor 'w' needs bytes"):
        ember.load(io.BytesIO(blob))
    with pytest.raises(serialization.CheckpointError, match="looks like a pickle"):
        ember.load(io.BytesIO(b"\x80\x04" + b"\x00" * 40))


def test_the_graph_files_header_limit_is_its_own(tmp_path, monkeypatch):
    path = tmp_path / "big.ember"
    path.write_bytes(_checkpoint())
    monkeypatch.setattr(graph_file, "MAX_HEADER_BYTES", 64)
    with pytest.raises(FormatError, match="the limit is 64"):
        read_container(str(path))


def test_a_valid_container_is_read_as_read_only_arrays_over_the_file(tmp_path):
    blob = _checkpoint()
    path = tmp_path / "ok.ember"
    path.write_bytes(blob)
    for source in (blob, str(path)):
        file = SafetensorsFile(source)
        assert file.metadata["format"] == "ember.checkpoint"
        assert {name: (e.dtype, e.shape) for name, e in file.entries().items()} == {
            "w": ("F32", (2, 3)),
            "i": ("I64", (4,)),
        }
        tensors = file.tensors()
        np.testing.assert_array_equal(tensors["i"], np.arange(4))
        assert tensors["w"].dtype == np.float32 and tensors["w"].shape == (2, 3)
        assert not any(t.flags.writeable for t in tensors.values())
    array = SafetensorsFile(str(path)).tensors()["w"]
    chain = []
    while isinstance(array, np.ndarray):
        chain.append(array)
        array = array.base
    assert any(isinstance(a, np.memmap) for a in chain)


def test_an_empty_container_holds_no_tensors():
    file = SafetensorsFile(_join({}, b""))
    assert file.metadata == {} and file.tensors() == {}


def test_entries_are_checked_only_when_asked_for():
    # the caller reads the metadata first (a checkpoint checks its format before its tensors)
    blob = _edited(_set("w", "dtype", "F8_E4M3"))
    file = SafetensorsFile(blob)
    assert file.metadata["format"] == "ember.checkpoint"
    with pytest.raises(ValueError, match=r"header\['w'\]\.dtype: expected one of"):
        file.entries()


def test_parse_json_raises_the_callers_error_naming_where():
    with pytest.raises(FormatError, match=r"^metadata\.graph: JSON: the key 'a' appears twice"):
        parse_json('{"a": 1, "a": 2}', "metadata.graph", error=FormatError)
    with pytest.raises(ValueError, match=r"^doc: 12 bytes of JSON, more than the limit of 4"):
        parse_json('{"a": [1, 2]}'[:12], "doc", limit=4)
