"""Graph files that are well-formed JSON but ask for the wrong thing: nodes that do not fit
their op's declaration, sizes past the memory budget, data shifted against its header; and
the per-size programs a dynamic model keeps."""

import json
import os
import struct
import subprocess
import sys
import time

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember import runtime
from ember.runtime import FormatError, loaded
from ember.runtime.graph_file import read_container, write_container

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _export(tmp_path, name, fn, example, **kwargs) -> str:
    path = str(tmp_path / f"{name}.ember")
    ember.export(fn, example, path, **kwargs)
    return path


def _edit(src: str, dst, edit) -> str:
    """A copy of the graph file at src whose graph JSON (and signature) `edit` changed."""
    container = read_container(src)
    metadata = dict(container.metadata)
    graph = json.loads(metadata["graph"])
    signature = json.loads(metadata["signature"])
    edit(graph, signature)
    metadata["graph"], metadata["signature"] = json.dumps(graph), json.dumps(signature)
    metadata["ops"] = json.dumps(sorted({n["op"] for n in graph["nodes"]}))
    write_container(str(dst), {k: np.array(v) for k, v in container.tensors.items()}, metadata)
    return str(dst)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    ember.manual_seed(0)
    conv = ember.nn.Conv2d(2, 4, 3).eval()
    return {
        "relu_sum": _export(tmp, "relu_sum", lambda x: x.relu().sum(dim=1, keepdim=True),
                            ember.randn(3, 4), dynamic_dims={0: {0: "n"}}),
        "pool": _export(tmp, "pool", lambda x: F.max_pool2d(x, 2), ember.randn(1, 2, 6, 6)),
        "conv": _export(tmp, "conv", conv, ember.randn(1, 2, 6, 6)),
        "one_hot": _export(tmp, "one_hot", lambda i: F.one_hot(i, 4), ember.tensor([1, 2, 3])),
        "shapes": _export(
            tmp, "shapes",
            lambda x: (x.repeat(2, 1), F.pad(x, (1, 1)), x.unsqueeze(0).expand(4, 2, 3).sum(0)),
            ember.randn(2, 3)),
    }


def _node(op):
    def find(graph):
        return next(n for n in graph["nodes"] if n["op"] == op)

    return find


# -- nodes checked against their op's declaration --------------------------------------------

BAD_NODES = [
    ("relu_sum", "relu", lambda n: n["inputs"].append(n["inputs"][0]), "relu takes 1 input, got 2"),
    ("relu_sum", "sum", lambda n: n["attrs"].update(dims=-1), "attr dims is -1"),
    ("relu_sum", "sum", lambda n: n["attrs"].update(keepdim="no"), "attr keepdim is 'no'"),
    ("relu_sum", "sum", lambda n: n["attrs"].pop("keepdim"), "'keepdim' is missing"),
    ("relu_sum", "sum", lambda n: n["attrs"].update(out=1), "sum has no attr 'out'"),
    ("pool", "max_pool2d", lambda n: n["attrs"].update(ceil_mode="yes"), "attr ceil_mode"),
    ("pool", "max_pool2d", lambda n: n["attrs"].update(ceil_mode=1), "attr ceil_mode is 1"),
    ("pool", "max_pool2d", lambda n: n["attrs"].update(ceil_mode=None), "attr ceil_mode"),
    ("pool", "max_pool2d", lambda n: n["attrs"].update(dilation={"tuple": [0, 0]}),
     r"attr dilation is \(0, 0\); expected a list or tuple of 2 ints >= 1"),
    ("pool", "max_pool2d", lambda n: n["attrs"].update(stride={"tuple": [1]}), "attr stride"),
    ("conv", "conv2d", lambda n: n["attrs"].update(groups=True), "attr groups is True"),
    ("conv", "conv2d", lambda n: n["attrs"].update(padding={"tuple": [-1, 0]}), "attr padding"),
    ("one_hot", "one_hot", lambda n: n["attrs"].update(num_classes=-3), "attr num_classes"),
    ("shapes", "repeat", lambda n: n["attrs"].update(repeats={"tuple": [2, -1]}),
     "attr repeats"),
    ("shapes", "pad", lambda n: n["attrs"].update(mode="mirror"), "attr mode is 'mirror'"),
]


@pytest.mark.parametrize("seed,op,edit,message", BAD_NODES,
                         ids=[f"{op}-{m[:24]}" for _, op, _, m in BAD_NODES])
def test_a_node_that_does_not_fit_its_op_is_refused_at_load_by_name(
        files, tmp_path, seed, op, edit, message):
    def change(graph, signature):
        edit(_node(op)(graph))

    path = _edit(files[seed], tmp_path / "bad.ember", change)
    index = [n["op"] for n in json.loads(read_container(path).metadata["graph"])["nodes"]]
    with pytest.raises(FormatError, match=message) as info:
        runtime.load(path)
    assert f"nodes[{index.index(op)}] ({op})" in str(info.value)


