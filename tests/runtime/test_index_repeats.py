"""index_add whose indices are consecutive values each repeated k times in a row (the
gradient of nearest upsampling by an integer factor) sums blocks of the source instead of
scattering (runtime/kernels/index.py _repeats): the same numbers as numpy's add.at for
every dim, short and long blocks and blocks that start past 0, and patterns that are not
such blocks keep the other paths."""

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.runtime.kernels import index as kernels


@pytest.mark.parametrize("pattern,expected", [
    ([0, 0, 1, 1, 2, 2], (0, 3, 2)),
    ([3, 3, 3, 4, 4, 4], (3, 2, 3)),
    ([5, 5], (5, 1, 2)),
    ([0, 0, 1, 1, 1, 2], None),  # unequal repeats
    ([0, 0, 2, 2], None),  # a gap
    ([1, 1, 0, 0], None),  # descending
    ([0, 1, 2], None),  # no repeat: the runs' path
    ([4], None),
])
def test_repeats_are_found_only_where_they_are(pattern, expected):
    assert kernels._repeats(np, np.array(pattern, dtype=np.int64)) == expected


@pytest.mark.parametrize("dim", [0, 1, 2])
@pytest.mark.parametrize("k,m,start", [(2, 4, 0), (3, 5, 2), (17, 2, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_index_add_of_repeated_indices_equals_add_at(dim, k, m, start, dtype):
    rng = np.random.default_rng(k * 10 + m + dim)
    shape = [3, 4, 5]
    shape[dim] = start + m + 1
    x = rng.standard_normal(shape).astype(dtype)
    index = np.repeat(np.arange(start, start + m), k)
    src_shape = list(shape)
    src_shape[dim] = index.size
    src = rng.standard_normal(src_shape).astype(dtype)
    want = x.copy()
    np.add.at(want, (slice(None),) * dim + (index,), src)
    got = kernels._index_add(np, x, index, src, dim)
    assert got.dtype == dtype
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(x, x.copy())  # the input is not written


def test_nearest_upsampling_gradients_through_the_blocks():
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((1, 2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), (x,))
    assert gradcheck(lambda x: F.interpolate(x, scale_factor=(3, 1), mode="nearest"), (x,))
    out = F.interpolate(x, scale_factor=2, mode="nearest")
    g = rng.standard_normal(tuple(out.shape))
    out.backward(ember.tensor(g))
    want = g.reshape(1, 2, 3, 2, 4, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-12, atol=1e-12)
