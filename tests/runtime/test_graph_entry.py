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
from ember.codegen.entry import AttentionCall, CopyCall, GatherCall
from ember.ir.specialize import specialize
from ember.runtime import blas
from ember.runtime.compiled import CompiledProgram
from ember.runtime.graph_entry import NativeGraph, _collapse, _place, build_entry_program
from ember.runtime.program import Program

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from models import digits_cnn, gpt, mlp  # noqa: E402


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


def test_a_call_like_the_last_skips_the_signature_checks_and_others_still_get_them(
        tmp_path, monkeypatch):
    ember.manual_seed(7)
    x = np.random.default_rng(7).standard_normal((2, 784)).astype(np.float32)
    loaded = _export(mlp(ember), x, tmp_path / "m.ember")
    checks = []
    check_inputs = loaded.signature.check_inputs
    monkeypatch.setattr(loaded.signature, "check_inputs",
                        lambda leaves: checks.append(1) or check_inputs(leaves))
    eager = {b: Program(specialize(loaded.graph, {"batch": b})) for b in (2, 3)}
    rng = np.random.default_rng(8)
    for b in (2, 2, 2, 3, 3, 2):
        x = rng.standard_normal((b, 784)).astype(np.float32)
        np.testing.assert_allclose(loaded(x), eager[b](np, [x])[0], rtol=1e-5, atol=1e-5)
    assert len(checks) == 3  # the first call at each new size, and the return to 2
    # arguments unlike the last call's take the checked path and its errors
    with pytest.raises(ember.EmberError, match="expected dtype float32, got float64"):
        loaded(x.astype(np.float64))
    with pytest.raises(ember.EmberError, match="expected a tuple of 1 items, got 2 items"):
        loaded(x, x)
    strided = rng.standard_normal((2, 1568)).astype(np.float32)[:, ::2]
    np.testing.assert_allclose(loaded(strided), eager[2](np, [np.ascontiguousarray(strided)])[0],
                               rtol=1e-5, atol=1e-5)
    tensor = ember.tensor(strided.copy())
    np.testing.assert_allclose(loaded(tensor), loaded(strided), rtol=1e-6, atol=1e-6)


def test_tiled_convolutions_leave_the_threads_of_openblas_to_the_linear_layers(tmp_path):
    ember.manual_seed(6)
    x = np.random.default_rng(6).standard_normal((4, 1, 8, 8)).astype(np.float32)
    loaded = _export(digits_cnn(ember), x, tmp_path / "cnn.ember")
    native, _ = _programs(loaded, 64)
    # the pool shares the convolutions' images, and their tiles call no BLAS: OpenBLAS keeps
    # the budget's threads for the linear layers' GEMMs
    assert native.parallel and native.uses_blas and not native.shared_convs
    one, _ = _programs(loaded, 1)
    assert not one.uses_blas  # batch 1: tiles and kernels only


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


def _calls(program, kind):
    return [c for c in program.plan.calls if isinstance(c, kind)]