@pytest.mark.parametrize("dtype", [["float32"], {"a": 1}, 3, None])
def test_a_signature_dtype_that_is_not_a_name_is_refused(files, tmp_path, dtype):
    def change(graph, signature):
        signature["inputs"][0]["dtype"] = dtype

    path = _edit(files["relu_sum"], tmp_path / "sig.ember", change)
    with pytest.raises(FormatError, match=r"signature.inputs\[0\].dtype: expected one of"):
        runtime.load(path)


def test_the_cli_reports_a_bad_node_without_a_traceback(files, tmp_path):
    def change(graph, signature):
        _node("relu")(graph)["inputs"].append("x")

    path = _edit(files["relu_sum"], tmp_path / "relu2.ember", change)
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    for args in (("info", path), ("run", path, "--input", f"x={tmp_path / 'x.npy'}")):
        result = subprocess.run([sys.executable, "-m", "ember.runtime", *args],
                                capture_output=True, text=True, cwd=os.path.dirname(REPO),
                                timeout=120, check=False)
        assert result.returncode == 1
        assert "nodes[0] (relu): relu takes 1 input, got 2" in result.stderr
        assert "Traceback" not in result.stderr


# -- the memory budget -----------------------------------------------------------------------


def _retyped(graph, signature, op, attrs, shape):
    """Set op's attrs and the output shape the type rule gives for them (so only the budget
    can refuse the file), in the graph and the signature."""
    node = _node(op)(graph)
    node["attrs"].update(attrs)
    node["outputs"][0]["type"]["shape"] = shape
    for i, name in enumerate(graph["outputs"]):
        if name == node["outputs"][0]["name"]:
            signature["outputs"][i]["shape"] = shape


HUGE = [
    ("one_hot", "one_hot", {"num_classes": 2**26}, [3, 2**26]),
    ("shapes", "repeat", {"repeats": {"tuple": [2**30, 1]}}, [2**31, 3]),
    ("shapes", "repeat", {"repeats": {"tuple": [2**40, 1]}}, [2**41, 3]),
    ("shapes", "pad", {"pads": {"tuple": [2**30, 2**30]}}, [2, 2**31 + 3]),
    ("shapes", "pad", {"pads": {"tuple": [0, 2**40]}}, [2, 2**40 + 3]),
]


@pytest.mark.parametrize("seed,op,attrs,shape", HUGE, ids=[f"{h[1]}-{h[3]}" for h in HUGE])
def test_sizes_past_the_budget_are_refused_quickly_by_name(
        files, tmp_path, monkeypatch, seed, op, attrs, shape):
    monkeypatch.setenv("EMBER_MAX_BYTES", "1G")
    path = _edit(files[seed], tmp_path / "huge.ember",
                 lambda g, s: _retyped(g, s, op, attrs, shape))
    start = time.perf_counter()
    with pytest.raises(FormatError, match=rf"\({op}\) makes .*more than the budget of 1.0 GiB"):
        runtime.load(path)
    assert time.perf_counter() - start < 5


def test_an_expand_of_two_to_the_forty_then_a_sum_is_refused(files, tmp_path):
    def change(graph, signature):
        _retyped(graph, signature, "expand", {"shape": {"tuple": [2**40, 2, 3]}}, [2**40, 2, 3])
        node = _node("sum")(graph)
        node["attrs"]["dims"] = {"tuple": [0]}

    path = _edit(files["shapes"], tmp_path / "expand.ember", change)
    start = time.perf_counter()
    # the default budget (half the machine's memory) is far below the 48 TiB it declares
    with pytest.raises(FormatError, match=r"nodes\[\d+\] \(expand\) makes float32\[1099511627776"):
        runtime.load(path)
    assert time.perf_counter() - start < 5


