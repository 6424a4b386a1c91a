"""Graph files as ember.runtime loads them: compatibility rules, checked fields, memory
mapping, threads, and the command line."""

import json
import os
import struct
import subprocess
import sys
import threading

import ember
import numpy as np
import pytest
from ember import runtime
from ember.runtime import FormatError
from ember.runtime.graph_file import read_container, write_container

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    sys.path.insert(0, REPO)
    from examples.models import mlp

    ember.manual_seed(0)
    model = mlp(ember, (8, 16, 4)).eval()
    path = tmp_path_factory.mktemp("gf") / "mlp.ember"
    ember.export(model, ember.randn(3, 8), path, dynamic_dims={0: {0: "batch"}})
    return str(path), model


def _rewrite(src: str, dst, edit) -> str:
    """A copy of the file at src with its metadata (a dict of parsed JSON where it is JSON)
    edited by `edit`."""
    container = read_container(src)
    metadata = dict(container.metadata)
    edit(metadata)
    write_container(str(dst), {k: np.array(v) for k, v in container.tensors.items()}, metadata)
    return str(dst)


def test_format_error_is_an_ember_error_and_a_value_error():
    assert issubclass(FormatError, ember.EmberError) and issubclass(FormatError, ValueError)


def test_an_older_or_same_major_minor_version_loads(mlp_file, tmp_path):
    src, _ = mlp_file

    def older(m):
        m["schema_version"] = "1.0"

    def newer_minor(m):
        m["schema_version"] = "1.7"

    for edit in (older, newer_minor):
        program = runtime.load(_rewrite(src, tmp_path / "v.ember", edit))
        assert program(np.zeros((2, 8), np.float32)).shape == (2, 4)


def test_newer_major_and_unknown_ops_are_refused_in_one_message(mlp_file, tmp_path):
    src, _ = mlp_file

    def edit(m):
        m["schema_version"] = "2.0"
        m["ops"] = json.dumps(json.loads(m["ops"]) + ["warp_drive", "teleport"])

    with pytest.raises(FormatError) as info:
        runtime.load(_rewrite(src, tmp_path / "x.ember", edit))
    message = str(info.value)
    assert "2.0" in message and "'teleport'" in message and "'warp_drive'" in message


def test_an_op_used_but_not_listed_is_refused(mlp_file, tmp_path):
    src, _ = mlp_file

    def edit(m):
        m["ops"] = json.dumps(["add"])

    with pytest.raises(FormatError, match="not listed"):
        runtime.load(_rewrite(src, tmp_path / "y.ember", edit))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("format", "onnx", "metadata.format"),
        ("schema_version", "one", "schema_version"),
        ("signature", "{}", "signature"),
        ("graph", "[1, 2", "metadata.graph"),
        ("graph", "[" * 200 + "]" * 200, "nested"),
        ("ops", '"relu"', "metadata.ops"),
    ],
)
def test_bad_metadata_fields_are_named(mlp_file, tmp_path, field, value, match):
    src, _ = mlp_file

    def edit(m):
        m[field] = value

    with pytest.raises(FormatError, match=match):
        runtime.load(_rewrite(src, tmp_path / "z.ember", edit))


def test_a_tensor_whose_shape_disagrees_with_the_graph_is_refused(mlp_file, tmp_path):
    src, _ = mlp_file
    container = read_container(src)
    tensors = {k: np.array(v) for k, v in container.tensors.items()}
    tensors["0.weight"] = tensors["0.weight"][:, :4].copy()
    write_container(str(tmp_path / "w.ember"), tensors, container.metadata)
    with pytest.raises(FormatError, match="0.weight"):
        runtime.load(tmp_path / "w.ember")


def test_a_tensor_the_graph_does_not_use_is_refused(mlp_file, tmp_path):
    src, _ = mlp_file
    container = read_container(src)
    tensors = {k: np.array(v) for k, v in container.tensors.items()}
    tensors["stowaway"] = np.zeros(3, np.float32)
    write_container(str(tmp_path / "s.ember"), tensors, container.metadata)
    with pytest.raises(FormatError, match="stowaway"):
        runtime.load(tmp_path / "s.ember")


def test_the_data_is_memory_mapped(mlp_file):
    program = runtime.load(mlp_file[0])
    weight = program.graph.constants[0].constant
    chain = []
    while weight is not None:
        chain.append(weight)
        weight = getattr(weight, "base", None)
    assert any(isinstance(a, np.memmap) for a in chain)
    assert not chain[0].flags.writeable


def test_header_length_beyond_the_file_is_refused(tmp_path):
    path = tmp_path / "h.ember"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(FormatError, match="header length"):
        runtime.load(path)


def test_a_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="cannot read"):
        runtime.load(tmp_path / "nothing.ember")


def test_threads_calling_one_program_get_the_serial_results(mlp_file):
    program = runtime.load(mlp_file[0])
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1 + i % 5, 8)).astype(np.float32) for i in range(100)]
    serial = [program(x) for x in inputs]
    results = [[None] * 100 for _ in range(8)]

    def work(t):
        for i in range(100):
            j = (i * 7 + t) % 100
            results[t][j] = program(inputs[j])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for t in range(8):
        for got, want in zip(results[t], serial):
            np.testing.assert_array_equal(got, want)


def test_program_keeps_no_per_call_state(mlp_file):
    program = runtime.load(mlp_file[0])
    before = dict(vars(program))
    program(np.zeros((7, 8), np.float32))
    assert vars(program) == before


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ember.runtime", *args],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(REPO),
        timeout=120,
        check=False,
    )


def test_cli_info_prints_signature_ops_and_version(mlp_file):
    result = _cli("info", mlp_file[0])
    assert result.returncode == 0, result.stderr
    assert "input: float32[batch, 8]" in result.stdout
    assert "linear" in result.stdout and "ember.graph 1.0" in result.stdout


def test_cli_run_writes_the_outputs(mlp_file, tmp_path):
    path, model = mlp_file
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    result = _cli("run", path, "--input", f"input={tmp_path / 'x.npy'}", "--output", str(out))
    assert result.returncode == 0, result.stderr
    with ember.no_grad():
        expected = model(ember.tensor(x)).numpy()
    np.testing.assert_allclose(np.load(out)["output"], expected, rtol=1e-5, atol=1e-6)


def test_cli_reports_a_broken_file_without_a_traceback(tmp_path):
    (tmp_path / "bad.ember").write_bytes(b"\x00" * 3)
    result = _cli("info", str(tmp_path / "bad.ember"))
    assert result.returncode == 1
    assert "header length" in result.stderr and "Traceback" not in result.stderr
