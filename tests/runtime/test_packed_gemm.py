"""ember's own packed GEMM (runtime/packed_gemm.py, codegen/llvm/gemm.py): every layout and
edge it takes gives the float64 product (plus the bias), on one thread and on two; what it
does not take is left to BLAS; the matmul and linear kernels take it, forward and backward;
callers on several threads at once each get their own product."""

import os

import ember
import numpy as np
import pytest
from ember.codegen.llvm import target
from ember.codegen.llvm.gemm import KC, MR, panel_width
from ember.runtime import packed_gemm, threads
from gemm_paths import at_once, linear_and_matmul_match_numpy, needs_avx512, products_taken


@pytest.fixture
def any_size(monkeypatch):
    """Every size the kernel can take, not only those it is used for."""
    for name, value in (("MIN_WORK", 1), ("MIN_ROWS", 1), ("MIN_COLUMNS", 1),
                        ("MAX_DEPTH", 1 << 20), ("MAX_DEPTH_WIDE", 1 << 20),
                        ("PACKED_MAX_BYTES", 1 << 30)):
        monkeypatch.setattr(packed_gemm, name, value)


def _operand(rng, rows, cols, layout, dtype):
    """A (rows, cols) operand: row-major, column-major (a transposed array), row-major with
    a wider row (a slice), or strided both ways (b only)."""
    if layout == "rows":
        return rng.standard_normal((rows, cols)).astype(dtype)
    if layout == "columns":
        return rng.standard_normal((cols, rows)).astype(dtype).T
    if layout == "padded":
        return rng.standard_normal((rows, cols + 5)).astype(dtype)[:, 2:cols + 2]
    return rng.standard_normal((rows * 2, cols * 3)).astype(dtype)[::2, ::3]


def _check(got, a, b, bias=None):
    want = a.astype(np.float64) @ b.astype(np.float64)
    if bias is not None:
        want = want + bias
    assert got is not None, "the packed GEMM refused a product it takes"
    assert got.shape == want.shape and got.dtype == a.dtype and got.flags.c_contiguous
    tol = 2e-6 if got.dtype == np.float32 else 1e-14
    scale = np.sqrt(a.shape[1]) * max(1.0, np.abs(want).max())
    assert np.abs(got - want).max() <= tol * scale


# sizes around the tile (MR rows, a panel of NR columns) and the depth slice (KC)
NR = panel_width("float32")
SHAPES = [(1, 1, 1), (MR, KC, NR), (MR + 1, KC + 1, NR + 1), (MR - 1, 3, NR - 1),
          (5 * MR + 7, 2 * KC + 9, 3 * NR + 5), (100, 64, 300), (300, 200, 40)]


@needs_avx512
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout_a", ["rows", "columns", "padded"])
@pytest.mark.parametrize("layout_b", ["rows", "columns", "strided"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_every_layout_and_edge_gives_the_product(budget, any_size, dtype, layout_a, layout_b,
                                                 m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = _operand(rng, m, k, layout_a, dtype)
    b = _operand(rng, k, n, layout_b, dtype)
    _check(packed_gemm.product(a, b), a, b)


@needs_avx512
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(MR + 1, KC + 1, NR + 1), (512, 128, 384), (40, 700, 260)])
def test_the_bias_is_added_once_to_every_row(budget, any_size, dtype, m, k, n):
    rng = np.random.default_rng(7)
    a = _operand(rng, m, k, "rows", dtype)
    b = _operand(rng, k, n, "columns", dtype)  # a weight read transposed, as linear has it
    bias = rng.standard_normal(n).astype(dtype)
    _check(packed_gemm.product(a, b, bias=bias), a, b, bias)


@needs_avx512
def test_tall_and_wide_products_share_rows_or_columns_between_threads(budget):
    """Both ways of sharing the work, at the sizes the kernel is used for: C wider than tall
    (each thread a group of panels) and taller than wide (each thread a part of the rows)."""
    rng = np.random.default_rng(3)
    for m, k, n in [(128, 512, 512), (512, 512, 128), (512, 128, 512), (600, 300, 70)]:
        a = _operand(rng, m, k, "rows", np.float32)
        b = _operand(rng, k, n, "rows", np.float32)
        _check(packed_gemm.product(a, b), a, b)


@needs_avx512
def test_inf_and_nan_propagate_as_in_blas(budget, any_size):
    a = np.ones((40, 64), np.float32)
    b = np.ones((64, 70), np.float32)
    a[3, 5] = np.inf
    a[7, 9] = np.nan
    b[2, 60] = -np.inf
    got = packed_gemm.product(a, b)
    with np.errstate(invalid="ignore"):
        want = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6)


