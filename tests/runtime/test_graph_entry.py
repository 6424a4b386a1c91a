"""A graph whose every step native code can run is one native call (runtime/graph_entry.py):
equal to the eager kernels on convolutions, pooling and GEMMs of every geometry, safe from many
threads at once; a graph with any other step runs step by step, as before."""

import os
import sys
import threading

import ember
import numpy as np
import pytest
from ember import nn
from ember.ir.specialize import specialize
from ember.runtime import blas
from ember.runtime.compiled import CompiledProgram
from ember.runtime.graph_entry import NativeGraph, _place, build_entry_program
from ember.runtime.program import Program

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from models import digits_cnn, mlp  # noqa: E402


def _export(model, example, path, dynamic=True):
    dims = {0: {0: "batch"}} if dynamic else None
    ember.export(model.eval(), (ember.tensor(example),), path, dynamic_dims=dims)
    return ember.runtime.load(str(path))


def _programs(loaded, batch):
    graph = specialize(loaded.graph, {"batch": batch})
    return build_entry_program(graph, "t"), Program(graph)


def _check(loaded, shape, batches=(1, 3, 17), dtype=np.float32, rtol=1e-5, atol=1e-5):
    rng = np.random.default_rng(sum(shape))
    for batch in batches:
        native, eager = _programs(loaded, batch)
        assert isinstance(native, NativeGraph), native.describe()
        x = rng.standard_normal((batch, *shape)).astype(dtype)
        (got,), (want,) = native(np, [x]), eager(np, [x])
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
        np.testing.assert_allclose(loaded(x), want, rtol=rtol, atol=atol)


def test_the_gemm_of_numpys_blas_is_found_with_its_integer_width():
    gemm = blas.gemm()
    assert gemm is not None and gemm.int_bits in (32, 64)
    # numpy's wheels: ILP64 OpenBLAS, symbols renamed
    if "scipy_openblas64" in os.path.basename(gemm.path):
        assert gemm.int_bits == 64 and gemm.symbols[0] == "scipy_cblas_sgemm64_"


def test_the_digits_cnn_and_the_mlp_run_as_one_native_entry(tmp_path):
    ember.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    _check(_export(digits_cnn(ember), x, tmp_path / "cnn.ember"), (1, 8, 8), (1, 2, 64))
    x = np.random.default_rng(0).standard_normal((4, 784)).astype(np.float32)
    _check(_export(mlp(ember), x, tmp_path / "mlp.ember"), (784,), (1, 2, 64))


class _Convs(nn.Module):
    def __init__(self, c, pool):
        super().__init__()
        self.a = nn.Conv2d(c, 6, 3, stride=2, padding=2, dilation=2)
        self.b = nn.Conv2d(6, 5, (2, 3), stride=(1, 2), padding=(0, 1))
        self.c = nn.Conv2d(5, 4, 1)  # pointwise: the image is its own columns
        self.pool = pool

    def forward(self, x):
        return self.pool(self.c(ember.relu(self.b(self.a(x)))))


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    nn.MaxPool2d(2, dilation=2),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
    nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
    nn.AvgPool2d(3, stride=2, divisor_override=5),
], ids=["max-ceil", "max-dilated", "avg-ceil", "avg-exclude-pad", "avg-divisor"])
def test_convolutions_and_pooling_of_any_geometry_equal_the_eager_kernels(tmp_path, pool):
    ember.manual_seed(1)
    x = np.random.default_rng(1).standard_normal((2, 3, 13, 11)).astype(np.float32)
    _check(_export(_Convs(3, pool), x, tmp_path / "c.ember"), (3, 13, 11), (1, 2))


def test_float64_graphs_run_through_dgemm(tmp_path):
    ember.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 5)).double()
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 6))
    _check(_export(model, x, tmp_path / "d.ember"), (2, 6, 6), (1, 4), np.float64, 1e-12, 1e-12)


