"""ember.export: a function or module captured into one graph file that ember.runtime runs
equal to eager, with weights as constants, symbolic sizes and clear refusals."""

import inspect
import json
import os
import re
import sys
import warnings

import ember
import numpy as np
import pytest
from ember import runtime
from ember.runtime.graph_file import read_container

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from examples.models import char_transformer, digits_cnn, mlp


def _eager(model, *args):
    with ember.no_grad():
        out = model(*args)
    return out.numpy()


def test_mlp_round_trip_equals_eager_at_several_batch_sizes(tmp_path):
    ember.manual_seed(0)
    model = mlp(ember, (12, 24, 5)).eval()
    path = tmp_path / "mlp.ember"
    result = ember.export(model, ember.randn(4, 12), path, dynamic_dims={"input": {0: "batch"}})
    assert result.max_difference is not None and result.max_difference <= 1e-5
    program = runtime.load(path)
    assert program.signature.inputs == [("input", "float32", ("batch", 12))]
    for batch in (1, 3, 17):
        x = np.random.default_rng(batch).standard_normal((batch, 12)).astype(np.float32)
        np.testing.assert_allclose(program(x), _eager(model, ember.tensor(x)), rtol=1e-5, atol=1e-6)


def test_weights_are_constants_in_the_file_named_after_parameters(tmp_path):
    ember.manual_seed(1)
    model = mlp(ember, (6, 8, 3)).eval()
    path = tmp_path / "m.ember"
    ember.export(model, ember.randn(2, 6), path)
    container = read_container(str(path))
    np.testing.assert_array_equal(container.tensors["0.weight"], model[0].weight.detach().numpy())
    graph = json.loads(container.metadata["graph"])
    assert [i["name"] for i in graph["inputs"]] == ["input"]  # weights are not inputs
    assert container.metadata["format"] == "ember.graph"
    assert container.metadata["schema_version"] == "1.0"
    assert {"linear", "relu"} <= set(json.loads(container.metadata["ops"]))


def test_digits_cnn_with_dynamic_batch_equals_eager(tmp_path):
    ember.manual_seed(2)
    model = digits_cnn(ember).eval()
    path = tmp_path / "cnn.ember"
    ember.export(model, ember.randn(4, 1, 8, 8), path, dynamic_dims={0: {0: "batch"}})
    program = runtime.load(path)
    for batch in (1, 5, 9):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(program(x), _eager(model, ember.tensor(x)), rtol=1e-4, atol=1e-5)


def test_char_transformer_with_dynamic_batch_equals_eager(tmp_path):
    ember.manual_seed(3)
    model = char_transformer(ember, 17, context=8, d_model=16, heads=2, layers=1).eval()
    path = tmp_path / "ct.ember"
    idx = ember.randint(0, 17, (3, 8))
    ember.export(model, idx, path, dynamic_dims={0: {0: "batch"}})
    program = runtime.load(path)
    for batch in (1, 2, 6):
        x = np.random.default_rng(batch).integers(0, 17, (batch, 8))
        np.testing.assert_allclose(program(x), _eager(model, ember.tensor(x)), rtol=1e-4, atol=1e-5)


def test_training_module_warns_exports_eval_and_restores_mode(tmp_path):
    model = digits_cnn(ember)
    assert model.training
    with pytest.warns(UserWarning, match="training mode"):
        ember.export(model, ember.randn(2, 1, 8, 8), tmp_path / "c.ember")
    assert model.training
    assert "dropout" not in runtime.load(tmp_path / "c.ember").ops


def test_nested_inputs_and_outputs_keep_their_structure(tmp_path):
    def fn(pair, table):
        a, b = pair
        return {"sum": a + table["w"], "prod": (a * b, b.exp())}

    args = ((ember.randn(3), ember.randn(3)), {"w": ember.randn(3)})
    ember.export(fn, args, tmp_path / "f.ember")
    program = runtime.load(tmp_path / "f.ember")
    a, b, w = (np.random.default_rng(i).standard_normal(3).astype(np.float32) for i in range(3))
    out = program((a, b), {"w": w})
    assert set(out) == {"sum", "prod"} and isinstance(out["prod"], tuple)
    np.testing.assert_allclose(out["sum"], a + w, rtol=1e-6)
    np.testing.assert_allclose(out["prod"][1], np.exp(b), rtol=1e-6)
    with pytest.raises(ember.EmberError, match="expected a dict"):
        program((a, b), [w])