def _same(native, eager, inputs, rtol=1e-5, atol=1e-5):
    got, want = native(np, inputs), eager(np, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def test_a_gpt_runs_as_one_native_entry(tmp_path, capfd, monkeypatch):
    """Embeddings (row gathers), layer norms and GELU (fused kernels), the QKV split and the
    heads (views read in place by the attention), causal attention, GEMMs: one entry."""
    ember.manual_seed(10)
    model = gpt(ember, vocab_size=50, context=16, d_model=32, heads=4, layers=2)
    idx = np.random.default_rng(10).integers(0, 50, (2, 16))
    loaded = _export(model, idx, tmp_path / "gpt.ember")
    monkeypatch.setenv("EMBER_LOG", "kernels")
    for batch in (1, 3):
        native, eager = _programs(loaded, batch)
        assert isinstance(native, NativeGraph), native.describe()
        assert "one native entry" in capfd.readouterr().err
        # the token rows gathered (the positions' rows are a constant of the specialized graph)
        assert len(_calls(native, AttentionCall)) == 2 and _calls(native, GatherCall)
        assert not _calls(native, CopyCall)  # q, k, v read in place from the QKV product
        x = np.random.default_rng(batch).integers(0, 50, (batch, 16))
        _same(native, eager, [x])
        with ember.no_grad():
            want = model(ember.tensor(x)).numpy()
        np.testing.assert_allclose(loaded(x), want, rtol=1e-4, atol=1e-5)


class _Attend(nn.Module):
    def __init__(self, causal, scale=None, transpose_k=False, expand=False):
        super().__init__()
        self.causal, self.scale, self.transpose_k, self.expand = causal, scale, transpose_k, expand

    def forward(self, q, k, v):
        if self.transpose_k:  # k given as (..., e, s): its columns are strided
            k = k.transpose(-1, -2)
        if self.expand:  # one k and v for every head
            k = k.expand(q.shape[0], q.shape[1], k.shape[2], k.shape[3])
            v = v.expand(q.shape[0], q.shape[1], v.shape[2], v.shape[3])
        return ember.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=self.causal, scale=self.scale)


@pytest.mark.parametrize("case", [
    dict(batch=(1, 4), l=64, s=64, causal=True),
    dict(batch=(2, 3), l=5, s=9, causal=True),  # more keys than queries: top-left causal
    dict(batch=(2, 3), l=9, s=5, causal=True),  # rows past the keys attend every key
    dict(batch=(4, 5), l=7, s=11, causal=False, scale=0.3),  # 20 items: shared with the pool
    dict(batch=(3, 2), l=6, s=8, causal=False, transpose_k=True),  # k copied contiguous
    dict(batch=(2, 8), l=6, s=8, causal=True, expand=True),  # broadcast k, v: stride 0
    dict(batch=(2, 2), l=4, s=6, causal=True, dtype=np.float64),
], ids=["gpt-heads", "short-queries", "short-keys", "pool-scaled", "strided-k", "broadcast",
        "float64"])
def test_attention_equals_the_eager_kernel(tmp_path, case):
    dtype = case.get("dtype", np.float32)
    rng = np.random.default_rng(11)
    b, l, s, e, ev = case["batch"], case["l"], case["s"], 8, 5
    kb = (1, 1) if case.get("expand") else b
    q = rng.standard_normal((*b, l, e)).astype(dtype)
    k = rng.standard_normal((*kb, e, s) if case.get("transpose_k") else (*kb, s, e))
    v = rng.standard_normal((*kb, s, ev))
    k, v = k.astype(dtype), v.astype(dtype)
    model = _Attend(case["causal"], case.get("scale"), case.get("transpose_k", False),
                    case.get("expand", False))
    path = tmp_path / "a.ember"
    ember.export(model.eval(), tuple(ember.tensor(a) for a in (q, k, v)), path)
    loaded = ember.runtime.load(str(path))
    native, eager = build_entry_program(loaded.graph, "a"), Program(loaded.graph)
    assert isinstance(native, NativeGraph), native.describe()
    (call,) = _calls(native, AttentionCall)
    assert (call.scratch is None) == (np.prod(b) >= 16)
    assert bool(_calls(native, CopyCall)) == case.get("transpose_k", False)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    _same(native, eager, [q, k, v], rtol=tol, atol=tol)
    got = native(np, [q, k, v])[0]
    # and the formula itself (float64 reference)
    scores = q.astype(np.float64) @ np.swapaxes(
        np.broadcast_to(k if not case.get("transpose_k") else np.swapaxes(k, -1, -2),
                        (*b, s, e)), -1, -2)
    scores *= case.get("scale") or 1 / np.sqrt(e)
    if case["causal"]:
        scores[..., np.triu(np.ones((l, s), bool), 1)] = -np.inf
    p = np.exp(scores - scores.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ np.broadcast_to(v, (*b, s, ev))
    np.testing.assert_allclose(got, want, rtol=tol * 10, atol=tol * 10)


def test_nan_in_a_query_gives_nan_rows_as_in_eager(tmp_path):
    rng = np.random.default_rng(12)
    q, k, v = (rng.standard_normal((1, 2, 6, 4)).astype(np.float32) for _ in range(3))
    path = tmp_path / "a.ember"
    ember.export(_Attend(True).eval(), tuple(ember.tensor(a) for a in (q, k, v)), path)
    graph = ember.runtime.load(str(path)).graph
    native, eager = build_entry_program(graph, "a"), Program(graph)
    q[0, 1, 3, 2] = np.nan
    got, want = native(np, [q, k, v])[0], eager(np, [q, k, v])[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[0, 1, 3]).all() and not np.isnan(got[0, 0]).any()
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-5, atol=1e-6)


