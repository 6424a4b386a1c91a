"""ember.distributions without torch: shapes, seeded sampling, sample statistics, log_prob,
entropy, cdf/icdf and KL against closed forms, gradients (gradcheck in float64), validation
errors, and a REINFORCE loop as pytorch/examples writes it."""

from __future__ import annotations

import ast
import math
import os

import ember
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
    Uniform,
    constraints,
    kl_divergence,
    register_kl,
)

rng = np.random.default_rng(0)


def t64(a, requires_grad=False):
    return ember.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def make(name):
    """A batch of shape (2, 3) of each distribution, float32 parameters."""
    loc, scale = ember.randn(2, 3), ember.rand(2, 3) + 0.5
    return {
        "normal": lambda: Normal(loc, scale),
        "uniform": lambda: Uniform(loc, loc + scale),
        "bernoulli": lambda: Bernoulli(probs=ember.rand(2, 3)),
        "bernoulli_logits": lambda: Bernoulli(logits=ember.randn(2, 3)),
        "categorical": lambda: Categorical(probs=ember.rand(2, 3, 4)),
        "categorical_logits": lambda: Categorical(logits=ember.randn(2, 3, 4)),
        "one_hot": lambda: OneHotCategorical(logits=ember.randn(2, 3, 4)),
        "independent": lambda: Independent(Normal(loc, scale), 1),
    }[name]()


EVENT_SHAPES = {"one_hot": (4,), "independent": (3,)}
NAMES = ["normal", "uniform", "bernoulli", "bernoulli_logits", "categorical",
         "categorical_logits", "one_hot", "independent"]


# -- shapes and dtypes -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sample_shape", [(), (5,), (4, 1)])
def test_samples_have_sample_batch_and_event_shape(name, sample_shape):
    d = make(name)
    event = EVENT_SHAPES.get(name, ())
    batch = (2,) if name == "independent" else (2, 3)
    assert tuple(d.batch_shape) == batch and tuple(d.event_shape) == event
    x = d.sample(sample_shape)
    assert tuple(x.shape) == sample_shape + batch + event
    assert tuple(d.log_prob(x).shape) == sample_shape + batch
    assert tuple(d.entropy().shape) == batch
    assert not x.requires_grad


def test_parameters_broadcast_to_one_batch_shape():
    d = Normal(ember.zeros(3, 1), ember.ones(4))
    assert d.batch_shape == ember.Size([3, 4])
    assert tuple(d.loc.shape) == (3, 4) and tuple(d.scale.shape) == (3, 4)
    assert tuple(d.sample((2,)).shape) == (2, 3, 4)
    assert Uniform(ember.zeros(2, 1), ember.ones(1, 5)).batch_shape == ember.Size([2, 5])


def test_python_numbers_give_an_empty_batch_shape_of_the_default_dtype():
    d = Normal(0.0, 1.0)
    assert d.batch_shape == ember.Size([]) and d.loc.dtype == ember.float32
    assert tuple(d.sample().shape) == () and tuple(d.sample((7,)).shape) == (7,)
    assert Bernoulli(0.3).batch_shape == ember.Size([])
    assert Uniform(0, 2).entropy().item() == pytest.approx(math.log(2))


def test_float64_parameters_give_float64_samples_and_log_probs():
    d = Normal(t64([0.0, 1.0]), 2.0)  # the number takes the tensor's dtype
    assert d.scale.dtype == ember.float64
    x = d.rsample((3,))
    assert x.dtype == ember.float64 and d.log_prob(x).dtype == ember.float64
    assert Uniform(0.0, t64([1.0])).sample().dtype == ember.float64
    assert Categorical(logits=t64([[0.0, 1.0]])).probs.dtype == ember.float64
    assert Bernoulli(probs=t64([0.5])).sample().dtype == ember.float64


def test_a_non_tuple_sample_shape_is_refused():
    with pytest.raises(ember.EmberError, match=r"sample\(\(5,\)\)"):
        Normal(0.0, 1.0).sample(5)


