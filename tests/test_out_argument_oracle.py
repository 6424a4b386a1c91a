"""out= against PyTorch: the same values, dtype and shape land in out."""

from __future__ import annotations

import warnings

import ember
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.oracle


@pytest.mark.parametrize("name,args", [
    ("add", ((3, 4), (3, 4))), ("mul", ((3, 4), (4,))), ("matmul", ((3, 4), (4, 2))),
    ("div", ((2, 5), (2, 5))), ("sigmoid", ((6,),)), ("mm", ((2, 3), (3, 3))),
])
@pytest.mark.parametrize("out_shape", [(0,), None])
def test_out_matches_torch(name, args, out_shape):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in args]
    expected = getattr(torch, name)(*[torch.tensor(a) for a in arrays])
    shape = out_shape if out_shape is not None else tuple(expected.shape)
    t_out, e_out = torch.empty(shape), ember.empty(shape)
    getattr(torch, name)(*[torch.tensor(a) for a in arrays], out=t_out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ember, name)(*[ember.tensor(a) for a in arrays], out=e_out)
    assert tuple(e_out.shape) == tuple(t_out.shape)
    np.testing.assert_allclose(e_out.numpy(), t_out.numpy(), rtol=1e-5, atol=1e-6)
