"""Compiled equals eager for the scans (cumprod, logcumsumexp), the sorting-based ops (median,
mode, unique, searchsorted, bincount, histc), the scatter reductions and the distance ops:
values, and gradients where the op has them."""

import ember
import numpy as np
import pytest


def _compare(fn, inputs, grad: bool):
    """fn scripted strictly (no eager fallback) against fn run eagerly, twice: the second call
    runs the cached program."""
    compiled = ember.script(fn, strict=True)
    eager_in = [ember.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in inputs]
    comp_in = [ember.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in inputs]
    for _ in range(2):
        for t in comp_in:
            t.grad = None
        out = compiled(*comp_in)
        if grad:
            out.sum().backward()
    expected = fn(*eager_in)
    if grad:
        expected.sum().backward()
    # fused reductions may sum in another order than numpy: equal to the last few ulps
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-13,
                               atol=0)
    if grad:
        for c, e in zip(comp_in, eager_in):
            if e.grad is not None:
                np.testing.assert_allclose(c.grad.numpy(), e.grad.numpy(), rtol=1e-6,
                                           atol=1e-12)


def test_compiled_cumprod_and_logcumsumexp_equal_eager():
    x = np.random.default_rng(1).standard_normal((4, 6))
    x[1, 2] = x[2, 0] = x[2, 4] = 0.0  # zeros: the gradient's special cases

    def fn(t):
        return ember.cumprod(t, 1) * 2 + t.logcumsumexp(0)

    _compare(fn, [x], grad=True)


def test_compiled_median_mode_and_counting_equal_eager():
    r = np.random.default_rng(2)
    x = r.integers(0, 4, (4, 7)).astype("float64") + 0.5  # ties for mode
    sequence = np.sort(r.uniform(0, 4, (4, 5)), axis=1)
    labels = np.array([0, 3, 3, 1, 5])

    def fn(t, s, i):
        values, _ = ember.median(t, 1)
        counted = ember.bincount(i).float().sum() + ember.histc(t, 6).sum()
        found = ember.searchsorted(s, t[:, :3]).sum() + ember.bucketize(t, s[0]).sum()
        return (values * 2 + ember.median(t) + t.nanmedian(0).values.sum() + t.mode(1).values
                + counted + found)

    _compare(fn, [x, sequence, labels], grad=True)


def test_unique_runs_eagerly_under_script_and_says_why():
    x = ember.tensor([3, 1, 2, 1, 3])
    fn = lambda t: ember.unique(t, return_counts=True)[1] * 2  # noqa: E731
    with pytest.raises(ember.tracer.ScriptFallback, match="unique"):
        ember.script(fn, strict=True)(x)
    with pytest.warns(UserWarning, match="unique"):
        out = ember.script(fn)(x)
    np.testing.assert_array_equal(out.numpy(), fn(x).numpy())


def test_compiled_scatter_reductions_equal_eager():
    r = np.random.default_rng(3)
    x = np.round(r.uniform(-2, 2, (3, 5)) * 2) / 2  # ties and zeros
    src = np.round(r.uniform(-2, 2, (4, 5)) * 2) / 2
    index = r.integers(0, 3, (4, 5))

    def fn(t, s, i):
        total = t.scatter(0, i, s, reduce="add") + ember.take_along_dim(t, i[:3], 0)
        for reduce in ("sum", "prod", "mean", "amax", "amin"):
            total = total + ember.scatter_reduce(t, 0, i, s, reduce) * 2
            total = total + t.scatter_reduce(0, i, s, reduce, include_self=False)
        return total

    _compare(fn, [x, src, index], grad=True)


def test_compiled_distances_and_diagonal_ops_equal_eager():
    r = np.random.default_rng(4)
    a, b = r.standard_normal((5, 3)), r.standard_normal((4, 3))

    def fn(s, t):
        out = (ember.cdist(s, t) + ember.cdist(s, t, p=1) * 2 + ember.cdist(s, t, p=3))[:4]
        out = out + ember.cosine_similarity(s[:4], t).unsqueeze(1)
        out = out + ember.nn.functional.pairwise_distance(s[:4], t, keepdim=True)
        out = out + ember.diag_embed(t[:, 0])[:, :4] + s[:4, :3].trace()
        return out + s.unfold(0, 4, 1).sum(-1).sum(-1)[:1, None]

    _compare(fn, [a, b], grad=True)