# -- randomness ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_manual_seed_reproduces_samples(name):
    ember.manual_seed(0)
    d = make(name)
    ember.manual_seed(123)
    a = d.sample((50,)).numpy()
    ember.manual_seed(123)
    b = d.sample((50,)).numpy()
    ember.manual_seed(124)
    c = d.sample((50,)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


N = 20000


def test_normal_samples_have_its_mean_and_variance():
    ember.manual_seed(1)
    d = Normal(ember.tensor([1.5, -2.0]), ember.tensor([0.7, 3.0]))
    for x in (d.sample((N,)), d.rsample((N,))):
        x = x.numpy()
        # four standard errors of the mean
        assert (np.abs(x.mean(0) - [1.5, -2.0]) < 4 * np.array([0.7, 3.0]) / N**0.5).all()
        np.testing.assert_allclose(x.var(0), [0.49, 9.0], rtol=0.05)


def test_uniform_samples_cover_low_to_high_evenly():
    ember.manual_seed(2)
    x = Uniform(ember.tensor(-1.0), ember.tensor(3.0)).sample((N,)).numpy()
    assert x.min() >= -1.0 and x.max() < 3.0
    assert x.mean() == pytest.approx(1.0, abs=0.05)
    assert x.var() == pytest.approx(16 / 12, rel=0.05)


def test_bernoulli_and_categorical_frequencies_follow_the_probabilities():
    ember.manual_seed(3)
    p = np.array([0.1, 0.5, 0.9])
    freq = Bernoulli(probs=ember.tensor(p)).sample((N,)).numpy().mean(0)
    np.testing.assert_allclose(freq, p, atol=0.02)
    weights = np.array([[1.0, 2.0, 7.0], [5.0, 0.0, 5.0]])
    x = Categorical(probs=ember.tensor(weights)).sample((N,)).numpy()
    assert x.dtype == np.int64
    for row in range(2):
        counts = np.bincount(x[:, row], minlength=3) / N
        np.testing.assert_allclose(counts, weights[row] / weights[row].sum(), atol=0.02)
    onehot = OneHotCategorical(probs=ember.tensor(weights[0])).sample((N,)).numpy()
    assert set(np.unique(onehot)) == {0.0, 1.0} and (onehot.sum(-1) == 1).all()
    np.testing.assert_allclose(onehot.mean(0), weights[0] / 10, atol=0.02)


# -- closed forms ----------------------------------------------------------------------------


def test_normal_log_prob_cdf_and_entropy_match_the_formulas():
    loc, scale = rng.normal(size=(4, 1)), rng.uniform(0.2, 3, size=5)
    x = rng.normal(size=(4, 5)) * 2
    d = Normal(t64(loc), t64(scale))
    expected = -((x - loc) ** 2) / (2 * scale**2) - np.log(scale) - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(d.log_prob(t64(x)).numpy(), expected, rtol=1e-12)
    cdf = 0.5 * (1 + np.vectorize(math.erf)((x - loc) / (scale * math.sqrt(2))))
    np.testing.assert_allclose(d.cdf(t64(x)).numpy(), cdf, rtol=1e-12)
    entropy = 0.5 * np.log(2 * math.pi * math.e * scale**2) + 0 * loc
    np.testing.assert_allclose(d.entropy().numpy(), entropy, rtol=1e-12)
    assert d.mean is d.loc and d.mode is d.loc
    np.testing.assert_allclose(d.variance.numpy(), np.broadcast_to(scale**2, (4, 5)))
    np.testing.assert_allclose(d.stddev.numpy(), np.broadcast_to(scale, (4, 5)))


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_normal_icdf_inverts_cdf(dtype):
    d = Normal(ember.tensor(0.5, dtype=dtype), ember.tensor(2.0, dtype=dtype))
    x = ember.tensor(np.linspace(-8, 9, 41), dtype=dtype)
    back = d.icdf(d.cdf(x)).numpy()
    np.testing.assert_allclose(back, x.numpy(), rtol=1e-8 if dtype == ember.float64 else 2e-3,
                               atol=1e-8 if dtype == ember.float64 else 2e-3)
    q = Normal(t64(0.0), 1.0).icdf(t64([0.5, 0.975, 0.025, 1e-10, 0.0, 1.0]))
    np.testing.assert_allclose(q.numpy()[:4], [0.0, 1.959963984540054, -1.959963984540054,
                                               -6.361340902404056], rtol=1e-6, atol=1e-7)
    assert q.numpy()[4] == -np.inf and q.numpy()[5] == np.inf


def test_categorical_normalizes_probs_and_logits():
    w = rng.uniform(0.1, 2, size=(3, 5))
    by_probs = Categorical(probs=t64(w))
    np.testing.assert_allclose(by_probs.probs.numpy(), w / w.sum(-1, keepdims=True))
    np.testing.assert_allclose(by_probs.logits.numpy(), np.log(w / w.sum(-1, keepdims=True)))
    logits = rng.normal(size=(3, 5))
    by_logits = Categorical(logits=t64(logits))
    lse = np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(by_logits.logits.numpy(), logits - lse, rtol=1e-12)
    p = np.exp(logits - lse)
    np.testing.assert_allclose(by_logits.probs.numpy(), p, rtol=1e-12)
    assert by_logits.param_shape == ember.Size([3, 5])
    values = np.array([[0, 4, 2], [1, 1, 3]])
    np.testing.assert_allclose(by_logits.log_prob(ember.tensor(values)).numpy(),
                               np.log(p[np.arange(3), values]), rtol=1e-12)
    np.testing.assert_allclose(by_logits.entropy().numpy(), -(p * np.log(p)).sum(-1),
                               rtol=1e-12)
    np.testing.assert_array_equal(by_logits.mode.numpy(), p.argmax(-1))
    assert np.isnan(by_logits.mean.numpy()).all() and tuple(by_logits.variance.shape) == (3,)
    support = by_logits.enumerate_support()
    assert tuple(support.shape) == (5, 3)
    np.testing.assert_array_equal(support.numpy()[:, 0], np.arange(5))
    assert tuple(by_logits.enumerate_support(expand=False).shape) == (5, 1)


def test_categorical_entropy_stays_finite_with_zero_probabilities():
    d = Categorical(probs=ember.tensor([0.0, 0.5, 0.5]))
    assert d.entropy().item() == pytest.approx(math.log(2), rel=1e-6)


def test_bernoulli_matches_the_formulas():
    p = rng.uniform(0.05, 0.95, size=4)
    d = Bernoulli(probs=t64(p))
    np.testing.assert_allclose(d.logits.numpy(), np.log(p / (1 - p)), rtol=1e-12)
    for v in (0.0, 1.0):
        expected = np.log(p) if v else np.log1p(-p)
        np.testing.assert_allclose(d.log_prob(t64([v] * 4)).numpy(), expected, rtol=1e-10)
    entropy = -(p * np.log(p) + (1 - p) * np.log1p(-p))
    np.testing.assert_allclose(d.entropy().numpy(), entropy, rtol=1e-10)
    np.testing.assert_allclose(d.variance.numpy(), p * (1 - p))
    mode = Bernoulli(probs=ember.tensor([0.2, 0.5, 0.7])).mode.numpy()
    assert mode[0] == 0 and np.isnan(mode[1]) and mode[2] == 1
    assert tuple(Bernoulli(probs=ember.rand(3)).enumerate_support().shape) == (2, 3)
    logits = Bernoulli(logits=t64([-30.0, 0.0, 30.0]))
    np.testing.assert_allclose(logits.log_prob(t64([1.0, 1.0, 0.0])).numpy(),
                               [-30.0, -math.log(2), -30.0], rtol=1e-10)


def test_uniform_matches_the_formulas():
    d = Uniform(t64([0.0, -2.0]), t64([4.0, 3.0]))
    lp = d.log_prob(t64([[1.0, 2.9], [0.0, -2.0]])).numpy()
    np.testing.assert_allclose(lp, np.log([[0.25, 0.2], [0.25, 0.2]]))
    outside = Uniform(t64([0.0]), t64([1.0]), validate_args=False).log_prob(t64([1.5]))
    assert outside.item() == -np.inf
    np.testing.assert_allclose(d.cdf(t64([2.0, 0.5])).numpy(), [0.5, 0.5])
    np.testing.assert_allclose(d.icdf(t64([0.25, 1.0])).numpy(), [1.0, 3.0])
    np.testing.assert_allclose(d.mean.numpy(), [2.0, 0.5])
    np.testing.assert_allclose(d.variance.numpy(), [16 / 12, 25 / 12])
    np.testing.assert_allclose(d.stddev.numpy(), [4 / 12**0.5, 5 / 12**0.5])
    np.testing.assert_allclose(d.entropy().numpy(), np.log([4.0, 5.0]))


def test_independent_sums_log_prob_and_entropy_over_the_event_dims():
    base = Normal(t64(rng.normal(size=(2, 3, 4))), t64(rng.uniform(0.5, 2, size=(2, 3, 4))))
    d = Independent(base, 2)
    assert d.batch_shape == ember.Size([2]) and d.event_shape == ember.Size([3, 4])
    x = t64(rng.normal(size=(5, 2, 3, 4)))
    np.testing.assert_allclose(d.log_prob(x).numpy(), base.log_prob(x).numpy().sum((-1, -2)))
    np.testing.assert_allclose(d.entropy().numpy(), base.entropy().numpy().sum((-1, -2)))
    assert d.has_rsample and d.mean is base.mean
    assert repr(d).startswith("Independent(Normal(") and repr(d).endswith(", 2)")


def test_one_hot_categorical_scores_the_hot_index():
    logits = rng.normal(size=(2, 4))
    d = OneHotCategorical(logits=t64(logits))
    c = Categorical(logits=t64(logits))
    x = ember.tensor(np.eye(4)[[3, 1]])
    np.testing.assert_allclose(d.log_prob(x).numpy(), c.log_prob(ember.tensor([3, 1])).numpy())
    np.testing.assert_allclose(d.entropy().numpy(), c.entropy().numpy())
    np.testing.assert_array_equal(d.mode.numpy(), np.eye(4)[logits.argmax(-1)])
    assert tuple(d.enumerate_support().shape) == (4, 2, 4)


# -- KL divergence ---------------------------------------------------------------------------


def test_kl_normal_normal_matches_the_formula_and_a_monte_carlo_estimate():
    m1, s1, m2, s2 = 0.3, 0.8, -0.5, 1.7
    p, q = Normal(t64([m1]), t64([s1])), Normal(t64([m2]), t64([s2]))
    expected = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    assert kl_divergence(p, q).item() == pytest.approx(expected, rel=1e-12)
    ember.manual_seed(4)
    x = p.sample((N,))
    assert (p.log_prob(x) - q.log_prob(x)).mean().item() == pytest.approx(expected, abs=0.03)
    assert kl_divergence(p, p).item() == 0.0


def test_kl_categorical_bernoulli_uniform_independent():
    a, b = rng.dirichlet(np.ones(4), size=3), rng.dirichlet(np.ones(4), size=3)
    kl = kl_divergence(Categorical(probs=t64(a)), Categorical(probs=t64(b))).numpy()
    np.testing.assert_allclose(kl, (a * np.log(a / b)).sum(-1), rtol=1e-10)
    zero_q = kl_divergence(Categorical(probs=t64([0.5, 0.5])), Categorical(probs=t64([1.0, 0])))
    zero_p = kl_divergence(Categorical(probs=t64([1.0, 0])), Categorical(probs=t64([0.5, 0.5])))
    assert zero_q.item() == np.inf and zero_p.item() == pytest.approx(math.log(2))
    one_hot = kl_divergence(OneHotCategorical(probs=t64(a)), OneHotCategorical(probs=t64(b)))
    np.testing.assert_allclose(one_hot.numpy(), kl)

    p, q = np.array([0.2, 0.7, 0.0, 1.0]), np.array([0.6, 0.1, 0.3, 0.5])
    bern = kl_divergence(Bernoulli(probs=t64(p)), Bernoulli(probs=t64(q))).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.nan_to_num(p * np.log(p / q)) + np.nan_to_num(
            (1 - p) * np.log((1 - p) / (1 - q)))
    np.testing.assert_allclose(bern, expected, rtol=1e-9)

    inner, outer = Uniform(t64([0.0, 0.0]), t64([1.0, 1.0])), Uniform(t64([-1.0, 0.5]), 2.0)
    uni = kl_divergence(inner, outer).numpy()
    assert uni[0] == pytest.approx(math.log(3)) and uni[1] == np.inf

    base_p = Normal(t64(rng.normal(size=(2, 3))), 1.0)
    base_q = Normal(t64(rng.normal(size=(2, 3))), 2.0)
    ind = kl_divergence(Independent(base_p, 1), Independent(base_q, 1)).numpy()
    np.testing.assert_allclose(ind, kl_divergence(base_p, base_q).numpy().sum(-1))
    with pytest.raises(NotImplementedError, match="reinterpreted_batch_ndims"):
        kl_divergence(Independent(base_p, 1), Independent(base_q, 2))


def test_kl_of_an_unregistered_pair_says_so():
    with pytest.raises(NotImplementedError, match="p type Normal and q type Bernoulli") as e:
        kl_divergence(Normal(0.0, 1.0), Bernoulli(0.5))
    assert isinstance(e.value, ember.EmberError)


def test_register_kl_picks_the_most_specific_pair():
    class MyNormal(Normal):
        pass

    base = kl_divergence(MyNormal(0.0, 1.0), Normal(1.0, 1.0))
    assert base.item() == pytest.approx(0.5)  # inherits Normal-Normal

    @register_kl(MyNormal, Normal)
    def _kl_mine(p, q):
        return ember.tensor(42.0)

    assert kl_divergence(MyNormal(0.0, 1.0), Normal(1.0, 1.0)).item() == 42.0
    assert kl_divergence(Normal(0.0, 1.0), Normal(1.0, 1.0)).item() == pytest.approx(0.5)
    with pytest.raises(TypeError, match="Distribution subclass"):
        register_kl(int, Normal)


# -- gradients -------------------------------------------------------------------------------


def _seeded(fn):
    def run(*args):
        ember.manual_seed(7)
        return fn(*args)
    return run


def test_gradients_flow_through_normal_rsample_log_prob_cdf_icdf_and_entropy():
    loc, scale = t64([0.3, -1.2], True), t64([0.7, 2.0], True)
    gradcheck(_seeded(lambda m, s: Normal(m, s).rsample((3,))), (loc, scale))
    value = t64([0.1, 0.4], True)
    gradcheck(lambda m, s, v: Normal(m, s).log_prob(v), (loc, scale, value))
    gradcheck(lambda m, s, v: Normal(m, s).cdf(v), (loc, scale, value))
    p = t64([0.02, 0.5, 0.9], True)
    gradcheck(lambda m, s, v: Normal(m, s).icdf(v), (t64(0.3, True), t64(0.7, True), p))
    gradcheck(lambda s: Normal(0.0, s).entropy(), (scale,))
    gradcheck(lambda a, b, c, d: kl_divergence(Normal(a, b), Normal(c, d)),
              (loc, scale, t64([0.0, 1.0], True), t64([1.5, 0.4], True)))


def test_sample_is_off_the_tape_and_rsample_is_on_it():
    loc = ember.tensor([0.0], requires_grad=True)
    assert not Normal(loc, 1.0).sample().requires_grad
    x = Normal(loc, 1.0).rsample((4,))
    x.sum().backward()
    assert loc.grad.tolist() == [4.0]


def test_gradients_flow_through_discrete_log_probs_and_entropies():
    logits = t64(rng.normal(size=(2, 4)), True)
    value = ember.tensor([3, 0])
    gradcheck(lambda g: Categorical(logits=g).log_prob(value), (logits,))
    gradcheck(lambda g: Categorical(logits=g).entropy(), (logits,))
    probs = t64(rng.uniform(0.1, 1, size=(2, 4)), True)
    gradcheck(lambda p: Categorical(probs=p).log_prob(value), (probs,))
    gradcheck(lambda a, b: kl_divergence(Categorical(logits=a), Categorical(logits=b)),
              (logits, t64(rng.normal(size=(2, 4)), True)))
    bern = t64([-2.0, 0.0, 0.0, 1.5], True)  # 0: where a max/abs kink would break the slope
    target = t64([1.0, 1.0, 0.0, 0.0])
    gradcheck(lambda g: Bernoulli(logits=g).log_prob(target), (bern,))
    gradcheck(lambda g: Bernoulli(logits=g).entropy(), (bern,))
    gradcheck(lambda p: Bernoulli(probs=p).log_prob(target), (t64([0.2, 0.5, 0.6, 0.9], True),))
    lo, hi = t64([0.0, -1.0], True), t64([2.0, 0.5], True)
    gradcheck(_seeded(lambda a, b: Uniform(a, b).rsample((3,))), (lo, hi))
    gradcheck(lambda a, b: Uniform(a, b).log_prob(t64([1.0, 0.0])), (lo, hi))


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Normal(ember.zeros(2), ember.tensor([1.0, 0.0])),
         r"parameter scale \(Tensor of shape \(2,\)\) of distribution Normal.*GreaterThan"
         r"\(lower_bound=0.0\).*\n.*0\."),
        (lambda: Normal(0.0, -1.0), r"parameter scale .*-1\.0"),
        (lambda: Normal(float("nan"), 1.0), r"parameter loc .*Real\(\)"),
        (lambda: Bernoulli(probs=ember.tensor([0.5, 1.5])),
         r"(?s)parameter probs \(Tensor of shape \(2,\)\).*Interval.*1\.5"),
        (lambda: Categorical(probs=ember.tensor([0.5, -0.5, 1.0])),
         r"parameter probs \(Tensor of shape \(3,\)\).*Simplex"),
        (lambda: Uniform(1.0, 0.0), r"parameter low .*LessThan\(upper_bound=0\.0\)"),
        (lambda: Categorical(), r"Either `probs` or `logits` must be specified"),
        (lambda: Categorical(probs=ember.ones(2), logits=ember.ones(2)), r"but not both"),
        (lambda: Categorical(probs=ember.tensor(1.0)), r"at least one-dimensional.*\(\)"),
        (lambda: Bernoulli(), r"Either `probs` or `logits`"),
        (lambda: Independent(Normal(ember.zeros(3), 1.0), 2),
         r"reinterpreted_batch_ndims.*actual 2 vs 1"),
    ],
)
def test_bad_parameters_are_refused_naming_parameter_shape_and_value(build, message):
    with pytest.raises(ValueError, match=message) as e:
        build()
    assert isinstance(e.value, ember.EmberError)
    assert "test_distributions.py" in str(e.value)  # points at the user's line


