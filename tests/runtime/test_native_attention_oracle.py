"""The native attention kernels against PyTorch's scaled_dot_product_attention: values and
gradients through F.scaled_dot_product_attention, at the benchmarks' GPT shape, at long
sequences (several query blocks, rows of 1024 keys) and with masks."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.runtime.kernels import native_attention

torch = pytest.importorskip("torch")

CASES = {
    # name: (q shape, k shape, mask kind)
    "gpt": ((8, 4, 64, 32), (8, 4, 64, 32), "causal"),
    "long_causal": ((1, 2, 1024, 64), (1, 2, 1024, 64), "causal"),
    "long_odd": ((1, 3, 301, 32), (1, 3, 517, 32), "none"),
    "bool_mask": ((2, 3, 45, 16), (2, 3, 77, 16), "bool"),
    "float_mask": ((5, 45, 16), (5, 77, 16), "float"),
}


@pytest.fixture
def calls(monkeypatch):
    counted = {"forward": 0, "backward": 0}
    for name in counted:
        original = getattr(native_attention, name)

        def spy(*args, _original=original, _name=name):
            found = _original(*args)
            counted[_name] += found is not None
            return found

        monkeypatch.setattr(native_attention, name, spy)
    return counted


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_match_torch(calls, case, dtype):
    q_shape, k_shape, kind = CASES[case]
    rng = np.random.default_rng(len(case))
    arrays = [rng.standard_normal(s).astype(dtype) for s in (q_shape, k_shape, k_shape)]
    kwargs_e, kwargs_t = {"is_causal": kind == "causal"}, {"is_causal": kind == "causal"}
    if kind in ("bool", "float"):
        shape = (q_shape[-2], k_shape[-2])
        if kind == "bool":
            mask = rng.random(shape) < 0.6
            mask[3] = False  # a query that attends no key
        else:
            mask = rng.standard_normal(shape).astype(dtype)
            mask[rng.random(shape) < 0.3] = -np.inf
        kwargs_e["attn_mask"], kwargs_t["attn_mask"] = ember.tensor(mask), torch.tensor(mask)
    e = [ember.tensor(a, requires_grad=True) for a in arrays]
    t = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = F.scaled_dot_product_attention(*e, **kwargs_e)
    want = torch.nn.functional.scaled_dot_product_attention(*t, **kwargs_t)
    tol = {"rtol": 1e-4, "atol": 2e-5} if dtype == "float32" else {"rtol": 1e-10,
                                                                    "atol": 1e-12}
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), **tol)
    g = rng.standard_normal(want.shape).astype(dtype)
    out.backward(ember.tensor(g))
    want.backward(torch.tensor(g))
    for got, expected in zip(e, t):
        np.testing.assert_allclose(got.grad.numpy(), expected.grad.numpy(), **tol)
    assert calls == {"forward": 1, "backward": 1}
