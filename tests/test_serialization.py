"""ember.save / ember.load: nested checkpoints in one safetensors file that round-trip exactly,
and that refuse broken or hostile files with a clear CheckpointError, executing nothing."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import zipfile
from collections import OrderedDict, namedtuple

import ember
import numpy as np
import pytest
import safetensors.numpy
from ember import serialization

ALL_DTYPES = [
    ember.float16,
    ember.float32,
    ember.float64,
    ember.int8,
    ember.int16,
    ember.int32,
    ember.int64,
    ember.uint8,
    ember.bool,
]


def random_tensor(dtype, shape, rng) -> ember.Tensor:
    if dtype == ember.bool:
        array = rng.random(shape) > 0.5
    elif dtype.is_floating_point:
        array = rng.standard_normal(shape).astype(dtype.np)
    else:
        info = np.iinfo(dtype.np)
        array = rng.integers(info.min, info.max, size=shape, dtype=dtype.np, endpoint=True)
    return ember.from_numpy(np.asarray(array, dtype=dtype.np))


def to_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    ember.save(obj, buffer)
    return buffer.getvalue()


def from_bytes(blob: bytes, **kwargs):
    return ember.load(io.BytesIO(blob), **kwargs)


def split(blob: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data


def tampered(obj, edit) -> bytes:
    """The checkpoint of obj after edit(header, structure) changed its header."""
    header, data = split(to_bytes(obj))
    structure = json.loads(header["__metadata__"]["structure"])
    edit(header, structure)
    header["__metadata__"]["structure"] = json.dumps(structure)
    return join(header, data)


def assert_same(a, b):
    """a and b hold the same Python structure (exact types) and equal tensors."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, ember.Tensor):
        assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
        assert a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert type(key) is type(next(k for k in b if k == key))
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b
        if isinstance(a, float):
            assert str(a) == str(b)  # keeps -0.0 and every digit


# -- round trips -----------------------------------------------------------------------------


def test_nested_structure_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    obj = {
        "zeta": random_tensor(ember.float32, (2, 3), rng),
        "alpha": [
            1,
            2.5,
            True,
            False,
            None,
            "text",
            b"\x00\xffbytes",
            0,
            -0.0,
            1e300,
            float("inf"),
            float("-inf"),
            float("nan"),
            2**80,
            -(2**70),
        ],
        "tuple": (1, (2.0, [3, ("deep", None)]), ()),
        "list": [[], {}, OrderedDict()],
        7: "int key",
        2.5: "float key",
        None: "none key",
        True: "bool key",
        ("a", 1): "tuple key",
        "dtypes": [ember.float16, ember.int64, ember.bool],
        "devices": (ember.device("cpu"), ember.device("cuda", 1)),
        "size": ember.Size([3, 0, 2]),
        "numpy": np.arange(6, dtype=np.int16).reshape(2, 3),
    }
    path = tmp_path / "nested.ember"
    ember.save(obj, path)
    assert_same(ember.load(path), obj)
    assert_same(from_bytes(to_bytes(obj)), obj)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_every_dtype_round_trips(dtype):
    rng = np.random.default_rng(1)
    tensors = [random_tensor(dtype, shape, rng) for shape in [(5, 4), (), (0,), (3, 0, 2)]]
    loaded = from_bytes(to_bytes(tensors))
    assert_same(loaded, tensors)
    assert [tuple(t.shape) for t in loaded] == [(5, 4), (), (0,), (3, 0, 2)]


def test_special_float_values_and_zero_dimensional_tensors():
    t = ember.tensor([float("nan"), float("inf"), -0.0, 65504.0], dtype=ember.float16)
    scalar = ember.tensor(3.25, dtype=ember.float64)
    loaded = from_bytes(to_bytes({"t": t, "s": scalar}))
    assert loaded["t"].numpy().tobytes() == t.numpy().tobytes()
    assert loaded["s"].ndim == 0 and loaded["s"].item() == 3.25


def test_non_contiguous_tensors_are_saved_contiguous():
    base = ember.arange(24, dtype=ember.float32).reshape(4, 6)
    views = {
        "transposed": base.t(),
        "strided": base[::2, 1::3],
        "expanded": ember.tensor([1, 2, 3]).expand(4, 3),
    }
    assert not any(v.is_contiguous() for v in views.values())
    loaded = from_bytes(to_bytes(views))
    for name, view in views.items():
        assert loaded[name].is_contiguous()
        np.testing.assert_array_equal(loaded[name].numpy(), view.numpy())