class _Gathers(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(ember.randn(7, 3, 5))

    def forward(self, idx, x):
        rows = ember.index_select(self.table, 0, idx)  # (n, 3, 5)
        cols = ember.index_select(x, 1, idx)  # a gather along an inner dim
        return rows * 2.0, cols


@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_index_select_gathers_rows_and_refuses_an_index_out_of_range(tmp_path, index_dtype):
    ember.manual_seed(13)
    idx = np.array([3, 0, 6, 6, 1], index_dtype)
    x = np.random.default_rng(13).standard_normal((2, 7, 4)).astype(np.float32)
    path = tmp_path / "g.ember"
    ember.export(_Gathers().eval(), (ember.tensor(idx), ember.tensor(x)), path)
    graph = ember.runtime.load(str(path)).graph
    native, eager = build_entry_program(graph, "g"), Program(graph)
    assert isinstance(native, NativeGraph) and len(_calls(native, GatherCall)) == 2
    _same(native, eager, [idx, x])
    for bad in (7, -1):
        wrong = idx.copy()
        wrong[2] = bad
        message = rf"index_select\(\): index {bad} is out of range for dimension 0 with size 7"
        with pytest.raises(IndexError, match=message):
            eager(np, [wrong, x])
        with pytest.raises(IndexError, match=message):  # an ember.EmberError too
            native(np, [wrong, x])
    _same(native, eager, [idx, x])  # a good call after a refused one
    from ember.runtime import threads

    assert threads.callers.active == 0  # the refused calls left the count


class _Views(nn.Module):
    def forward(self, x):
        t = x.transpose(1, 2)  # read by a linear-free kernel and returned: copied
        s = x[:, 1:3]  # a slice returned as an output: copied into it
        e = x[:, :1].expand(x.shape[0], 4, x.shape[2]) * 2.0  # broadcast read by a kernel
        flat = x.reshape(x.shape[0], -1)  # contiguous: read in place
        return t, s, e, flat @ flat.transpose(0, 1)


def test_views_are_read_in_place_or_copied_where_a_step_needs_them(tmp_path):
    x = np.random.default_rng(14).standard_normal((3, 4, 5)).astype(np.float32)
    path = tmp_path / "v.ember"
    ember.export(_Views().eval(), (ember.tensor(x),), path)
    graph = ember.runtime.load(str(path)).graph
    native, eager = build_entry_program(graph, "v"), Program(graph)
    assert isinstance(native, NativeGraph), native.describe()
    _same(native, eager, [x])
    got = native(np, [x])
    np.testing.assert_array_equal(got[0], x.transpose(0, 2, 1))
    np.testing.assert_array_equal(got[1], x[:, 1:3])


def test_collapse_merges_dims_that_step_as_one():
    assert _collapse((2, 3, 4), (12, 4, 1)) == ((24,), (1,))
    assert _collapse((2, 1, 3, 4), (24, 99, 8, 1)) == ((6, 4), (8, 1))
    assert _collapse((4, 3), (1, 4)) == ((4, 3), (1, 4))
    assert _collapse((1, 1), (5, 7)) == ((1,), (1,))


def test_every_batch_size_reads_the_one_copy_of_the_weights(tmp_path):
    """A dynamic batch runs one entry per size: each reads the loaded file's (mapped) weights
    themselves, never a copy of them per size."""
    ember.manual_seed(15)
    x = np.random.default_rng(15).standard_normal((4, 1, 8, 8)).astype(np.float32)
    loaded = _export(digits_cnn(ember), x, tmp_path / "cnn.ember")
    weights = [c.constant for c in loaded.graph.constants]
    for batch in (1, 64, 96):
        graph = specialize(loaded.graph, {"batch": batch})
        assert all(c.constant is w for c, w in zip(graph.constants, weights))
        loaded(np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32))
    programs = list(loaded._by_sizes.values())
    assert len(programs) == 3 and all(isinstance(p, NativeGraph) for p in programs)
    for program in programs:
        argv, *_ = program._thread_state()
        n = len(program.input_specs) + len(program.output_specs)
        pointers = {argv[n + k] for k in range(len(program.constants))}
        # the entry's constant pointers are the file's bytes
        assert pointers <= {w.__array_interface__["data"][0] for w in weights}
        assert pointers  # the CNN's weights
    # its linear layers' weights (GEMMs from batch 64: smaller is a reduction), transposed
    # once for every size
    _, first, second = programs
    assert first.packed and all(a is b for a, b in zip(first.packed, second.packed))


