"""The loader against broken and hostile graph files: whatever the bytes, loading ends in a
FormatError (or, for a change that leaves a valid file, a program that runs), never another
exception, a crash or a hang."""

import json
import struct

import ember
import numpy as np
import pytest
from ember import runtime
from ember.runtime import FormatError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES = settings(
    max_examples=350, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A small valid file: its bytes, header dict and data bytes."""
    weight = ember.tensor([[1.0, -2.0], [0.5, 3.0]])

    def fn(x):
        return (x @ weight).relu().reshape(x.shape[0] * 2)

    path = tmp_path_factory.mktemp("fuzz") / "base.ember"
    ember.export(fn, ember.randn(3, 2), path, dynamic_dims={0: {0: "n"}})
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    return raw, header, raw[8 + size :]


def _load(tmp_path, data: bytes, name="case.ember"):
    path = tmp_path / name
    path.write_bytes(data)
    program = runtime.load(path)
    program(np.ones((2, 2), np.float32))  # a file that loads also runs
    return program


def _pack(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _expect_format_error(tmp_path, data: bytes):
    with pytest.raises(FormatError):
        _load(tmp_path, data)


def _format_error_or_valid(tmp_path, data: bytes):
    try:
        _load(tmp_path, data)
    except FormatError:
        pass
    except ember.EmberError as exc:
        # a program that loads but whose inputs no longer fit (2, 2) is fine
        assert "input" in str(exc), exc


def test_the_valid_file_loads(valid, tmp_path):
    _load(tmp_path, valid[0])


@CASES
@given(st.data())
def test_truncated_files_are_refused(valid, tmp_path, data):
    raw = valid[0]
    cut = data.draw(st.integers(0, len(raw) - 1))
    _expect_format_error(tmp_path, raw[:cut])


@CASES
@given(st.data())
def test_bit_flips_give_a_format_error_or_a_valid_file(valid, tmp_path, data):
    raw = bytearray(valid[0])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
    _format_error_or_valid(tmp_path, bytes(raw))


@CASES
@given(st.data())
def test_wrong_header_lengths_are_refused(valid, tmp_path, data):
    raw = valid[0]
    (true_size,) = struct.unpack("<Q", raw[:8])
    size = data.draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, len(raw) + 8)))
    if size == true_size:
        size += 1
    data = struct.pack("<Q", size) + raw[8:]
    if size < true_size and not raw[8 + size : 8 + true_size].strip():
        _format_error_or_valid(tmp_path, data)  # only the header's padding spaces were cut
    else:
        _expect_format_error(tmp_path, data)


_SIZES = st.one_of(
    st.integers(-(2**63), 2**64),
    st.integers(-2, 64),
    st.floats(),
    st.text(),
    st.booleans(),
    st.none(),
)


@CASES
@given(st.data())
def test_tensor_entries_with_bad_fields_are_refused(valid, tmp_path, data):
    _, header, payload = valid
    header = json.loads(json.dumps(header))
    name = data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    entry = header[name]
    field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "extra"]))
    if field == "dtype":
        entry["dtype"] = data.draw(
            st.one_of(
                st.sampled_from(["F32x", "F8_E5M2", "F8", "I128", "c8", "", "f32"]), st.integers()
            )
        )
    elif field == "shape":
        new = data.draw(st.lists(_SIZES, max_size=40))
        if new == entry["shape"]:
            new.append(7)
        entry["shape"] = new
    elif field == "data_offsets":
        new = data.draw(st.lists(_SIZES, max_size=3))
        if new == entry["data_offsets"]:
            new.append(0)
        entry["data_offsets"] = new
    elif field == "drop":
        del entry[data.draw(st.sampled_from(sorted(entry)))]
    else:
        entry[data.draw(st.text(min_size=1))] = 1
    _expect_format_error(tmp_path, _pack(header, payload))


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


_HOSTILE_JSON = st.one_of(
    st.integers(65, 5000).map(_deep),
    st.integers(65, 300).map(lambda d: '{"a":' * d + "1" + "}" * d),
    st.just('{"a": NaN}'),
    st.just('{"a": 1, "a": 2}'),
    st.just("\ud800"),
    st.text(max_size=30),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
        max_leaves=20,
    ).map(json.dumps),
)


@CASES
@given(st.data())
def test_bad_metadata_documents_are_refused(valid, tmp_path, data):
    _, header, payload = valid
    header = json.loads(json.dumps(header))
    key = data.draw(st.sampled_from(["graph", "signature", "ops", "examples"]))
    header["__metadata__"][key] = data.draw(_HOSTILE_JSON.filter(lambda s: s != "[]"))
    _expect_format_error(tmp_path, _pack(header, payload))


@CASES
@given(st.data())
def test_unknown_versions_formats_and_ops_are_refused(valid, tmp_path, data):
    _, header, payload = valid
    header = json.loads(json.dumps(header))
    metadata = header["__metadata__"]
    what = data.draw(st.sampled_from(["version", "format", "ops", "missing", "not_string"]))
    if what == "version":
        metadata["schema_version"] = data.draw(
            st.one_of(
                st.integers(2, 10**12).map(lambda m: f"{m}.0"),
                st.text(max_size=12),
                st.just("0.9"),
                st.just("1"),
                st.just("1.0.0"),
                st.just("01.0"),
            )
        )
    elif what == "format":
        metadata["format"] = data.draw(st.text(max_size=20).filter(lambda s: s != "ember.graph"))
    elif what == "ops":
        extra = data.draw(
            st.lists(
                st.text(min_size=1, max_size=12).map(lambda s: "x_" + s), min_size=1, max_size=5
            )
        )
        metadata["ops"] = json.dumps(json.loads(metadata["ops"]) + extra)
    elif what == "missing":
        del metadata[
            data.draw(
                st.sampled_from(
                    ["format", "schema_version", "ember_version", "graph", "ops", "signature"]
                )
            )
        ]
    else:
        header["__metadata__"] = data.draw(
            st.one_of(st.just([]), st.just("x"), st.just({"format": 1}), st.just({"graph": None}))
        )
    _expect_format_error(tmp_path, _pack(header, payload))


@CASES
@given(st.data())
def test_graph_edits_are_refused_or_consistent(valid, tmp_path, data):
    _, header, payload = valid
    header = json.loads(json.dumps(header))
    graph = json.loads(header["__metadata__"]["graph"])
    node = data.draw(st.sampled_from(graph["nodes"]))
    field = data.draw(st.sampled_from(["op", "inputs", "attrs", "outputs"]))
    node[field] = data.draw(
        st.recursive(
            st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3),
            max_leaves=12,
        )
    )
    header["__metadata__"]["graph"] = json.dumps(graph)
    _format_error_or_valid(tmp_path, _pack(header, payload))
