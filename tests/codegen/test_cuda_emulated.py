"""The generated CUDA C, run on the CPU (tests/codegen/cuda_emulator.py): every fused pattern
gives the LLVM backend's results (and eager's), reductions across two warps included. This
checks the CUDA backend's source without a GPU; the device itself stays unverified."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program

from cuda_emulator import CXX, Emulated

pytestmark = pytest.mark.skipif(CXX is None, reason="no host C++ compiler")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((37, 45)).astype(np.float32)  # rows and columns off every block size
Y = RNG.standard_normal((45,)).astype(np.float32)
X3 = RNG.standard_normal((5, 7, 9)).astype(np.float32)
INTS = RNG.integers(-50, 50, (37, 45)).astype(np.int32)


def _graph(fn, arrays):
    from ember.ir.passes import run_pipeline
    from ember.runtime.program import evaluate_with_kernels

    graph = ember.trace(fn, tuple(ember.tensor(a) for a in arrays))
    run_pipeline(graph, evaluate=evaluate_with_kernels)
    return graph


CASES = {
    "elementwise chain with broadcast": (lambda a, b: (a * 1.5 + b).sigmoid() * (a - b).tanh(),
                                         [X, Y]),
    "transposed view and where": (lambda a: ember.where(a.t() > 0, a.t() * 2, -a.t()), [X]),
    "softmax": (lambda a: F.softmax(a, -1), [X]),
    "log_softmax 3-d": (lambda a: F.log_softmax(a, -1), [X3]),
    "layer_norm with affine": (lambda a, w: F.layer_norm(a, (45,), w, w * 0.5), [X, Y]),
    "sum, amax and mean over rows": (lambda a: (a.sum(-1), a.amax(-1), (a * a).mean(-1)),
                                     [X]),
    "integer arithmetic and comparisons": (lambda i: ((i * 3 - 7) // 4, (i % 5) == 2), [INTS]),
    "integer row sums and maxima": (lambda i: (i.sum(-1), i.amax(-1), i.amin(-1)), [INTS]),
    "casts and bool": (lambda a: ((a > 0).float() + a.int().float(), (a > 0) & (a < 1)), [X]),
    "float64 exp and log": (lambda a: (a.double().exp() + 1).log(), [X]),
    "float16 chain rounds like eager": (lambda a: (a * 3.3 + 1).relu() * a, [X.astype(np.float16)]),
    "matmul epilogue": (lambda a, b: (a @ b.reshape(45, 1)).relu() + 1, [X, Y]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_generated_cuda_c_computes_what_the_cpu_backends_compute(name, tmp_path):
    fn, arrays = CASES[name]
    graph = _graph(fn, arrays)
    eager = Program(graph.copy())
    cuda = CompiledProgram(graph.copy(), "emu", backend="cuda")
    assert cuda.specs, "no kernel to check"
    emulated = Emulated(cuda, str(tmp_path))
    with np.errstate(all="ignore"):
        want = eager(np, [np.array(a) for a in arrays])
    got = emulated([np.array(a) for a in arrays])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        if g.dtype.kind == "f":
            tol = {2: 2e-3, 4: 2e-5, 8: 1e-12}[g.dtype.itemsize]
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(g, w)


def test_reductions_propagate_nan_and_inf_as_eager_does(tmp_path):
    x = X.copy()
    x[3, 5] = np.nan
    x[4, :] = -np.inf
    x[7, 2] = np.inf
    fn = lambda a: (a.amax(-1), a.amin(-1), a.sum(-1), F.softmax(a, -1))  # noqa: E731
    graph = _graph(fn, [x])
    want = Program(graph.copy())(np, [x.copy()])
    with np.errstate(all="ignore"):
        got = Emulated(CompiledProgram(graph.copy(), "emu", backend="cuda"), str(tmp_path))([x])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        finite = np.isfinite(w)
        np.testing.assert_array_equal(g[~finite & ~np.isnan(w)], w[~finite & ~np.isnan(w)])
        np.testing.assert_allclose(g[finite], w[finite], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("misaligned", [False, True], ids=["float4 path", "scalar path"])
def test_contiguous_float32_chains_move_four_elements_a_step_when_aligned(misaligned, tmp_path):
    """A float32 chain read and written at the flat index is emitted with float4 loads and
    stores; the vector loop runs where every pointer is 16-byte aligned and the tail (here
    1001 = 4 * 250 + 1 elements) goes one by one; a misaligned input takes the scalar loop."""
    base = RNG.standard_normal(1002).astype(np.float32)
    x = base[1:] if misaligned else base[:1001].copy()
    assert (x.ctypes.data % 16 != 0) == misaligned
    fn = lambda a: (a * 1.5 + 0.5).sigmoid() * a.tanh() - a  # noqa: E731
    graph = _graph(fn, [x])
    cuda = CompiledProgram(graph.copy(), "emu", backend="cuda")
    assert "reinterpret_cast<const float4*>" in cuda.cuda_source
    want = Program(graph.copy())(np, [x.copy()])[0]
    got = Emulated(cuda, str(tmp_path))([x])[0]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_broadcast_or_strided_accesses_keep_the_scalar_loop():
    graph = _graph(lambda a, b: a * b + 1, [X, Y])  # b broadcast over the rows
    assert "float4" not in CompiledProgram(graph, "emu", backend="cuda").cuda_source.split(
        "ember_block_reduce")[-1]
