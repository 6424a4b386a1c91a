"""A linear layer's bias gradient computed inside its weight gradient's GEMM: the packed GEMM
stores B's column sums (or a transposed A's row sums) as it packs them, and a compiled step
runs a sum over dY's leading dims in the matmul step that reads dY (runtime/compiled.py's
_pair_column_sums)."""

import copy

import ember
import numpy as np
import pytest
from ember import nn
from ember.runtime import compiled, packed_gemm
from gemm_paths import needs_avx512

SHAPES = [(512, 128, 512), (128, 512, 512), (512, 512, 128), (70, 300, 600), (200, 600, 64)]


@needs_avx512
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("b_layout", ["rows", "columns"])
def test_column_sums_of_b_beside_the_product(budget, dtype, m, k, n, b_layout):
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = (rng.standard_normal((k, n)) if b_layout == "rows"
         else rng.standard_normal((n, k)).T).astype(dtype)
    sums = np.full(n, np.nan, dtype)
    c = packed_gemm.product(a, b, colsum=sums)
    if c is None:
        assert b.size * b.itemsize > packed_gemm.PACKED_MAX_BYTES or k > packed_gemm.MAX_DEPTH
        return
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(sums, b.astype(np.float64).sum(0), rtol=tol, atol=tol * k)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=tol,
                               atol=tol * k)


@needs_avx512
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_row_sums_of_a_transposed_a_beside_the_product(budget, dtype, m, k, n):
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((k, m)).astype(dtype).T  # dY^T
    b = rng.standard_normal((k, n)).astype(dtype)
    sums = np.full(m, np.nan, dtype)
    c = packed_gemm.product(a, b, rowsum=sums)
    if c is None:
        return  # past the packed GEMM's limits: the caller sums apart
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(sums, a.astype(np.float64).sum(1), rtol=tol, atol=tol * k)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=tol,
                               atol=tol * k)


@needs_avx512
def test_row_sums_of_a_row_major_a_and_bad_outputs_are_refused():
    a = np.ones((256, 128), np.float32)
    b = np.ones((128, 256), np.float32)
    assert packed_gemm.product(a, b, rowsum=np.empty(256, np.float32)) is None
    assert packed_gemm.product(a, b, colsum=np.empty(255, np.float32)) is None
    assert packed_gemm.product(a, b, colsum=np.empty(256, np.float64)) is None


def test_the_kernels_give_both_results_when_the_gemm_refuses(monkeypatch):
    monkeypatch.setattr(packed_gemm, "ENABLED", False)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    c, s = compiled.matmul_with_column_sum(np, a, b)
    np.testing.assert_allclose(c, a @ b)
    np.testing.assert_allclose(s, b.sum(0))
    c, s = compiled.matmul_with_row_sum(np, a, b)
    np.testing.assert_allclose(s, a.sum(1))


def _steps(dtype):
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 96)).to(dtype)
    twin = copy.deepcopy(model)
    made = []
    for m in (model, twin):
        opt = ember.optim.AdamW(m.parameters(), lr=1e-3)

        def step(x, y, m=m, opt=opt):
            loss = ((m(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        made.append(step)
    return model, twin, made


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_a_scripted_step_pairs_its_bias_gradients_and_matches_eager(dtype):
    model, twin, (step, eager) = _steps(dtype)
    scripted = ember.script(step)
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = ember.tensor(rng.standard_normal((8, 32, 64)), dtype=dtype)
        y = ember.tensor(rng.standard_normal((8, 32, 96)), dtype=dtype)
        got, want = scripted(x, y).item(), eager(x, y).item()
        assert got == pytest.approx(want, rel=1e-5 if dtype == ember.float32 else 1e-12)
    tol = 1e-5 if dtype == ember.float32 else 1e-12
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=tol, atol=tol)
    program = next(sp.program for sp in scripted.specializations if sp.program is not None)
    kernels = [s.run.kernel for s in program.steps if s.kind == "eager"]
    paired = [k for k in kernels if k in (compiled.matmul_with_column_sum,
                                          compiled.matmul_with_row_sum)]
    assert len(paired) == 2  # both layers' bias gradients
    assert not any(s.node.op == "sum" and len(s.node.inputs[0].type.shape) == 3
                   for s in program.steps if s.kind == "eager")