@pytest.mark.parametrize(
    "build, value, message",
    [
        (lambda: Categorical(probs=ember.ones(3)), ember.tensor(3),
         r"value argument \(Tensor of shape \(\)\).*IntegerInterval\(lower_bound=0, "
         r"upper_bound=2\)"),
        (lambda: Categorical(probs=ember.ones(3)), ember.tensor([-1, 0]), r"IntegerInterval"),
        (lambda: Bernoulli(0.3), ember.tensor(0.5), r"support \(Boolean\(\)\)"),
        (lambda: Uniform(0.0, 1.0), ember.tensor([0.5, 2.0]), r"(?s)Interval.*2\."),
        (lambda: Normal(0.0, 1.0), ember.tensor(float("nan")), r"support \(Real\(\)\)"),
        (lambda: Normal(0.0, 1.0), 0.5, r"must be a Tensor, got float"),
        (lambda: Normal(ember.zeros(3), 1.0), ember.zeros(4), r"not broadcastable.*\[4\].*\[3\]"),
        (lambda: OneHotCategorical(probs=ember.ones(3)), ember.zeros(3), r"OneHot\(\)"),
        (lambda: OneHotCategorical(probs=ember.ones(3)), ember.zeros(4),
         r"right-most size of value must match event_shape"),
    ],
)
def test_values_outside_the_support_are_refused_by_log_prob(build, value, message):
    d = build()
    with pytest.raises(ValueError, match=message) as e:
        d.log_prob(value)
    assert isinstance(e.value, ember.EmberError)


