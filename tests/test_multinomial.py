"""ember.multinomial: the right distribution with and without replacement, reproducible from
a seed or a Generator, clear errors for bad weights, and an eager fallback under script."""

import warnings

import ember
import numpy as np
import pytest


def test_with_replacement_samples_follow_the_weights():
    ember.manual_seed(1)
    weights = ember.tensor([[0.1, 0.0, 0.6, 0.3], [2.0, 2.0, 2.0, 2.0]])
    samples = ember.multinomial(weights, 40000, replacement=True).numpy()
    assert samples.shape == (2, 40000) and samples.dtype == np.int64
    freq = np.stack([np.bincount(row, minlength=4) for row in samples]) / 40000
    expected = np.array([[0.1, 0.0, 0.6, 0.3], [0.25] * 4])
    np.testing.assert_allclose(freq, expected, atol=0.01)
    assert freq[0, 1] == 0  # a zero weight is never drawn


def test_without_replacement_draws_distinct_categories_in_the_sequential_law():
    ember.manual_seed(2)
    p = np.array([0.1, 0.0, 0.6, 0.3])
    firsts, seconds = np.zeros(4), np.zeros(4)
    for _ in range(6000):
        a, b = ember.multinomial(ember.tensor(p), 2).tolist()
        assert a != b
        firsts[a] += 1
        seconds[b] += 1
    # P(second = j) = sum_i p_i p_j / (1 - p_i)
    second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j)
                       for j in range(4)])
    np.testing.assert_allclose(firsts / 6000, p, atol=0.02)
    np.testing.assert_allclose(seconds / 6000, second, atol=0.02)


def test_a_seed_or_a_generator_reproduces_the_samples():
    w = ember.rand(3, 10)
    ember.manual_seed(5)
    a = ember.multinomial(w, 4)
    ember.manual_seed(5)
    b = w.multinomial(4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    g1, g2 = ember.Generator().manual_seed(9), ember.Generator().manual_seed(9)
    np.testing.assert_array_equal(ember.multinomial(w, 5, True, generator=g1).numpy(),
                                  ember.multinomial(w, 5, True, generator=g2).numpy())


@pytest.mark.parametrize("weights, n, replacement, message", [
    ([[0.5, -0.1]], 1, True, "element < 0"),
    ([[0.5, float("nan")]], 1, True, "nan"),
    ([[0.0, 0.0]], 1, True, "sum of probabilities"),
    ([[0.5, 0.5]], 3, False, "without replacement"),
    ([[0.5, 0.0, 0.0]], 2, False, "not enough non-negative category"),
    ([[0.5, 0.5]], 0, True, "n_sample <= 0"),
])
def test_bad_weights_are_refused_clearly(weights, n, replacement, message):
    with pytest.raises(ember.EmberError, match=message):
        ember.multinomial(ember.tensor(weights), n, replacement)
    with pytest.raises(ember.EmberError, match="1 or 2 dim"):
        ember.multinomial(ember.rand(2, 2, 2), 1)
    with pytest.raises(ember.EmberError, match="no categories"):
        ember.multinomial(ember.zeros(2, 0), 1)


def test_under_script_sampling_is_a_graph_op_drawing_eagers_numbers():
    """From the global stream, a draw is a graph op: each cached call draws anew, the same
    numbers as eager from the same seed; a generator of its own runs eagerly and says so."""
    fn = ember.script(lambda w: ember.multinomial(w, 2), strict=True)
    weights = ember.rand(3, 5)
    ember.manual_seed(3)
    got = [fn(weights) for _ in range(3)]
    ember.manual_seed(3)
    want = [ember.multinomial(weights, 2) for _ in range(3)]
    for g, w in zip(got, want):
        assert g.shape == (3, 2)
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert fn.specializations[0].calls == 2
    gen = ember.Generator()
    own = ember.script(lambda w: ember.multinomial(w, 2, generator=gen))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = own(weights)
    assert out.shape == (3, 2)
    assert any("multinomial with a generator" in str(w.message) for w in caught)
