"""Binomial without torch: log_prob against math.comb, normalization, moments, sample
statistics (small and huge counts), seeded reproducibility, gradcheck, validation, KL."""

from __future__ import annotations

import math

import ember
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.distributions import Binomial, kl_divergence

N = 20000


def t64(a, requires_grad=False):
    return ember.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def pmf(n, k, p):
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


@pytest.mark.parametrize("use_logits", [False, True])
def test_log_prob_matches_math_comb(use_logits):
    n = [[4.0, 10.0, 25.0], [1.0, 7.0, 40.0]]
    p = np.array([[0.1, 0.5, 0.9], [0.3, 0.02, 0.65]])
    k = [[0.0, 3.0, 25.0], [1.0, 7.0, 20.0]]
    if use_logits:
        d = Binomial(t64(n), logits=t64(np.log(p / (1 - p))))
    else:
        d = Binomial(t64(n), t64(p))
    got = d.log_prob(t64(k)).numpy()
    for i in range(2):
        for j in range(3):
            want = math.log(pmf(int(n[i][j]), int(k[i][j]), p[i, j]))
            assert math.isclose(got[i, j], want, rel_tol=1e-11, abs_tol=1e-11)


def test_log_prob_stable_for_extreme_logits():
    d = Binomial(20, logits=t64([-800.0, 800.0]))
    lp = d.log_prob(t64([[0.0, 20.0], [1.0, 19.0]])).numpy()
    assert np.allclose(lp[0], 0.0)
    assert np.allclose(lp[1], [-800.0 + math.log(20), -800.0 + math.log(20)])


def test_pmf_sums_to_one_and_entropy():
    p = t64([0.05, 0.4, 0.97])
    d = Binomial(30, p)
    support = d.enumerate_support()
    assert tuple(support.shape) == (31, 3)
    assert tuple(d.enumerate_support(expand=False).shape) == (31, 1)
    probs = d.log_prob(support).exp().numpy()
    assert np.allclose(probs.sum(0), 1.0, atol=1e-12)
    for j, pj in enumerate([0.05, 0.4, 0.97]):
        terms = [pmf(30, k, pj) for k in range(31)]
        want = -sum(t * math.log(t) for t in terms if t > 0)
        assert math.isclose(float(d.entropy()[j]), want, rel_tol=1e-10)


def test_mean_mode_variance():
    d = Binomial(t64([10.0, 7.0, 5.0]), t64([0.3, 0.5, 1.0]))
    assert np.allclose(d.mean.numpy(), [3.0, 3.5, 5.0])
    assert np.allclose(d.variance.numpy(), [2.1, 1.75, 0.0])
    assert np.array_equal(d.mode.numpy(), [3.0, 4.0, 5.0])


@pytest.mark.parametrize("n, p", [(1, 0.3), (12, 0.7), (64, 0.5), (65, 0.2), (3000, 0.35),
                                  (10**6, 0.001), (10**9, 0.5)])
def test_sample_statistics(n, p):
    ember.manual_seed(11)
    s = Binomial(t64(float(n)), t64(p)).sample((N,)).numpy()
    assert s.shape == (N,)
    assert np.all((s >= 0) & (s <= n) & (s == np.round(s)))
    mean, var = n * p, n * p * (1 - p)
    assert abs(s.mean() - mean) < 5 * math.sqrt(var / N)
    # the sample variance's standard error, from the fourth central moment
    mu4 = var * (1 + 3 * (n - 2) * p * (1 - p))
    assert abs(s.var() - var) < 5 * math.sqrt((mu4 - var**2) / N) + 1e-12