def test_validation_can_be_switched_off():
    assert Normal(0.0, -1.0, validate_args=False).scale.item() == -1.0
    assert Categorical(probs=ember.ones(3), validate_args=False).log_prob(
        ember.tensor(1)).item() == pytest.approx(-math.log(3), rel=1e-6)
    Distribution.set_default_validate_args(False)
    try:
        Bernoulli(probs=ember.tensor([2.0]))
        with pytest.raises(ValueError):
            Bernoulli(probs=ember.tensor([2.0]), validate_args=True)
    finally:
        Distribution.set_default_validate_args(True)
    with pytest.raises(ValueError):
        Bernoulli(probs=ember.tensor([2.0]))
    with pytest.raises(ValueError, match="True or False"):
        Distribution.set_default_validate_args("yes")


def test_constraints_answer_elementwise():
    x = ember.tensor([-1.0, 0.0, 0.5, 1.0, float("nan")])
    assert constraints.positive.check(x).tolist() == [False, False, True, True, False]
    assert constraints.unit_interval.check(x).tolist() == [False, True, True, True, False]
    assert constraints.real.check(x).tolist() == [True, True, True, True, False]
    assert constraints.simplex.check(ember.tensor([[0.3, 0.7], [0.5, 0.6]])).tolist() == [
        True, False]
    assert constraints.independent(constraints.positive, 1).check(
        ember.tensor([[1.0, 2.0], [1.0, -2.0]])).tolist() == [True, False]
    assert constraints.is_dependent(Uniform.support) and not constraints.is_dependent(
        constraints.real)