def test_loaded_tensors_own_writable_memory():
    original = ember.zeros(3)
    loaded = from_bytes(to_bytes([original]))[0]
    loaded.add_(1)  # the reader's buffers are read-only; a loaded tensor must not be
    assert loaded.tolist() == [1.0, 1.0, 1.0] and original.tolist() == [0.0, 0.0, 0.0]


def test_state_dict_is_a_plain_safetensors_state_dict_too(tmp_path):
    state = OrderedDict(
        [
            ("encoder.weight", ember.randn(4, 3)),
            ("encoder.bias", ember.zeros(4)),
            ("head.weight", ember.randn(2, 4)),
            ("step", ember.tensor(10)),
        ]
    )
    path = tmp_path / "model.safetensors"
    ember.save(state, path)
    loaded = ember.load(path)
    assert type(loaded) is OrderedDict and list(loaded) == list(state)
    assert_same(loaded, state)
    # any safetensors reader sees the state dict under its own names
    raw = safetensors.numpy.load_file(str(path))
    assert set(raw) == set(state)
    np.testing.assert_array_equal(raw["head.weight"], state["head.weight"].numpy())


def test_parameters_and_requires_grad_are_kept():
    from ember.nn import Parameter

    param = Parameter(ember.randn(3, 2))
    frozen = Parameter(ember.randn(2), requires_grad=False)
    leaf = ember.ones(2, requires_grad=True)
    nonleaf = leaf * 2
    loaded = from_bytes(
        to_bytes(
            {"p": param, "f": frozen, "leaf": leaf, "nonleaf": nonleaf, "plain": ember.ones(1)}
        )
    )
    assert type(loaded["p"]) is Parameter and loaded["p"].requires_grad
    assert type(loaded["f"]) is Parameter and not loaded["f"].requires_grad
    assert type(loaded["leaf"]) is ember.Tensor and loaded["leaf"].requires_grad
    assert loaded["nonleaf"].requires_grad and loaded["nonleaf"].is_leaf
    assert not loaded["plain"].requires_grad
    np.testing.assert_array_equal(loaded["p"].detach().numpy(), param.detach().numpy())


def test_save_and_load_through_open_files(tmp_path):
    obj = {"w": ember.randn(3), "n": 4}
    path = tmp_path / "f.ember"
    with open(path, "wb") as f:
        ember.save(obj, f)
    with open(path, "rb") as f:
        assert_same(ember.load(f), obj)
    assert_same(ember.load(str(path)), obj)
    with open(path, "r") as f, pytest.raises(TypeError, match="text mode"):
        ember.load(f)
    with pytest.raises(TypeError, match="text mode"):
        ember.save(obj, io.StringIO())
    with pytest.raises(TypeError, match="path or a binary file"):
        ember.save(obj, 42)


# -- map_location ------------------------------------------------------------------------------


def saved_on_cuda() -> bytes:
    """A checkpoint whose tensor says it was saved from cuda:0 (made without a GPU)."""

    def edit(header, structure):
        structure["root"]["items"][0][1]["device"] = "cuda:0"

    return tampered({"w": ember.arange(3.0)}, edit)


def test_map_location_puts_tensors_on_the_cpu():
    blob = to_bytes({"w": ember.arange(3.0)})
    for location in (None, "cpu", ember.device("cpu"), {"cuda:0": "cpu"}):
        w = from_bytes(blob, map_location=location)["w"]
        assert w.device == ember.device("cpu") and w.tolist() == [0.0, 1.0, 2.0]
    for location in ("cpu", ember.device("cpu"), {"cuda:0": "cpu"}):
        w = from_bytes(saved_on_cuda(), map_location=location)["w"]
        assert w.device == ember.device("cpu") and w.tolist() == [0.0, 1.0, 2.0]


def test_map_location_callable_sees_each_tensor_and_its_saved_device():
    seen = []

    def relocate(tensor, location):
        seen.append((tuple(tensor.shape), location))
        return tensor * 10 if location == "cuda:0" else None

    loaded = from_bytes(saved_on_cuda(), map_location=relocate)
    assert seen == [((3,), "cuda:0")] and loaded["w"].tolist() == [0.0, 10.0, 20.0]
    assert from_bytes(to_bytes([ember.ones(1)]), map_location=relocate)[0].tolist() == [1.0]