def test_functions_with_closed_over_tensors_and_integer_dtypes(tmp_path):
    scale = ember.tensor([2.0, 3.0])

    def fn(x, i):
        return (x * scale).sum(1), i * 2 + 1

    x, i = ember.randn(4, 2), ember.tensor([1, 2, 3])
    result = ember.export(fn, (x, i), tmp_path / "g.ember", dynamic_dims={"x": {0: "n"}})
    program = runtime.load(tmp_path / "g.ember")
    got = program(np.ones((6, 2), np.float32), np.array([5, 6, 7]))
    np.testing.assert_allclose(got[0], np.full(6, 5.0))
    np.testing.assert_array_equal(got[1], [11, 13, 15])
    assert result.signature["outputs"][0]["shape"] == ["n"]


def test_inputs_are_checked_against_the_signature(tmp_path):
    def fn(x, y):
        return x + y

    ember.export(
        fn,
        (ember.randn(2, 3), ember.randn(2, 3)),
        tmp_path / "h.ember",
        dynamic_dims={"x": {0: "b"}, "y": {0: "b"}},
    )
    program = runtime.load(tmp_path / "h.ember")
    ok = np.zeros((5, 3), np.float32)
    assert program(ok, ok).shape == (5, 3)
    with pytest.raises(ember.EmberError, match="symbol b"):
        program(ok, np.zeros((4, 3), np.float32))
    with pytest.raises(ember.EmberError, match="dtype float32"):
        program(ok, ok.astype(np.float64))
    with pytest.raises(ember.EmberError, match="dim 1 differs"):
        program(ok, np.zeros((5, 4), np.float32))


def test_value_dependent_code_is_refused_naming_the_line(tmp_path):
    def fn(x):
        if x.sum() > 0:  # the branch taken depends on the values
            return x * 2
        return x

    with pytest.raises(ember.EmberError, match="reads tensor values"):
        ember.export(fn, ember.ones(3), tmp_path / "v.ember")


def test_random_ops_stop_the_export_with_the_reason(tmp_path):
    def fn(x):
        return x + ember.randn(3)

    with pytest.raises(ember.EmberError, match="draws random numbers.*test_export.py"):
        ember.export(fn, ember.ones(3), tmp_path / "r.ember")


def test_a_size_baked_from_a_dynamic_dim_is_made_symbolic(tmp_path):
    def fn(x):
        n = x.shape[0]
        return x.reshape(n * 2, 2)[: n * 2 - 1]

    ember.export(fn, ember.randn(3, 4), tmp_path / "s.ember", dynamic_dims={0: {0: "n"}})
    program = runtime.load(tmp_path / "s.ember")
    x = np.arange(20, dtype=np.float32).reshape(5, 4)
    np.testing.assert_array_equal(program(x), x.reshape(10, 2)[:9])


def test_a_shape_that_cannot_be_symbolic_is_reported_with_its_line(tmp_path):
    table = ember.randn(3, 4)

    def fn(x):
        return x + table  # the batch dim meets a fixed size

    with pytest.raises(ember.EmberError, match=r"add.*test_export.py:\d+"):
        ember.export(fn, ember.randn(3, 4), tmp_path / "t.ember", dynamic_dims={0: {0: "n"}})


def _line(fn, marker: str) -> str:
    """file:line of the line of fn's source that holds marker."""
    lines, start = inspect.getsourcelines(fn)
    offset = next(i for i, text in enumerate(lines) if marker in text)
    return f"{os.path.basename(inspect.getsourcefile(fn))}:{start + offset}"