def _spy_entries(native, monkeypatch, spy, used=None):
    """spy(argv, threads) sees every native call of `native` before it runs, through either
    entry (the one giving the GIL away and the one keeping it); `used`, a list, gets which."""
    for name in ("_entry", "_entry_holding_gil"):
        def patched(argv, n, entry=getattr(native, name), name=name):
            spy(argv, n)
            if used is not None:
                used.append(name)
            return entry(argv, n)

        monkeypatch.setattr(native, name, patched)


def test_short_calls_keep_the_gil_and_long_ones_give_it_away(tmp_path, monkeypatch):
    """A call's native time is the least of TIMED_CALLS calls' (a GIL wait lengthens some);
    calls shorter than HOLD_GIL_BELOW_S keep the GIL (giving it away and back costs two
    thread wake-ups, more than such a call gains beside another caller), longer ones give it
    away. The first calls, of no known time, keep it."""
    from ember.runtime import graph_entry

    ember.manual_seed(18)
    rng = np.random.default_rng(18)
    loaded = _export(digits_cnn(ember), rng.standard_normal((4, 1, 8, 8)).astype(np.float32),
                     tmp_path / "cnn.ember")
    short, _ = _programs(loaded, 1)
    used = []
    _spy_entries(short, monkeypatch, lambda argv, n: None, used)
    one = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    for _ in range(graph_entry.TIMED_CALLS + 1):
        short(np, [one])
    assert used == ["_entry_holding_gil"] * (graph_entry.TIMED_CALLS + 1)
    # the spies' Python is in the timed calls: what counts is the least
    assert 0 < short._native_s < graph_entry.HOLD_GIL_BELOW_S

    times = [3e-5, 2e-6, 9e-4] + [1e-3] * (graph_entry.TIMED_CALLS - 3)
    for t in times:  # one quick call among slow ones: the wait-free time
        short._timed(t)
    assert short._native_s == 2e-6

    long, eager = _programs(loaded, 256)
    used.clear()
    _spy_entries(long, monkeypatch, lambda argv, n: None, used)
    many = rng.standard_normal((256, 1, 8, 8)).astype(np.float32)
    for _ in range(graph_entry.TIMED_CALLS + 1):  # 256 images: a millisecond or two
        _same(long, eager, [many])
    assert used == ["_entry_holding_gil"] * graph_entry.TIMED_CALLS + ["_entry"]


