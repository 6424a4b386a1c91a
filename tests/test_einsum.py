"""ember.einsum beyond the oracle cases (tests/test_oracle_torch.py): clear errors for bad
equations, and the compiled product equal to eager, values and gradients."""

import ember
import numpy as np
import pytest


@pytest.mark.parametrize("equation, shapes, message", [
    ("ij,jk->ik", [(3, 4), (5, 6)], "size 4 in one operand and 5"),
    ("ij,jk->ik", [(3, 4)], "2 operand subscripts"),
    ("ijk->i", [(3, 4)], "3 dims for an operand of 2"),
    ("ij->k", [(3, 4)], "appears in no operand"),
    ("i1->i", [(3, 4)], "invalid subscript"),
    ("ij->ii", [(3, 3)], "more than once"),
])
def test_einsum_refuses_bad_equations_clearly(equation, shapes, message):
    operands = [ember.randn(*s) for s in shapes]
    with pytest.raises(ember.EmberError, match=message):
        ember.einsum(equation, *operands)


def test_compiled_einsum_equals_eager():
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5))

    def attention_scores(a, b):
        return ember.einsum("bhqd,bhkd->bhqk", a, b).softmax(-1).sum(-1)

    compiled = ember.script(attention_scores, strict=True)
    ins = [ember.tensor(a, requires_grad=True) for a in (q, k)]
    ref = [ember.tensor(a, requires_grad=True) for a in (q, k)]
    out, expected = compiled(*ins), attention_scores(*ref)
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    expected.sum().backward()
    for a, b in zip(ins, ref):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)
