"""Row kernels whose rows share an operand run blocks of rows (codegen/llvm/blocked.py)."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from test_compile import assert_close, executors, run_both


def _kernels(compiled):
    return [step.run for step in compiled.steps if step.kind == "native"]


def test_a_batch_1_linear_runs_blocks_of_rows_with_fused_multiply_adds():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 784), dtype=np.float32)
    w = rng.standard_normal((256, 784), dtype=np.float32)
    b = rng.standard_normal(256, dtype=np.float32)
    compiled, eager = executors(lambda x, w, b: F.relu(F.linear(x, w, b)), x, w, b)
    assert len(_kernels(compiled)) == 1
    assert "row_block:" in compiled.llvm_ir
    assert "llvm.fmuladd" in compiled.llvm_ir
    got, want = run_both(compiled, eager, [x, w, b])
    assert_close(got[0], want[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 3, 4, 10, 13])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_small_batch_linears_of_any_row_count_match_eager(batch, rows):
    """Blocks never cross from one batch row's outputs to the next: with rows not a multiple
    of the block, the rows left over run one by one."""
    rng = np.random.default_rng(batch * 100 + rows)
    x = rng.standard_normal((batch, 37), dtype=np.float32)
    w = rng.standard_normal((rows, 37), dtype=np.float32)
    b = rng.standard_normal(rows, dtype=np.float32)
    compiled, eager = executors(lambda x, w, b: F.linear(x, w, b).tanh(), x, w, b)
    got, want = run_both(compiled, eager, [x, w, b])
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)


def test_row_ranges_that_start_and_end_inside_blocks_write_exactly_their_rows():
    """The pool hands a kernel any [start, end) of its rows: each range writes its rows with
    eager's values and leaves every other row as it was."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 50), dtype=np.float32)
    w = rng.standard_normal((11, 50), dtype=np.float32)
    compiled, _ = executors(lambda x, w: F.linear(x, w), x, w)
    (kernel,) = _kernels(compiled)
    want = (w @ x[0]).astype(np.float32)
    for start, end in [(0, 11), (1, 7), (3, 4), (2, 11), (5, 5), (6, 10)]:
        out = np.full(11, np.nan, np.float32)
        kernel.function(x.ctypes.data, w.ctypes.data, out.ctypes.data, start, end)
        np.testing.assert_allclose(out[start:end], want[start:end], rtol=1e-5, atol=1e-5)
        assert np.isnan(out[:start]).all() and np.isnan(out[end:]).all()


CASES = [
    ("sum_of_squares", lambda w, x: ((w - x) ** 2).sum(-1).sqrt()),
    ("max_abs", lambda w, x: (w - x).abs().amax(-1)),
    ("min", lambda w, x: (w * x).amin(-1)),
    ("mean_then_row_epilogue", lambda w, x: (w * x).mean(-1) * 2.0 + 1.0),
]


@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_other_reductions_over_a_shared_operand_run_in_blocks_and_match_eager(name, fn, dtype):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((30, 67)).astype(dtype)
    x = rng.standard_normal(67).astype(dtype)
    compiled, eager = executors(fn, w, x)
    assert "row_block:" in compiled.llvm_ir
    got, want = run_both(compiled, eager, [w, x])
    assert_close(got[0], want[0], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_integer_sums_over_a_shared_operand_are_exact():
    rng = np.random.default_rng(3)
    w = rng.integers(-1000, 1000, (9, 40)).astype(np.int32)
    x = rng.integers(-1000, 1000, 40).astype(np.int32)
    compiled, eager = executors(lambda w, x: (w * x).sum(-1), w, x)
    assert "row_block:" in compiled.llvm_ir
    got, want = run_both(compiled, eager, [w, x])
    assert got[0].dtype == want[0].dtype
    np.testing.assert_array_equal(got[0], want[0])


def test_nan_and_inf_in_the_shared_operand_reach_every_row_of_a_block():
    w = np.ones((8, 16), np.float32)
    x = np.zeros(16, np.float32)
    x[3], x[7] = np.nan, np.inf
    compiled, eager = executors(lambda w, x: (w * x).sum(-1), w, x)
    got, want = run_both(compiled, eager, [w, x])
    assert np.isnan(got[0]).all() and np.isnan(want[0]).all()
    x[3] = 0.0
    got, want = run_both(compiled, eager, [w, x])
    assert_close(got[0], want[0], rtol=0)


def test_rows_that_share_nothing_still_run_one_by_one():
    """A row kernel whose every load moves with the row (a plain row sum, softmax) has no
    operand to share: it keeps its row loop."""
    m = np.random.default_rng(4).standard_normal((16, 64)).astype(np.float32)
    for fn in (lambda m: m.sum(-1), lambda m: F.softmax(m, -1)):
        compiled, eager = executors(fn, m)
        assert "row_block:" not in compiled.llvm_ir
        got, want = run_both(compiled, eager, [m])
        assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_the_scripted_batch_1_mlp_matches_eager():
    import ember.nn as nn

    ember.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 10))
    scripted = ember.script(net)
    x = ember.randn(1, 784)
    with ember.no_grad():
        want = net(x).numpy()
        for _ in range(3):
            got = scripted(x).numpy()
            assert_close(got, want, rtol=1e-4, atol=1e-5)