def test_a_cuda_checkpoint_without_a_gpu_asks_for_map_location():
    if ember.cuda.is_available():
        assert from_bytes(saved_on_cuda())["w"].device.type == "cuda"
        return
    with pytest.raises(serialization.CheckpointError, match="saved on cuda:0.*map_location='cpu'"):
        from_bytes(saved_on_cuda())
    with pytest.raises(serialization.CheckpointError, match="mapped to cuda, but no CUDA device"):
        from_bytes(to_bytes([ember.ones(1)]), map_location="cuda")


# -- refusing what cannot be saved ---------------------------------------------------------


def test_save_refuses_objects_it_cannot_describe():
    Pair = namedtuple("Pair", "a b")

    class Custom:
        pass

    cases = [
        ({"model": Custom()}, r"obj\['model'\] is .*Custom.*cannot be found by its name"),
        ({"f": lambda x: x}, r"obj\['f'\] is .*lambda.*cannot be found by its name"),
        ([Pair(1, 2)], "Pair"),
        ({"x": np.float32(1)}, r"\.item\(\)"),
        ({"f": len.__call__}, "method-wrapper"),
        ({frozenset([1]): 1}, "dict key"),
        ({"m": os}, "module"),
    ]
    for obj, message in cases:
        with pytest.raises(TypeError, match=message):
            to_bytes(obj)