# -- the package -----------------------------------------------------------------------------


def test_the_package_imports_as_torch_distributions_does():
    import ember.distributions as dist
    from ember.distributions.kl import kl_divergence as kl
    from ember.distributions.normal import Normal as N

    assert ember.distributions is dist and kl is kl_divergence and N is Normal
    assert "distributions" in dir(ember)


def test_the_package_source_imports_nothing_above_nn():
    """distributions/ sits with nn/ and optim/: it must not import the tracer or the public
    API's other top-level parts."""
    root = os.path.dirname(ember.distributions.__file__)
    allowed = ("_tensor", "autograd", "ir", "errors", "nn", "distributions")
    bad = []
    for name in os.listdir(root):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(root, name), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                top = (node.module or "").split(".")[0]
                if top not in allowed:
                    bad.append(f"{name}:{node.lineno} imports ..{node.module}")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                    node.module.startswith("ember")):
                bad.append(f"{name}:{node.lineno} imports {node.module} absolutely")
    assert not bad, bad


# -- end to end ------------------------------------------------------------------------------


def test_reinforce_on_a_bandit_raises_the_best_arms_probability():
    """pytorch/examples/reinforcement_learning/reinforce.py's update on a 4-armed bandit:
    policy -> softmax -> Categorical(probs) -> sample -> log_prob, loss = -sum(log_prob *
    return), backward, optimizer step."""
    import ember.nn as nn
    import ember.nn.functional as F
    import ember.optim as optim

    ember.manual_seed(0)
    arm_rewards = ember.tensor([0.1, 0.2, 1.0, 0.3])
    state = ember.ones(1, 3)

    class Policy(nn.Module):
        def __init__(self):
            super().__init__()
            self.affine1 = nn.Linear(3, 16)
            self.affine2 = nn.Linear(16, 4)

        def forward(self, x):
            return F.softmax(self.affine2(F.relu(self.affine1(x))), dim=1)

    policy = Policy()
    optimizer = optim.Adam(policy.parameters(), lr=1e-2)
    start = policy(state)[0, 2].item()
    for _ in range(60):
        probs = policy(state)
        m = Categorical(probs)
        actions = m.sample((16,))  # 16 pulls per episode
        rewards = arm_rewards[actions.reshape(-1)].reshape(16, 1)
        returns = rewards - rewards.mean()  # baseline
        loss = -(m.log_prob(actions) * returns).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = policy(state)[0, 2].item()
    assert start < 0.5 and end > 0.9, (start, end)