def test_sample_batch_with_mixed_counts_and_degenerate_probs():
    ember.manual_seed(3)
    n = t64([0.0, 5.0, 200.0, 5000.0])
    d = Binomial(n, t64([0.5, 1.0, 0.0, 0.25]))
    s = d.sample((N,))
    assert tuple(s.shape) == (N, 4) and s.dtype == ember.float64
    s = s.numpy()
    assert np.all(s[:, 0] == 0) and np.all(s[:, 1] == 5) and np.all(s[:, 2] == 0)
    assert abs(s[:, 3].mean() - 1250.0) < 5 * math.sqrt(5000 * 0.1875 / N)
    assert np.array_equal(n.numpy(), [0.0, 5.0, 200.0, 5000.0])  # not changed in place


def test_manual_seed_reproduces_a_sample():
    d = Binomial(t64([3.0, 100.0, 10**7]), logits=t64([0.1, -2.0, 1.5]))
    ember.manual_seed(123)
    a = d.sample((50,)).numpy()
    ember.manual_seed(123)
    b = d.sample((50,)).numpy()
    ember.manual_seed(124)
    c = d.sample((50,)).numpy()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_log_prob_gradcheck_probs_and_logits():
    n, k = t64([3.0, 10.0, 8.0]), t64([1.0, 10.0, 0.0])
    probs = t64([0.2, 0.6, 0.9], requires_grad=True)
    logits = t64([-1.5, 0.3, 2.0], requires_grad=True)
    assert gradcheck(lambda p: Binomial(n, p).log_prob(k), (probs,))
    assert gradcheck(lambda z: Binomial(n, logits=z).log_prob(k), (logits,))
    assert gradcheck(lambda z: Binomial(7, logits=z).entropy(), (logits,))


def test_shapes_and_broadcasting():
    d = Binomial(t64([[5.0], [6.0]]), t64([0.1, 0.2, 0.3]))
    assert tuple(d.batch_shape) == (2, 3) and tuple(d.event_shape) == ()
    assert tuple(d.param_shape) == (2, 3)
    assert tuple(d.sample((4,)).shape) == (4, 2, 3)
    assert tuple(d.log_prob(t64(2.0)).shape) == (2, 3)
    assert tuple(Binomial(4, 0.5).batch_shape) == ()
    assert tuple(Binomial(probs=t64([0.5, 0.5])).total_count.shape) == (2,)


def test_validation_errors():
    with pytest.raises(ValueError, match="not both"):
        Binomial(3, probs=t64(0.5), logits=t64(0.0))
    with pytest.raises(ValueError, match="not both"):
        Binomial(3)
    with pytest.raises(ValueError, match="total_count"):
        Binomial(t64([2.5]), t64([0.5]))
    with pytest.raises(ValueError, match="total_count"):
        Binomial(-1, t64(0.5))
    with pytest.raises(ValueError, match="probs"):
        Binomial(3, t64([1.5]))
    d = Binomial(3, t64([0.5]))
    with pytest.raises(ValueError, match="support"):
        d.log_prob(t64([4.0]))
    with pytest.raises(ValueError, match="support"):
        d.log_prob(t64([1.5]))
    Binomial(t64([2.5]), t64([0.5]), validate_args=False)
    inhomogeneous = Binomial(t64([3.0, 4.0]), t64([0.5, 0.5]))
    with pytest.raises(NotImplementedError, match="Inhomogeneous"):
        inhomogeneous.entropy()
    with pytest.raises(NotImplementedError, match="Inhomogeneous"):
        inhomogeneous.enumerate_support()


def test_kl_divergence():
    p = Binomial(t64([6.0, 6.0, 6.0]), t64([0.2, 0.5, 0.8]))
    q = Binomial(t64([6.0, 6.0, 5.0]), t64([0.4, 0.5, 0.3]))
    kl = kl_divergence(p, q).numpy()
    for j, (a, b) in enumerate([(0.2, 0.4), (0.5, 0.5)]):
        want = sum(pmf(6, k, a) * math.log(pmf(6, k, a) / pmf(6, k, b)) for k in range(7))
        assert math.isclose(kl[j], want, rel_tol=1e-10, abs_tol=1e-14)
    assert kl[2] == math.inf
    with pytest.raises(NotImplementedError, match="q.total_count > p.total_count"):
        kl_divergence(q, p)