def test_sizes_the_forward_computes_from_dynamic_dims_stay_symbolic(tmp_path):
    def fn(x, y):
        batch, features = x.shape  # sizes computed in Python from the dynamic dims
        pairs = x.reshape(batch * 2, features // 2) * 2.0
        return pairs, y[: y.shape[0] - 1] + pairs.sum()

    result = ember.export(
        fn,
        (ember.randn(3, 4), ember.randn(5, 2)),
        tmp_path / "c.ember",
        dynamic_dims={"x": {0: "batch"}, "y": {0: "seq"}},
    )
    assert [o["shape"] for o in result.signature["outputs"]] == [["batch*2", 2], ["seq - 1", 2]]
    program = runtime.load(tmp_path / "c.ember")
    rng = np.random.default_rng(0)
    for batch, seq in ((2, 7), (6, 2)):
        x = rng.standard_normal((batch, 4)).astype(np.float32)
        y = rng.standard_normal((seq, 2)).astype(np.float32)
        want = fn(ember.tensor(x), ember.tensor(y))
        for got, expected in zip(program(x, y), want):
            np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_a_dynamic_size_used_as_a_plain_number_is_refused_naming_the_line(tmp_path):
    def fn(x):
        return x.sum(0) / x.shape[0]  # the size as a number operand: it would be baked in

    where = re.escape(_line(fn, "baked in"))
    message = rf"x.shape\[0\] \(n\) cannot stay symbolic.*{where}"
    with pytest.raises(ember.EmberError, match=message):
        ember.export(fn, ember.randn(3, 4), tmp_path / "p.ember", dynamic_dims={0: {0: "n"}})


def test_a_branch_on_a_dynamic_size_is_refused_naming_the_line(tmp_path):
    def fn(x):
        if x.shape[0] > 4:  # the graph would hold only for n <= 4
            return x * 2
        return x

    where = re.escape(_line(fn, "would hold"))
    message = rf"branches on the sizes \(n > 4 is False at .*{where}"
    with pytest.raises(ember.EmberError, match=message):
        ember.export(fn, ember.randn(3, 2), tmp_path / "b.ember", dynamic_dims={0: {0: "n"}})


def test_include_examples_stores_the_inputs(tmp_path):
    def fn(x):
        return x.relu()

    x = ember.randn(2, 2)
    ember.export(fn, x, tmp_path / "e.ember", include_examples=True)
    program = runtime.load(tmp_path / "e.ember")
    np.testing.assert_array_equal(program.examples["x"], x.numpy())


def test_export_without_check_reports_no_difference(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ember.export(lambda x: x * 3, ember.ones(2), tmp_path / "n.ember", check=False)
    assert result.max_difference is None and result.size == os.path.getsize(result.path)


# -- reproducible files, and what they say about the exporting machine ---------------------------


def _sources(path):
    graph = json.loads(read_container(str(path)).metadata["graph"])
    return [node.get("source") for node in graph["nodes"]]


def _small_model():
    ember.manual_seed(0)
    return mlp(ember, (6, 8, 3)).eval()


def _export(model, x, path, **kwargs):
    # one line for every export, so that the files name the same source line
    return ember.export(model, x, path, **kwargs)


def test_two_exports_of_the_same_model_are_byte_identical(tmp_path):
    # the safetensors package wrote the metadata keys in a hash map's order, new each time
    model, x = _small_model(), ember.randn(2, 6)
    for name in ("a", "b", "c"):
        _export(model, x, tmp_path / f"{name}.ember", dynamic_dims={"input": {0: "batch"}})
    first = (tmp_path / "a.ember").read_bytes()
    assert (tmp_path / "b.ember").read_bytes() == first
    assert (tmp_path / "c.ember").read_bytes() == first


def test_sources_are_relative_by_default_and_name_no_absolute_path(tmp_path, monkeypatch):
    here = os.path.abspath(__file__)
    model, x = _small_model(), ember.randn(2, 6)
    monkeypatch.chdir(os.path.dirname(here))
    _export(model, x, tmp_path / "relative.ember")
    sources = _sources(tmp_path / "relative.ember")
    assert sources and all(re.fullmatch(r"test_export\.py:\d+", s) for s in sources), sources
    data = (tmp_path / "relative.ember").read_bytes()
    for machine_path in {os.path.dirname(here), os.path.dirname(os.path.dirname(here))}:
        assert machine_path.encode() not in data

    _export(model, x, tmp_path / "absolute.ember", source_paths="absolute")
    absolute = _sources(tmp_path / "absolute.ember")
    assert absolute == [here + ":" + s.rpartition(":")[2] for s in sources]

    _export(model, x, tmp_path / "strip.ember", source_paths="strip")
    assert _sources(tmp_path / "strip.ember") == [None] * len(sources)
    assert b"source" not in (tmp_path / "strip.ember").read_bytes()
    runtime.load(tmp_path / "strip.ember")(np.ones((2, 6), np.float32))


def test_a_source_under_the_working_directory_is_named_from_it(tmp_path, monkeypatch):
    def scale(x):
        return x * 2.0

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p and "tests" not in p])
    ember.export(scale, ember.randn(3), tmp_path / "f.ember")
    [source] = _sources(tmp_path / "f.ember")
    assert source.startswith("tests/test_export.py:"), source


def test_an_unknown_source_paths_choice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="source_paths must be one of 'relative'") as info:
        ember.export(_small_model(), ember.randn(2, 6), tmp_path / "x.ember", source_paths="rel")
    assert isinstance(info.value, ember.EmberError)
    assert not (tmp_path / "x.ember").exists()