def test_a_symbolic_size_is_checked_at_the_call_with_its_value(files, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_MAX_BYTES", "4M")
    program = runtime.load(files["relu_sum"])
    assert program(np.ones((1000, 4), np.float32)).shape == (1000, 1)
    with pytest.raises(FormatError, match=r"nodes\[0\] \(relu\) makes .* at the sizes \{'n': "
                                          r"1000000\}, more than the budget of 4.0 MiB"):
        program(np.ones((1_000_000, 4), np.float32))


def test_the_budget_comes_from_the_environment_or_the_machine(monkeypatch):
    from ember.runtime.budget import max_bytes

    monkeypatch.setenv("EMBER_MAX_BYTES", "3M")
    assert max_bytes() == 3 << 20
    monkeypatch.setenv("EMBER_MAX_BYTES", "12345")
    assert max_bytes() == 12345
    monkeypatch.setenv("EMBER_MAX_BYTES", "lots")
    with pytest.raises(FormatError, match="EMBER_MAX_BYTES"):
        max_bytes()
    monkeypatch.delenv("EMBER_MAX_BYTES")
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert max_bytes() == memory // 2


# -- data shifted against its header ---------------------------------------------------------


def _parts(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return raw, n


SHIFTS = {
    "length-1, tail cut": lambda raw, n: struct.pack("<Q", n - 1) + raw[8:-1],
    "length+1, a space inserted": lambda raw, n: (struct.pack("<Q", n + 1) + raw[8 : 8 + n]
                                                  + b" " + raw[8 + n :]),
    "two spaces inserted, tail cut": lambda raw, n: raw[: 8 + n] + b"  " + raw[8 + n : -2],
    "one byte inserted in the padding, tail cut": lambda raw, n: (raw[: 8 + n - 1] + b" "
                                                                  + raw[8 + n - 1 : -1]),
}


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_weights_shifted_against_the_header_are_refused(files, tmp_path, shift):
    raw, n = _parts(files["conv"])
    path = tmp_path / "shifted.ember"
    path.write_bytes(SHIFTS[shift](raw, n))
    with pytest.raises(FormatError, match="header length|CRC-32"):
        runtime.load(path)


def test_a_flipped_weight_bit_is_refused_and_a_file_without_a_checksum_loads(files, tmp_path):
    raw, n = _parts(files["conv"])
    flipped = bytearray(raw)
    flipped[-3] ^= 0x10
    (tmp_path / "flipped.ember").write_bytes(bytes(flipped))
    with pytest.raises(FormatError, match="CRC-32 is .* but the metadata's data_crc32 says"):
        runtime.load(tmp_path / "flipped.ember")
    # a file written before the checksum existed has none, and loads
    container = read_container(files["conv"])
    metadata = {k: v for k, v in container.metadata.items() if k != "data_crc32"}
    from safetensors.numpy import save_file

    save_file({k: np.array(v) for k, v in container.tensors.items()},
              str(tmp_path / "old.ember"), metadata=metadata)
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(runtime.load(tmp_path / "old.ember")(x),
                                  runtime.load(files["conv"])(x))


def test_a_checkpoint_with_shifted_data_is_refused(tmp_path):
    ember.save({"w": ember.randn(4, 4)}, tmp_path / "ck.pt")
    raw, n = _parts(tmp_path / "ck.pt")
    (tmp_path / "bad.pt").write_bytes(raw[: 8 + n] + b" " + raw[8 + n : -1])
    with pytest.raises(ember.EmberError, match="CRC-32"):
        ember.load(tmp_path / "bad.pt")
    (tmp_path / "bad.pt").write_bytes(struct.pack("<Q", n - 1) + raw[8:-1])
    with pytest.raises(ember.EmberError, match="header length"):
        ember.load(tmp_path / "bad.pt")


# -- the programs kept per set of sizes ------------------------------------------------------


@pytest.mark.parametrize("compile_native", ["1", "0"])
def test_many_batch_sizes_in_a_steady_mix_build_each_program_once(
        tmp_path, monkeypatch, compile_native):
    monkeypatch.setenv("EMBER_COMPILE", compile_native)
    path = _export(tmp_path, "dyn", lambda x: (x.reshape(x.shape[0] * 2, 2) * 2.0).relu(),
                   ember.randn(3, 4), dynamic_dims={0: {0: "n"}})
    program = runtime.load(path)
    # a build compiles the specialized graph (native) or resolves each step with symbolic
    # attrs to the sizes (eager kernels)
    built = []
    counted = "build_entry_program" if compile_native == "1" else "resolve"
    original = getattr(loaded, counted)
    monkeypatch.setattr(loaded, counted, lambda *a, **k: built.append(a) or original(*a, **k))
    per_build = 1 if compile_native == "1" else len(program._symbolic)
    sizes = range(2, 58)  # far past the 16 the cache used to hold
    for _ in range(3):
        for n in sizes:
            x = np.full((n, 4), -1.5 + n, np.float32)
            np.testing.assert_array_equal(program(x), np.maximum(x.reshape(n * 2, 2) * 2, 0))
    assert len(built) == len(sizes) * per_build
    # past the bound, the least recently called sizes go first
    program(np.ones((2, 4), np.float32))  # now the most recent
    for n in range(sizes.stop, sizes.stop + 10):
        program(np.ones((n, 4), np.float32))
    assert len(program._by_sizes) == loaded.SPECIALIZATIONS == 64
    kept = {key[0][1] for key in program._by_sizes}
    assert 2 in kept and 3 not in kept and sizes.stop + 9 in kept