@needs_avx512
def test_what_the_kernel_does_not_take_is_left_to_blas():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 256)).astype(np.float32)
    b = rng.standard_normal((256, 256)).astype(np.float32)
    assert packed_gemm.product(a, b) is not None  # the kernel's own size
    assert packed_gemm.product(a[:, ::2], b[:128]) is None  # no unit stride in a
    assert packed_gemm.product(a[::-1], b) is None  # a negative stride
    assert packed_gemm.product(a, b.astype(np.float64)) is None  # mixed dtypes
    assert packed_gemm.product(a.astype(np.int32), b.astype(np.int32)) is None
    assert packed_gemm.product(a.astype(">f4"), b.astype(">f4")) is None  # other byte order
    assert packed_gemm.product(a[:8], b) is None  # too few rows: b packed for 8 of them
    assert packed_gemm.product(a, b[:, :32]) is None  # too few columns
    assert packed_gemm.product(a[:64, :64], b[:64, :64]) is None  # too little work
    deep = rng.standard_normal((1100, 1100)).astype(np.float32)
    assert packed_gemm.product(deep[:700, :800], deep[:800, :200]) is None  # deep, C tall
    assert packed_gemm.product(deep[:128, :784], deep[:784, :256]) is not None  # C wide
    assert packed_gemm.product(deep[:64, :1100], deep[:, :64]) is None  # deeper still
    assert packed_gemm.product(a, b[:100]) is None  # shapes that do not match
    assert packed_gemm.product(a[None], b) is None  # not 2-D
    assert packed_gemm.product(a, b, bias=np.ones(255, np.float32)) is None  # bias shape
    assert packed_gemm.product(a, b, bias=np.ones(256)) is None  # bias dtype


@needs_avx512
def test_matmul_and_linear_forward_and_backward_take_the_packed_path(budget, monkeypatch):
    taken = products_taken(monkeypatch, packed_gemm)
    linear_and_matmul_match_numpy()
    assert taken.count(True) >= 4, taken  # linear, its two gradients, matmul


@needs_avx512
def test_a_layout_is_planned_once_per_thread_count_and_limits(monkeypatch):
    """The plan of a layout is made on its first product and reused; another thread count,
    another layout or changed limits make a new one, and a refusal is remembered too."""
    made = []
    plan = packed_gemm._plan
    monkeypatch.setattr(packed_gemm, "_plan", lambda *args: made.append(args[2:]) or plan(*args))
    monkeypatch.setattr(packed_gemm, "_plans", {})
    threads_now = [2]
    monkeypatch.setattr(threads._budget, "now", lambda: threads_now[0])
    rng = np.random.default_rng(7)
    a = rng.standard_normal((300, 256)).astype(np.float32)
    b = rng.standard_normal((256, 200)).astype(np.float32)
    for _ in range(3):
        _check(packed_gemm.product(a, b), a, b)
    assert len(made) == 1
    bias = rng.standard_normal(200).astype(np.float32)
    _check(packed_gemm.product(a, b, bias=bias), a, b, bias)  # with a bias: its own plan
    _check(packed_gemm.product(a.T.copy().T, b), a, b)  # column-major a: its own plan
    assert len(made) == 3
    threads_now[0] = 1
    _check(packed_gemm.product(a, b), a, b)
    assert len(made) == 4
    small = np.ones((4, 4), np.float32)
    assert packed_gemm.product(small, small) is None
    assert packed_gemm.product(small, small) is None
    assert len(made) == 5  # the refusal planned once
    monkeypatch.setattr(packed_gemm, "MIN_WORK", 1)
    monkeypatch.setattr(packed_gemm, "MIN_ROWS", 1)
    monkeypatch.setattr(packed_gemm, "MIN_COLUMNS", 1)
    _check(packed_gemm.product(small, small), small, small)  # new limits: planned again


