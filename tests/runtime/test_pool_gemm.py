"""GEMMs shared by the native pool as one single-threaded BLAS call per thread
(runtime/pool_gemm.py, codegen/llvm/pool_gemm.py): every layout BLAS reads in place gives
the float64 product, everything else is left to numpy, and the matmul and linear kernels
(forward and backward) take the path."""

import os

import numpy as np
import pytest
from ember.runtime import blas, native, packed_gemm, pool_gemm, threads
from gemm_paths import at_once, linear_and_matmul_match_numpy, products_taken

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no pool")


@pytest.fixture
def two_threads(monkeypatch):
    """The budget at two threads whatever the machine's load, the pool started."""
    monkeypatch.setattr(threads._budget, "now", lambda: 2)
    native._pool._started()
    if native._pool.threads() < 2 or blas.gemm() is None:
        pytest.skip("no pool workers or no cblas GEMM in this process")


def _operand(rng, rows, cols, transposed, dtype, pad=0):
    """A (rows, cols) operand stored transposed or not, its leading dimension `pad` wider."""
    if transposed:
        return rng.standard_normal((cols, rows + pad)).astype(dtype)[:, :rows].T
    return rng.standard_normal((rows, cols + pad)).astype(dtype)[:, :cols]


def _close(got, a, b):
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if got.dtype == np.float32 else 1e-11
    assert got.shape == want.shape and got.dtype == a.dtype
    assert np.abs(got - want).max() <= tol * np.sqrt(a.shape[1]) * max(1, np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("m,k,n,pad", [(512, 128, 384, 0), (100, 300, 77, 3),
                                       (33, 1000, 200, 0), (200, 64, 1000, 5),
                                       (17, 8000, 18, 1)])
def test_every_layout_blas_reads_in_place_gives_the_product(two_threads, dtype, ta, tb, m, k,
                                                             n, pad):
    rng = np.random.default_rng(m * 7 + n)
    a = _operand(rng, m, k, ta, dtype, pad)
    b = _operand(rng, k, n, tb, dtype, pad)
    got = pool_gemm.product(a, b)
    assert got is not None, "a product the pool should share was left to numpy"
    _close(got, a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_product_onto_an_array_is_added_to_it(two_threads, dtype):
    rng = np.random.default_rng(3)
    a = _operand(rng, 300, 200, False, dtype)
    b = _operand(rng, 200, 250, True, dtype)
    start = rng.standard_normal((300, 250)).astype(dtype)
    onto = start.copy()
    assert pool_gemm.product(a, b, onto=onto) is onto
    _close(onto - start, a, b)
    assert pool_gemm.product(a, b, onto=onto.T.copy().T) is None  # not C-contiguous
    assert pool_gemm.product(a, b, onto=onto[:100]) is None  # not the product's shape


def test_products_blas_cannot_read_in_place_or_too_small_are_left_to_numpy(two_threads):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 256)).astype(np.float32)
    b = rng.standard_normal((128, 256)).astype(np.float32)
    assert pool_gemm.product(a[:, ::2], b) is None  # no unit stride
    assert pool_gemm.product(a[:, :128], b.astype(np.float64)) is None  # mixed dtypes
    assert pool_gemm.product(a[:, :128].astype(np.int32), b.astype(np.int32)) is None
    assert pool_gemm.product(a[:16, :128], b[:, :16]) is None  # too little work to share
    assert pool_gemm.product(a[:, :128], b[:100]) is None  # shapes that do not match
    assert pool_gemm.product(a[None], b) is None  # not 2-D


def test_a_budget_of_one_thread_leaves_products_to_one_blas_thread(monkeypatch):
    monkeypatch.setattr(threads._budget, "now", lambda: 1)
    a = np.ones((512, 512), np.float32)
    assert pool_gemm.product(a, a) is None


def test_matmul_and_linear_forward_and_backward_take_the_pool_path(two_threads, monkeypatch):
    monkeypatch.setattr(packed_gemm, "ENABLED", False)  # BLAS's path, as for larger products
    shared = products_taken(monkeypatch, pool_gemm)
    linear_and_matmul_match_numpy()
    assert shared.count(True) >= 4, shared  # linear, its two gradients, matmul


def test_products_from_several_threads_at_once_stay_right(two_threads):
    """One caller's product holds the pool; the others run theirs whole on their own thread
    (one BLAS call each), and every result is right."""

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(20):
            a = rng.standard_normal((300, 200)).astype(np.float32)
            b = rng.standard_normal((200, 250)).astype(np.float32)
            _close(pool_gemm.product(a, b), a, b)

    at_once(work)