def test_nan_and_inf_pass_through_max_pooling_as_in_eager(tmp_path):
    ember.manual_seed(3)
    x = np.random.default_rng(3).standard_normal((2, 2, 4, 4)).astype(np.float32)
    loaded = _export(nn.Sequential(nn.MaxPool2d(2, padding=1)), x, tmp_path / "p.ember")
    x[0, 0, 0, 1] = np.nan
    x[1, 1, 2, 2] = -np.inf
    x[1, 0, 3, 3] = np.inf
    native, eager = _programs(loaded, 2)
    np.testing.assert_array_equal(native(np, [x])[0], eager(np, [x])[0])


def test_a_graph_with_another_step_runs_step_by_step(tmp_path, capfd, monkeypatch):
    class Sorts(nn.Module):
        def forward(self, x):
            return ember.sort(ember.relu(x), dim=-1)[0]

    x = np.random.default_rng(4).standard_normal((3, 5)).astype(np.float32)
    loaded = _export(Sorts(), x, tmp_path / "s.ember", dynamic=False)
    monkeypatch.setenv("EMBER_LOG", "kernels")
    program = build_entry_program(loaded.graph, "sorts")
    assert isinstance(program, CompiledProgram) and not isinstance(program, NativeGraph)
    assert "runs step by step, not as one native entry: no native form of sort" in \
        capfd.readouterr().err
    np.testing.assert_allclose(loaded(x), np.sort(np.maximum(x, 0), axis=-1))


def test_the_native_entry_can_be_switched_off(tmp_path, monkeypatch):
    x = np.random.default_rng(5).standard_normal((2, 784)).astype(np.float32)
    loaded = _export(mlp(ember), x, tmp_path / "m.ember")
    monkeypatch.setenv("EMBER_NATIVE_ENTRY", "0")
    program = build_entry_program(specialize(loaded.graph, {"batch": 2}), "m")
    assert isinstance(program, CompiledProgram) and not isinstance(program, NativeGraph)


def test_many_threads_calling_at_once_each_get_their_own_results(tmp_path):
    ember.manual_seed(6)
    x = np.random.default_rng(6).standard_normal((4, 1, 8, 8)).astype(np.float32)
    native, eager = _programs(_export(digits_cnn(ember), x, tmp_path / "cnn.ember"), 2)
    inputs = [np.random.default_rng(k).standard_normal((2, 1, 8, 8)).astype(np.float32)
              for k in range(8)]
    wanted = [eager(np, [x])[0] for x in inputs]
    failures = []

    def work(k):
        for _ in range(30):
            got = native(np, [inputs[k]])[0]
            if not np.allclose(got, wanted[k], rtol=1e-5, atol=1e-5):
                failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_wrong_inputs_are_refused_with_their_shapes(tmp_path):
    x = np.random.default_rng(7).standard_normal((2, 784)).astype(np.float32)
    loaded = _export(mlp(ember), x, tmp_path / "m.ember")
    native, _ = _programs(loaded, 2)
    with pytest.raises(ember.EmberError, match=r"float32\[2, 784\], got float64\[2, 784\]"):
        native(np, [x.astype(np.float64)])
    # a non-contiguous input is read correctly
    wide = np.random.default_rng(8).standard_normal((2, 1568)).astype(np.float32)
    np.testing.assert_allclose(native(np, [wide[:, ::2]])[0],
                               native(np, [np.ascontiguousarray(wide[:, ::2])])[0])


def test_arena_values_alive_at_once_never_share_bytes():
    rng = np.random.default_rng(9)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        born = {k: int(rng.integers(0, 20)) for k in range(n)}
        dies = {k: born[k] + int(rng.integers(0, 6)) for k in range(n)}
        sizes = {k: int(rng.integers(1, 5000)) for k in range(n)}
        offsets, total = _place(born, dies, sizes)
        for a in range(n):
            assert offsets[a] % 64 == 0 and offsets[a] + sizes[a] <= total
            for b in range(a):
                if born[a] <= dies[b] and born[b] <= dies[a]:
                    assert (offsets[a] + sizes[a] <= offsets[b]
                            or offsets[b] + sizes[b] <= offsets[a])