def test_disabled_leaves_every_product_to_blas(monkeypatch):
    monkeypatch.setattr(packed_gemm, "ENABLED", False)
    a = np.ones((512, 256), np.float32)
    assert packed_gemm.product(a, a.T) is None


@needs_avx512
def test_products_from_several_threads_at_once_stay_right(monkeypatch):
    """Each caller packs into its own buffer; one holds the pool and the others run their
    units themselves, and every result is right."""
    monkeypatch.setattr(threads._budget, "now", lambda: min(2, os.cpu_count() or 1))

    def work(seed):
        rng = np.random.default_rng(seed)
        for i in range(15):
            m, n = (300, 200) if (seed + i) % 2 else (150, 400)
            a = rng.standard_normal((m, 256)).astype(np.float32)
            b = rng.standard_normal((256, n)).astype(np.float32)
            _check(packed_gemm.product(a, b), a, b)

    at_once(work)


def test_a_cpu_without_avx512_leaves_every_product_to_blas(monkeypatch):
    monkeypatch.setattr(target, "features", lambda: "+sse2,+avx2")
    monkeypatch.setattr(packed_gemm, "_found", {})
    a = np.ones((512, 256), np.float32)
    assert packed_gemm.product(a, a.T) is None
    x = ember.tensor(np.arange(512 * 256, dtype=np.float32).reshape(512, 256) / 1e5)
    np.testing.assert_allclose((x @ x.T).numpy(), x.numpy() @ x.numpy().T, rtol=1e-5)


def _small_gemm(dtype):
    """The small GEMM (cblas row-major ?gemm, int64 sizes) as a ctypes function."""
    import ctypes

    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    size, enum, pointer = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    address = packed_gemm.small_gemm(np.dtype(dtype))
    assert address
    return ctypes.CFUNCTYPE(None, enum, enum, enum, size, size, size, real, pointer, size,
                            pointer, size, real, pointer, size)(address)


@needs_avx512
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (64, 64, 32), (MR + 1, NR + 1, 7),
                                   (5, 70, KC + 44), (40, 3, 2 * KC + 1), (0, 5, 5),
                                   (5, 5, 0)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (2.0, -0.5)])
def test_the_small_gemm_is_blas_gemm(dtype, trans_a, trans_b, m, n, k, alpha, beta):
    """C = alpha op(A) op(B) + beta C for both layouts of each operand, leading dims wider
    than the rows, columns past N untouched, and C not read where beta is 0 (NaN there)."""
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m + 2) if trans_a else (m, k + 2)).astype(dtype)
    b = rng.standard_normal((n, k + 3) if trans_b else (k, n + 3)).astype(dtype)
    op_a = a[:, :m].T if trans_a else a[:, :k]
    op_b = b[:, :k].T if trans_b else b[:, :n]
    c0 = rng.standard_normal((m, n + 4)).astype(dtype)
    c = c0.copy()
    if beta == 0.0:
        c[:, :n] = np.nan
    _small_gemm(dtype)(101, 112 if trans_a else 111, 112 if trans_b else 111, m, n, k, alpha,
                       a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], beta,
                       c.ctypes.data, n + 4)
    want = alpha * (op_a.astype(np.float64) @ op_b.astype(np.float64))
    if beta:
        want = want + beta * c0[:, :n]
    tol = 2e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(c[:, :n], want, rtol=tol, atol=tol * np.sqrt(max(k, 1)) * 4)
    np.testing.assert_array_equal(c[:, n:], c0[:, n:])


@needs_avx512
def test_attention_takes_the_small_gemm_and_blas_gives_the_same(monkeypatch):
    from ember.runtime.kernels import native_attention

    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 3, 70, 16)).astype(np.float32) for _ in range(3))
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(packed_gemm, "ENABLED", enabled)
        monkeypatch.setattr(native_attention, "_LAYOUTS", {})
        out, lse = native_attention.forward(q, k, v, None, None, None, True, 0.0)
        layout = next(iter(native_attention._LAYOUTS.values()))
        assert (layout.words[7] == packed_gemm.small_gemm(np.dtype(np.float32))) is enabled
        grads = native_attention.backward(q, k, v, out, lse, np.ones_like(out),
                                          np.zeros_like(lse), None, None, None, True, 0.0)
        results.append((out, *grads))
    for mine, blas in zip(*results):
        np.testing.assert_allclose(mine, blas, rtol=1e-5, atol=1e-6)
