"""A cat whose parts are fused kernels' outputs read by nothing else is written by those kernels
into its own array (runtime/cats.py): the values equal the eager program's along every dim,
through reshapes, over repeated calls, and a cat whose parts or array are needed elsewhere
keeps its eager step."""

import ember
import numpy as np
import pytest
from ember.ir.passes import run_pipeline
from ember.runtime import compiled
from ember.runtime.compiled import CompiledProgram
from ember.runtime.program import Program, evaluate_with_kernels


def _programs(fn, arrays):
    graph = ember.trace(fn, tuple(ember.tensor(a) for a in arrays))
    run_pipeline(graph, evaluate=evaluate_with_kernels)
    eager = Program(graph)
    return CompiledProgram(graph, "cats"), eager


def _eager_cats(program) -> int:
    return sum(kind == "eager" and node.op == "cat" for kind, _, node in program.steps)


def _arrays(shapes, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _check(fn, shapes, *, in_place: bool, calls: int = 3, dtype=np.float32):
    program, eager = _programs(fn, _arrays(shapes, 0, dtype))
    assert (_eager_cats(program) == 0) == in_place, program.describe()
    for call in range(calls):
        arrays = _arrays(shapes, call + 1, dtype)
        got = program(np, [a.copy() for a in arrays])
        want = eager(np, [a.copy() for a in arrays])
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            # fused sums add in another order, and exp is mathlib's (a few ulp)
            tight = 1e-13 if g.dtype == np.float64 else 4e-6
            np.testing.assert_allclose(g, w, rtol=tight, atol=tight, err_msg=f"call {call}")
    return program


def _heads_joined(q, k, v):
    # the gradient of an attention's c_attn input: (B, H, T, D) parts, each moved to
    # (B, T, H, D), viewed as (B, T, C) and joined along C, then used by a product
    parts = [(x * 2.0 + 1.0).transpose(1, 2).contiguous().reshape(2, 5, 12) for x in (q, k, v)]
    joined = ember.cat(parts, dim=2)
    return joined @ ember.ones(36, 4, dtype=q.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_heads_moved_and_joined_are_written_into_the_joined_array(dtype):
    _check(_heads_joined, [(2, 3, 5, 4)] * 3, in_place=True, dtype=dtype)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_parts_of_different_sizes_along_any_dim(dim):
    sizes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    sizes = [tuple(n + k if d == dim % 3 else n for d, n in enumerate(s))
             for k, s in enumerate(sizes)]

    def fn(a, b, c):
        return ember.cat([ember.exp(a), b * b, c - 1.0], dim=dim).sum(-1)

    _check(fn, sizes, in_place=True)


def test_a_part_read_elsewhere_keeps_the_cat():
    def fn(a, b):
        x, y = ember.exp(a), b * 3.0
        return ember.cat([x, y], dim=1).sum(0), x

    _check(fn, [(4, 3), (4, 5)], in_place=False)


def test_a_cat_the_caller_receives_keeps_its_eager_step():
    def fn(a, b):
        return ember.cat([a * 2.0, b + 1.0], dim=0)

    _check(fn, [(3, 4), (2, 4)], in_place=False)


def test_one_output_twice_in_a_cat_keeps_the_cat():
    def fn(a):
        x = ember.exp(a)
        return ember.cat([x, x], dim=0).sum(0)

    _check(fn, [(3, 4)], in_place=False)


def test_a_part_with_a_broadcast_operand_and_a_second_output():
    def fn(a, b, row):
        x = a * row  # (6, 4) * (4,): no flat run
        y = ember.exp(b)
        return ember.cat([x, y], dim=1).sum(0), y + 1.0

    _check(fn, [(6, 4), (6, 3), (4,)], in_place=True)


def test_the_switch_off_keeps_every_cat(monkeypatch):
    monkeypatch.setattr(compiled, "CATS_IN_PLACE", False)
    _check(_heads_joined, [(2, 3, 5, 4)] * 3, in_place=False)


class _SelfAttention(ember.nn.Module):
    """nanoGPT's causal self-attention: one projection split into q, k and v."""

    def __init__(self, width, heads):
        super().__init__()
        self.c_attn = ember.nn.Linear(width, 3 * width)
        self.c_proj = ember.nn.Linear(width, width)
        self.heads = heads

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = ember.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


def test_a_scripted_attention_step_trains_as_eager_with_its_qkv_gradient_joined_in_place():
    ember.manual_seed(5)
    eager = _SelfAttention(8, 2)
    model = _SelfAttention(8, 2)
    model.load_state_dict(eager.state_dict())

    def step(net):
        def run(x):
            out = net(x)
            loss = (out * out).sum()
            loss.backward()
            return loss

        return run

    scripted = ember.script(step(model))
    run_eager = step(eager)
    rng = np.random.default_rng(6)
    for call in range(3):
        x = rng.standard_normal((3, 5, 8)).astype(np.float32)
        for p in (*eager.parameters(), *model.parameters()):
            p.grad = None
        want = run_eager(ember.tensor(x))
        got = scripted(ember.tensor(x))
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5)
        for (name, p), q in zip(model.named_parameters(), eager.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name}.grad, call {call}")
    program = scripted.specializations[-1].program
    assert program.cat_slots and _eager_cats(program) == 0
