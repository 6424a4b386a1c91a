"""ember.testing.assert_close decides as torch.testing.assert_close does at its defaults."""

import ember
import numpy as np
import pytest
from ember.testing import assert_close

torch = pytest.importorskip("torch")


def test_decisions_match_pytorch():
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        for scale in (1e-9, 1e-7, 1e-6, 1e-5, 1e-3):
            a = rng.standard_normal(8).astype(dtype)
            b = (a * (1 + scale * rng.standard_normal(8))).astype(dtype)
            mine = theirs = True
            try:
                assert_close(ember.tensor(a), ember.tensor(b))
            except AssertionError:
                mine = False
            try:
                torch.testing.assert_close(torch.tensor(a), torch.tensor(b))
            except AssertionError:
                theirs = False
            assert mine == theirs, (dtype, scale)