def test_save_refuses_cycles_and_excessive_nesting():
    cyclic = [1]
    cyclic.append(cyclic)
    with pytest.raises(TypeError, match="cycle"):
        to_bytes(cyclic)
    deep = []
    for _ in range(serialization.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(TypeError, match="nested deeper"):
        to_bytes(deep)


def test_shared_objects_are_not_cycles():
    t = ember.ones(2)
    shared = [1, 2]
    loaded = from_bytes(to_bytes({"a": [t, t], "b": (shared, shared)}))
    assert_same(loaded, {"a": [t, t], "b": (shared, shared)})


# -- refusing broken and hostile files -------------------------------------------------------


def refused(blob: bytes, message: str) -> serialization.CheckpointError:
    with pytest.raises(serialization.CheckpointError, match=message) as info:
        from_bytes(blob)
    assert isinstance(info.value, ember.EmberError) and isinstance(info.value, RuntimeError)
    return info.value


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    rng = np.random.default_rng(2)
    for size in (0, 5, 100, 5000):
        blob = rng.bytes(size)
        if size < 8:
            refused(blob, "not a safetensors file")
        else:
            refused(blob, "not a safetensors file|truncated")
    path = tmp_path / "noise.bin"
    path.write_bytes(rng.bytes(1000))
    with pytest.raises(serialization.CheckpointError, match="noise.bin"):
        ember.load(path)


def test_truncated_files_are_refused(tmp_path):
    blob = to_bytes({"w": ember.randn(100), "b": ember.randn(10)})
    n = int.from_bytes(blob[:8], "little")
    refused(blob[: 8 + n // 2], "truncated")
    refused(blob[: 8 + n + 10], "truncated")
    refused(blob[:-1], "truncated")
    path = tmp_path / "cut.ember"
    path.write_bytes(blob[:-4])
    with pytest.raises(serialization.CheckpointError, match="truncated"):
        ember.load(path)


def test_tampered_header_length_is_refused():
    blob = to_bytes({"w": ember.randn(4)})
    n = int.from_bytes(blob[:8], "little")
    refused((2**40).to_bytes(8, "little") + blob[8:], "over the .* limit")
    refused((len(blob)).to_bytes(8, "little") + blob[8:], "truncated")
    refused((n - 3).to_bytes(8, "little") + blob[8:], "not valid JSON")


def test_tensors_that_do_not_fill_the_data_exactly_are_refused(tmp_path):
    blob = to_bytes({"w": ember.randn(4), "i": ember.arange(3)})
    refused(blob + b"\x00" * 8, "fill the data exactly")
    header, data = split(blob)
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8 or 8)
    # a header length cut into its padding: the JSON parses, every tensor would be read a
    # byte off
    refused((len(text) - 1).to_bytes(8, "little") + text + data, "data starts at byte")
    path = tmp_path / "long.ember"
    path.write_bytes(blob + b"\x00")
    with pytest.raises(serialization.CheckpointError, match="long.ember"):
        ember.load(path)


def test_tampered_tensor_entries_are_refused_naming_the_field():
    def edit(field, value):
        return lambda header, structure: header["w"].update({field: value})

    obj = {"w": ember.randn(2, 3)}
    refused(tampered(obj, edit("dtype", "F8_E4M3")), r"header\['w'\]\.dtype: expected one of")
    refused(tampered(obj, edit("shape", [3, 3])), r"shape \[3, 3\] of F32 is 36 bytes")
    refused(tampered(obj, edit("data_offsets", [24, 0])), "no valid data_offsets")
    refused(tampered(obj, edit("code", "__import__('os')")), "'code' is unknown")


def test_oversized_metadata_is_refused_before_parsing(monkeypatch):
    blob = to_bytes({"names": ["x" * 1000] * 50})
    monkeypatch.setattr(serialization, "MAX_HEADER_BYTES", 4096)
    refused(blob, "over the 4096 limit")
    # and saving refuses to write what loading would refuse
    with pytest.raises(TypeError, match="over the 4096 that ember.load accepts"):
        to_bytes({"names": ["x" * 1000] * 50})
    with pytest.raises(TypeError, match="over the 4096 that ember.load accepts"):
        to_bytes({f"tensor {i}": ember.zeros(1) for i in range(100)})


def test_a_safetensors_file_that_is_not_an_ember_checkpoint_is_refused():
    plain = safetensors.numpy.save({"w": np.zeros(2, np.float32)}, metadata={"format": "pt"})
    refused(plain, "not an ember checkpoint.*'pt'")
    refused(safetensors.numpy.save({"w": np.zeros(2, np.float32)}), "not an ember checkpoint")


def test_tampered_metadata_is_refused():
    obj = {"w": ember.randn(2, 3), "n": [1, 2]}

    def with_metadata(**changes):
        header, data = split(to_bytes(obj))
        header["__metadata__"].update(changes)
        return join(header, data)

    refused(with_metadata(version="3"), "version '3'")
    refused(with_metadata(structure="{not json"), "structure metadata is not valid JSON")
    refused(with_metadata(structure='{"root": 1, "extra": 2}'), "one field, 'root'")
    refused(with_metadata(structure="[" * 100000 + "]" * 100000), "not valid JSON")

    cases = [
        (lambda h, s: s["root"].update(kind="pickle"), "unknown kind 'pickle'"),
        (lambda h, s: s["root"].pop("kind"), "must be an object with a 'kind'"),
        (lambda h, s: s["root"]["items"][0][1].update(key="nope"), "does not hold"),
        (
            lambda h, s: s["root"]["items"][0][1].update(dtype="float64"),
            "says dtype float64 but the file stores",
        ),
        (lambda h, s: s["root"]["items"][0][1].update(dtype="complex64"), "unknown dtype"),
        (lambda h, s: s["root"]["items"][0][1].update(shape=[3, 2]), "says shape"),
        (lambda h, s: s["root"]["items"][0][1].update(shape="2x3"), "non-negative ints"),
        (lambda h, s: s["root"]["items"][0][1].update(device="tpu"), "invalid tensor"),
        (lambda h, s: s["root"]["items"][0][1].update(code="__import__('os')"), "has fields"),
        (lambda h, s: s["root"]["items"][0][1].pop("requires_grad"), "has fields"),
        (lambda h, s: s["root"]["items"][1][1]["items"][0].update(value="1"), "invalid int"),
        (
            lambda h, s: s["root"]["items"][1][1]["items"][0].update(kind="float", value="x"),
            "invalid float",
        ),
        (lambda h, s: s["root"]["items"][1][1].update(items={"a": 1}), "'items' must be"),
        (
            lambda h, s: s["root"]["items"][1].__setitem__(0, {"kind": "list", "items": []}),
            "cannot be a dict key",
        ),
        (lambda h, s: s["root"]["items"].append(s["root"]["items"][1]), "appears twice"),
        (
            lambda h, s: s["root"]["items"].append(["x", s["root"]["items"][0][1]]),
            r"root.<key>: a structure node must be an object",
        ),
        (
            lambda h, s: s["root"]["items"][1].append({"kind": "none"}),
            r"'items' must be a list of \[key, value\] pairs",
        ),
        (
            lambda h, s: s["root"]["items"].append(
                [{"kind": "str", "value": "x"}, s["root"]["items"][0][1]]
            ),
            "named by two leaves",
        ),
        (lambda h, s: s["root"]["items"].pop(0), "does not name"),
        (lambda h, s: h["w"].update(data_offsets=[0, 10**9]), "truncated"),
    ]
    for edit, message in cases:
        refused(tampered(obj, edit), message)


def test_requires_grad_on_an_integer_tensor_is_refused():
    def edit(header, structure):
        structure["root"]["items"][0][1]["requires_grad"] = True

    refused(tampered({"i": ember.arange(3)}, edit), "int64 tensor cannot require grad")


def test_nesting_deeper_than_the_limit_is_refused():
    def edit(header, structure):
        node = {"kind": "none"}
        for _ in range(serialization.MAX_DEPTH + 5):
            node = {"kind": "list", "items": [node]}
        structure["root"] = node

    refused(tampered({}, edit), "nested deeper than")


class MarkerOnUnpickle:
    """Unpickling this creates the marker file: the proof that a loader ran pickled code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_never_unpickled(tmp_path):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(MarkerOnUnpickle(proof)))
    assert proof.exists()  # the payload is live

    marker = tmp_path / "marker"
    payload = pickle.dumps({"w": MarkerOnUnpickle(marker)})
    path = tmp_path / "evil.pt"
    path.write_bytes(payload)
    with pytest.raises(serialization.CheckpointError, match="pickle"):
        ember.load(path)
    with pytest.raises(serialization.CheckpointError, match="pickle"):
        ember.load(io.BytesIO(payload), weights_only=False)
    assert not marker.exists()


def test_a_torch_save_file_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "model.pt"
    # torch.save's format: a zip archive holding data.pkl (written here without torch)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({"evil": MarkerOnUnpickle(marker)}))
        archive.writestr("model/version", "3\n")
    with pytest.raises(serialization.CheckpointError, match="zip archive"):
        ember.load(path)
    assert not marker.exists()


def test_loading_never_calls_pickle(monkeypatch):
    blob = to_bytes({"w": ember.randn(3), "meta": {"epoch": 3, "name": "run"}})

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr("builtins.eval", forbidden)
    monkeypatch.setattr("builtins.exec", forbidden)
    assert from_bytes(blob)["meta"] == {"epoch": 3, "name": "run"}


# -- the same checkpoint, the same bytes -------------------------------------------------------

DETERMINISM_CHILD = """
import sys
import ember
import numpy as np
rng = np.random.default_rng(7)
obj = {
    "model": {n: ember.tensor(rng.standard_normal((3, 4)).astype(d)) for n, d in
              [("w", np.float32), ("b", np.float64), ("h", np.float16)]},
    "step": 12,
    "mask": ember.tensor(rng.integers(0, 2, 5).astype(bool)),
    "ids": ember.tensor(np.arange(7, dtype=np.int64)),
}
ember.save(obj, sys.argv[1])
"""


def test_saving_the_same_object_gives_the_same_bytes_in_every_process(tmp_path):
    # the safetensors package wrote its metadata in a hash map's per-process order
    import subprocess
    import sys

    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = []
    for seed in ("1", "2", "3"):
        paths.append(tmp_path / f"seed{seed}.ckpt")
        env = dict(os.environ, PYTHONHASHSEED=seed)
        env["PYTHONPATH"] = package_parent + os.pathsep + env.get("PYTHONPATH", "")
        subprocess.run(
            [sys.executable, "-c", DETERMINISM_CHILD, str(paths[-1])],
            check=True,
            env=env,
            cwd=package_parent,
            timeout=120,
        )
    first = paths[0].read_bytes()
    assert all(path.read_bytes() == first for path in paths[1:])
    loaded = ember.load(str(paths[0]))
    assert loaded["step"] == 12 and loaded["model"]["h"].dtype == ember.float16
    obj = {"a": ember.ones(3), "b": {"c": ember.zeros(2, dtype=ember.int8)}}
    assert to_bytes(obj) == to_bytes(obj)


def test_a_checkpoint_is_a_plain_safetensors_file_with_aligned_tensors(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {
        "u8": rng.integers(0, 255, 3).astype(np.uint8),  # odd sizes first in name order
        "f64": rng.standard_normal(5),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i32": rng.integers(-9, 9, (2, 3)).astype(np.int32),
        "scalar": np.float32(2.5).reshape(()),
    }
    ember.save({k: ember.tensor(v) for k, v in arrays.items()}, str(tmp_path / "c.ckpt"))
    loaded = safetensors.numpy.load_file(str(tmp_path / "c.ckpt"))
    assert sorted(loaded) == sorted(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].shape == array.shape and loaded[name].dtype == array.dtype
    header, _ = split((tmp_path / "c.ckpt").read_bytes())
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    for name, entry in header.items():
        if name != "__metadata__":
            assert entry["data_offsets"][0] % arrays[name].dtype.itemsize == 0, name
