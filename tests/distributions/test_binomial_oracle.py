"""Binomial against torch.distributions.Binomial in float64: log_prob, entropy, mean,
variance, mode, enumerate_support, kl_divergence and log_prob gradients agree."""

from __future__ import annotations

import ember
import ember.distributions as ed
import numpy as np
import pytest

torch = pytest.importorskip("torch")
td = pytest.importorskip("torch.distributions")

pytestmark = pytest.mark.oracle

rng = np.random.default_rng(17)
RTOL, ATOL = 1e-10, 1e-12


def pair(a, requires_grad=False):
    a = np.asarray(a, dtype=np.float64)
    return (ember.tensor(a, requires_grad=requires_grad),
            torch.tensor(a, requires_grad=requires_grad))


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    theirs, ours = theirs.detach().numpy(), ours.detach().numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def build(kind, counts, param, requires_grad=False):
    """The same Binomial in ember and torch, from probs or logits."""
    (en, tn), (ep, tp) = pair(counts), pair(param, requires_grad)
    key = "probs" if kind == "probs" else "logits"
    return ed.Binomial(en, **{key: ep}), td.Binomial(tn, **{key: tp}), ep, tp


def params(kind, shape):
    if kind == "probs":
        return rng.uniform(0.02, 0.98, size=shape)
    return rng.normal(scale=3.0, size=shape)


@pytest.mark.parametrize("kind", ["probs", "logits"])
def test_log_prob_and_gradients(kind):
    counts = rng.integers(0, 40, size=(3, 4)).astype(np.float64)
    ours, theirs, ep, tp = build(kind, counts, params(kind, (3, 4)), requires_grad=True)
    k = np.floor(rng.uniform(0, 1, size=(5, 3, 4)) * (counts + 1))
    ek, tk = pair(k)
    lo, lt = ours.log_prob(ek), theirs.log_prob(tk)
    close(lo, lt)
    w = rng.normal(size=k.shape)
    (lo * ember.tensor(w)).sum().backward()
    (lt * torch.tensor(w)).sum().backward()
    close(ep.grad, tp.grad)


@pytest.mark.parametrize("kind", ["probs", "logits"])
def test_moments_mode_entropy_support(kind):
    counts = rng.integers(0, 30, size=(2, 5)).astype(np.float64)
    ours, theirs, _, _ = build(kind, counts, params(kind, (2, 5)))
    close(ours.mean, theirs.mean)
    close(ours.variance, theirs.variance)
    close(ours.mode, theirs.mode)
    homogeneous_o, homogeneous_t, _, _ = build(kind, np.full(6, 17.0), params(kind, (6,)))
    close(homogeneous_o.entropy(), homogeneous_t.entropy())
    for expand in (True, False):
        close(homogeneous_o.enumerate_support(expand), homogeneous_t.enumerate_support(expand))


def test_mode_on_ties_and_edges():
    counts, probs = [4.0, 3.0, 5.0, 0.0, 9.0], [0.6, 0.5, 1.0, 0.3, 0.0]
    ours, theirs, _, _ = build("probs", counts, probs)
    close(ours.mode, theirs.mode)


def test_extreme_logits_log_prob():
    ours, theirs, _, _ = build("logits", [20.0, 20.0, 20.0], [-60.0, 0.0, 60.0])
    ek, tk = pair([[0.0, 10.0, 20.0], [3.0, 0.0, 17.0]])
    close(ours.log_prob(ek), theirs.log_prob(tk))


@pytest.mark.parametrize("kind", ["probs", "logits"])
def test_kl_divergence(kind):
    counts_p = np.array([8.0, 8.0, 12.0, 5.0])
    counts_q = np.array([8.0, 8.0, 12.0, 3.0])
    po, pt, _, _ = build(kind, counts_p, params(kind, (4,)))
    qo, qt, _, _ = build(kind, counts_q, params(kind, (4,)))
    close(ed.kl_divergence(po, qo), td.kl_divergence(pt, qt))