def test_callers_inside_entries_at_once_split_the_threads(tmp_path, monkeypatch):
    """OpenBLAS's thread count is one setting of the process: a caller alone gives its GEMMs
    the whole budget, two callers at once half each (never twice the cores in all), and a
    caller keeps to its half until no other has been inside for a budget interval or two
    (callers calling again and again are not inside at every instant)."""
    from ember.runtime import threads

    ember.manual_seed(16)
    x = np.random.default_rng(16).standard_normal((8, 1, 8, 8)).astype(np.float32)
    # batch 8: the linear layers are GEMMs (at batch 1 they are kernels, the convolutions
    # register tiles: no BLAS)
    native, eager = _programs(_export(digits_cnn(ember), x, tmp_path / "cnn.ember"), 8)
    assert native.uses_blas and not native.shared_convs
    if threads.blas_threads() is None:
        pytest.skip("no OpenBLAS thread control in this process")
    monkeypatch.setattr(threads._budget, "now", lambda: 2)  # a budget of 2, however busy
    seen = []
    _spy_entries(native, monkeypatch,
                 lambda argv, n: seen.append((threads.blas_threads(), threads.callers.active)))
    for _ in range(2):  # two budget intervals without another caller
        threads.callers.next_interval()
    _same(native, eager, [x])  # alone
    threads.callers.enter()  # another thread inside an entry
    try:
        _same(native, eager, [x])
    finally:
        threads.callers.leave()
    _same(native, eager, [x])  # the other one may come back: still half
    for _ in range(2):
        threads.callers.next_interval()
    _same(native, eager, [x])  # alone again
    assert seen == [(2, 1), (1, 2), (1, 1), (2, 1)] and threads.callers.active == 0


def test_pool_entries_offer_the_whole_budget_beside_other_callers(tmp_path, monkeypatch):
    """The batch-1 CNN's entry calls no BLAS and shares kernels with the native pool: alone or
    beside another caller it offers the pool the whole budget. A pool job another caller
    holds makes it run its own rows (ember_parallel_for never waits for a worker), so there is
    nothing to split; splitting anyway took two callers from 0.83x to 0.51x of one caller's
    calls (benchmarks/entry_threads.py, digits CNN)."""
    from ember.runtime import threads
    from ember.runtime.native import _pool

    ember.manual_seed(17)
    x = np.random.default_rng(17).standard_normal((4, 1, 8, 8)).astype(np.float32)
    native, eager = _programs(_export(digits_cnn(ember), x, tmp_path / "cnn.ember"), 1)
    assert native.parallel and not native.uses_blas
    # a budget of 2, however busy the machine (the budget itself: every module that asks
    # for threads() goes through it)
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    seen = []
    _spy_entries(native, monkeypatch, lambda argv, n: seen.append(n))
    one = x[:1].copy()
    _same(native, eager, [one])  # alone
    threads.callers.enter()  # another thread inside an entry
    try:
        _same(native, eager, [one])
    finally:
        threads.callers.leave()
    assert seen == [min(2, _pool.workers + 1)] * 2 and threads.callers.active == 0


def test_outputs_a_caller_holds_are_never_written_by_later_calls(tmp_path):
    """Each call returns arrays of its own: ones the caller keeps (small, or large enough
    that a dropped one is reused: compiled.RECYCLE_MIN_BYTES) hold their values through
    later calls on other inputs, from this thread and others."""
    from ember.runtime.compiled import RECYCLE_MIN_BYTES

    ember.manual_seed(18)
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU())
    x = np.random.default_rng(18).standard_normal((8, 1, 32, 32)).astype(np.float32)
    loaded = _export(model, x, tmp_path / "big.ember")
    for batch in (1, 8):  # 128 KiB and 1 MiB of output: the second is recycled when dropped
        native, eager = _programs(loaded, batch)
        assert native.recycled == (batch * 32 * 32 * 32 * 4 >= RECYCLE_MIN_BYTES)
        inputs = [np.random.default_rng(k).standard_normal((batch, 1, 32, 32))
                  .astype(np.float32) for k in range(4)]
        kept = [(native(np, [a])[0], eager(np, [a])[0]) for a in inputs]
        for _ in range(3):
            native(np, [inputs[0]])  # dropped at once: a recycled one is reused
        worker = threading.Thread(target=lambda: [native(np, [a]) for a in inputs])
        worker.start()
        worker.join()
        for got, want in kept:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert len({id(got) for got, _ in kept}) == len(kept)
