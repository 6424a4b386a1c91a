"""A compiled program writes a state's update over the state's own array (CompiledProgram's
donation) also when the same kernel computes other outputs from the old state, as an
optimizer's update of m, v and the parameter does: every value of a loop is computed before
its first store, so the results equal the eager program's, and a scripted AdamW step writes
its parameters and both moments in place."""

import ember
import numpy as np
import pytest
from ember.ir.passes import run_pipeline
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program, evaluate_with_kernels


def _programs(fn, arrays, donate):
    """(compiled with `donate`, eager) programs of fn's optimized graph."""
    graph = ember.trace(fn, tuple(ember.tensor(a) for a in arrays))
    run_pipeline(graph, evaluate=evaluate_with_kernels)
    eager = Program(graph)
    return CompiledProgram(graph, "updates", donate=donate), eager


def _run(fn, arrays, donate):
    """The compiled outputs on copies of arrays (and those copies), and the eager outputs."""
    compiled, eager = _programs(fn, arrays, donate)
    inputs = [a.copy() for a in arrays]
    got = compiled(np, inputs)
    want = eager(np, [a.copy() for a in arrays])
    return got, want, inputs, compiled


def _moment_and_parameter(m, p, g):
    m_new = m * 0.9 + g * 0.1
    # reads the old m at the element where m_new is written
    return m_new, p - m * 0.5 - m_new * 0.25


def _parameter_and_moment(m, p, g):
    m_new, p_new = _moment_and_parameter(m, p, g)
    return p_new, m_new


def _normalized_update(m, p, g):
    # a row reduction in the same kernel as the updates, reading the state too
    scale = (g * g + m * m).sum(-1, keepdim=True) + 1.0
    m_new = m * 0.9 + g / scale
    return m_new, p - m * 0.5 - m_new * 0.25


def _arrays(shapes, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("shape", [(1000,), (7, 33), ()], ids=["vector", "matrix", "scalar"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("fn", "donate"), [(_moment_and_parameter, {0: 0, 1: 1}),
                                            (_parameter_and_moment, {0: 1, 1: 0})],
                         ids=["moment_first", "parameter_first"])
def test_outputs_computed_from_a_state_written_over_it_see_its_old_value(shape, dtype, fn,
                                                                          donate):
    arrays = _arrays([shape] * 3, 0, dtype)
    got, want, inputs, compiled = _run(fn, arrays, donate)
    for out, (j, i) in enumerate(sorted(donate.items())):
        assert got[j] is inputs[i], f"output {j} not written over input {i}"
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_a_row_value_an_inner_loop_reads_is_not_overwritten_before_it():
    # x (rows, 1) updated in place is read again, broadcast, by the (rows, 8) output: that
    # output's loop runs after the row-level store, so the update must not go over x
    def fn(x, y):
        return x * 2.0, (x + y) * x

    arrays = _arrays([(5, 1), (5, 8)], 1)
    got, want, inputs, _ = _run(fn, arrays, {0: 0})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got[1], (arrays[0] + arrays[1]) * arrays[0])


def _model_and_optimizer(seed):
    ember.manual_seed(seed)
    model = ember.nn.Sequential(ember.nn.Linear(6, 5), ember.nn.GELU(),
                                ember.nn.LayerNorm(5), ember.nn.Linear(5, 3))
    optimizer = ember.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.9),
                                  weight_decay=0.1)
    return model, optimizer


def _training_step(model, optimizer):
    def step(x, y):
        loss = ember.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ember.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        return loss

    return step


def test_a_scripted_adamw_step_writes_parameters_and_moments_in_place_as_eager_updates_them():
    eager_model, eager_optimizer = _model_and_optimizer(3)
    model, optimizer = _model_and_optimizer(3)
    eager_step = _training_step(eager_model, eager_optimizer)
    scripted = ember.script(_training_step(model, optimizer))
    rng = np.random.default_rng(4)
    for call in range(4):
        x = ember.tensor(rng.standard_normal((8, 6)).astype(np.float32))
        y = ember.tensor(rng.integers(0, 3, 8))
        want = eager_step(x, y)
        got = scripted(x, y)
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
        for p, q in zip(model.parameters(), eager_model.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"call {call}")
            s, t = optimizer.state[p], eager_optimizer.state[q]
            for key in ("exp_avg", "exp_avg_sq"):
                np.testing.assert_allclose(s[key].numpy(), t[key].numpy(), rtol=1e-5,
                                           atol=1e-7, err_msg=f"{key}, call {call}")
    program = scripted.specializations[-1].program
    in_place = sum(out.buffer.__class__ is tuple for kind, step, _ in program.steps
                   if kind == "native" for out in step.outputs)
    # each parameter, its exp_avg and its exp_avg_sq written over their own arrays
    assert in_place >= 3 * len(list(model.parameters()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_kernel_with_a_row_reduction_writes_its_updates_in_place(dtype):
    arrays = _arrays([(9, 40)] * 3, 2, dtype)
    program, _ = _programs(_normalized_update, arrays, {0: 0, 1: 1})
    assert any(e.op == "reduce" for kind, step, _ in program.steps if kind == "native"
               for e in step.spec.exprs), "the reduction is not in the updates' kernel"
    got, want, inputs, _ = _run(_normalized_update, arrays, {0: 0, 1: 1})
    assert got[0] is inputs[0] and got[1] is inputs[1]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
