"""The Gamma family (Gamma, Chi2, Beta, Dirichlet, StudentT), Exponential, Laplace, LogNormal,
Poisson and Geometric without torch: closed forms, log_prob against math.lgamma formulas,
sample statistics, seeded reproducibility, gradients (gradcheck in float64, Gamma's implicit
reparameterization against finite differences of the incomplete gamma), validation, shapes."""

from __future__ import annotations

import math

import ember
import numpy as np
import pytest
from ember.autograd import gradcheck
from ember.distributions import (
    Beta,
    Chi2,
    Dirichlet,
    Exponential,
    Gamma,
    Geometric,
    Laplace,
    LogNormal,
    Poisson,
    StudentT,
    kl_divergence,
)
from ember.distributions.gamma_functions import gammainc

rng = np.random.default_rng(3)
N = 20000


def t64(a, requires_grad=False):
    return ember.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def make(name):
    """A (2, 3) batch of each distribution, float64 parameters."""
    pos = lambda low=0.5, high=3.0: t64(rng.uniform(low, high, (2, 3)))  # noqa: E731
    return {
        "exponential": lambda: Exponential(pos()),
        "laplace": lambda: Laplace(t64(rng.normal(size=(2, 3))), pos()),
        "lognormal": lambda: LogNormal(t64(rng.normal(size=(2, 3))), pos(0.2, 1.0)),
        "gamma": lambda: Gamma(pos(0.2, 5.0), pos()),
        "chi2": lambda: Chi2(pos(1.0, 6.0)),
        "beta": lambda: Beta(pos(), pos()),
        "dirichlet": lambda: Dirichlet(t64(rng.uniform(0.5, 3.0, (2, 3, 4)))),
        "poisson": lambda: Poisson(pos(0.5, 30.0)),
        "student_t": lambda: StudentT(pos(2.5, 6.0), t64(rng.normal(size=(2, 3))), pos()),
        "geometric": lambda: Geometric(pos(0.1, 0.9)),
        "geometric_logits": lambda: Geometric(logits=t64(rng.normal(size=(2, 3)))),
    }[name]()


NAMES = ["exponential", "laplace", "lognormal", "gamma", "chi2", "beta", "dirichlet", "poisson",
         "student_t", "geometric", "geometric_logits"]
RSAMPLE = {"exponential", "laplace", "lognormal", "gamma", "chi2", "beta", "dirichlet",
           "student_t"}


# -- shapes, seeding, sample statistics -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sample_shape", [(), (5,), (4, 1)])
def test_samples_have_sample_batch_and_event_shape(name, sample_shape):
    d = make(name)
    event = (4,) if name == "dirichlet" else ()
    assert tuple(d.batch_shape) == (2, 3) and tuple(d.event_shape) == event
    x = d.sample(sample_shape)
    assert tuple(x.shape) == sample_shape + (2, 3) + event
    assert bool(d.support.check(x).all())
    assert tuple(d.log_prob(x).shape) == sample_shape + (2, 3)
    if name in RSAMPLE:
        assert tuple(d.rsample(sample_shape).shape) == sample_shape + (2, 3) + event


@pytest.mark.parametrize("name", NAMES)
def test_manual_seed_reproduces_a_sample(name):
    d = make(name)
    ember.manual_seed(123)
    first = d.sample((7,)).numpy()
    ember.manual_seed(123)
    np.testing.assert_array_equal(d.sample((7,)).numpy(), first)
    assert not np.array_equal(d.sample((7,)).numpy(), first)


def test_scalar_parameters_give_an_empty_batch_shape():
    for d in [Exponential(2.0), Laplace(0.0, 1.0), LogNormal(0.0, 1.0), Gamma(2.0, 1.0),
              Chi2(3.0), Beta(2.0, 3.0), Poisson(2.0), Geometric(0.3)]:
        assert tuple(d.batch_shape) == ()
        assert tuple(d.sample((3,)).shape) == (3,)


def test_parameters_broadcast_together():
    assert tuple(Gamma(t64(np.ones((3, 1))), t64(np.ones(4))).batch_shape) == (3, 4)
    assert tuple(Beta(t64(np.ones((3, 1))), 2.0).batch_shape) == (3, 1)
    assert tuple(StudentT(t64(np.ones(4)) * 3, t64(np.zeros((2, 1)))).batch_shape) == (2, 4)


@pytest.mark.parametrize("dist, mean, var", [
    (Exponential(t64([0.5, 4.0])), [2.0, 0.25], [4.0, 1 / 16]),
    (Laplace(t64([1.0, -2.0]), t64([0.5, 2.0])), [1.0, -2.0], [0.5, 8.0]),
    (Gamma(t64([0.3, 0.9, 4.0, 40.0]), t64([1.0, 2.0, 0.5, 3.0])),
     [0.3, 0.45, 8.0, 40 / 3], [0.3, 0.225, 16.0, 40 / 9]),
    (Chi2(t64([1.0, 7.0])), [1.0, 7.0], [2.0, 14.0]),
    (Beta(t64([0.4, 3.0]), t64([0.6, 2.0])), [0.4, 0.6], [0.12, 0.04]),
    (Poisson(t64([0.3, 4.0, 9.99, 10.0, 250.0])), [0.3, 4.0, 9.99, 10.0, 250.0],
     [0.3, 4.0, 9.99, 10.0, 250.0]),
    (Geometric(t64([0.2, 0.9])), [4.0, 1 / 9], [20.0, (1 / 0.9 - 1) / 0.9]),
    (LogNormal(t64([0.0, 1.0]), t64([0.25, 0.5])),
     [math.exp(0.25**2 / 2), math.exp(1.125)],
     [math.expm1(0.0625) * math.exp(0.0625), math.expm1(0.25) * math.exp(2.25)]),
    (StudentT(t64([5.0, 9.0]), t64([1.0, 0.0]), t64([1.0, 2.0])), [1.0, 0.0],
     [5 / 3, 4 * 9 / 7]),
])
def test_sample_mean_and_variance_match_the_closed_forms(dist, mean, var):
    ember.manual_seed(0)
    np.testing.assert_allclose(dist.mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(dist.variance.numpy(), var, rtol=1e-12)
    x = dist.sample((N,)).numpy()
    var = np.asarray(var)
    # 5 standard errors of the mean; the variance within 10% (heavier tails need more)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * np.sqrt(var / N))
    np.testing.assert_allclose(x.var(0), var, rtol=0.1)


def test_dirichlet_samples_match_its_mean_and_variance():
    d = Dirichlet(t64([[0.3, 1.0, 4.0], [2.0, 2.0, 2.0]]))
    x = d.sample((N,)).numpy()
    np.testing.assert_allclose(x.sum(-1), 1.0, rtol=1e-12)
    assert np.all(np.abs(x.mean(0) - d.mean.numpy()) < 5 * np.sqrt(d.variance.numpy() / N))
    np.testing.assert_allclose(x.var(0), d.variance.numpy(), rtol=0.1)


def test_gamma_samples_follow_its_cdf():
    """A Kolmogorov-Smirnov distance small enough for N draws, at small and large a."""
    for a in (0.05, 0.7, 3.0, 60.0):
        ember.manual_seed(1)
        x = Gamma(t64([a]), t64([2.0])).sample((N,)).reshape(-1)
        cdf = np.sort(gammainc(t64(np.full(N, a)), 2 * x).numpy())
        ks = np.max(np.abs(cdf - (np.arange(N) + 0.5) / N))
        assert ks < 1.6 / math.sqrt(N), a


# -- closed forms --------------------------------------------------------------------------


def test_log_probs_match_math_lgamma_formulas():
    a, r, x = 2.5, 1.5, 0.7
    lg = math.lgamma
    assert math.isclose(float(Gamma(t64(a), t64(r)).log_prob(t64(x))),
                        a * math.log(r) + (a - 1) * math.log(x) - r * x - lg(a), rel_tol=1e-13)
    assert math.isclose(float(Chi2(t64(3.0)).log_prob(t64(x))),
                        -1.5 * math.log(2) + 0.5 * math.log(x) - x / 2 - lg(1.5), rel_tol=1e-13)
    assert math.isclose(float(Beta(t64(a), t64(r)).log_prob(t64(x))),
                        (a - 1) * math.log(x) + (r - 1) * math.log(1 - x) + lg(a + r) - lg(a)
                        - lg(r), rel_tol=1e-13)
    assert math.isclose(float(Poisson(t64(3.5)).log_prob(t64(4.0))),
                        4 * math.log(3.5) - 3.5 - lg(5), rel_tol=1e-13)
    assert math.isclose(float(Geometric(t64(0.3)).log_prob(t64(4.0))),
                        4 * math.log(0.7) + math.log(0.3), rel_tol=1e-13)
    assert math.isclose(float(Exponential(t64(r)).log_prob(t64(x))), math.log(r) - r * x,
                        rel_tol=1e-13)
    assert math.isclose(float(Laplace(t64(0.2), t64(r)).log_prob(t64(x))),
                        -math.log(2 * r) - 0.5 / r, rel_tol=1e-13)
    lognormal = -(math.log(x) - 0.1) ** 2 / 2 - 0.5 * math.log(2 * math.pi) - math.log(x)
    assert math.isclose(float(LogNormal(t64(0.1), t64(1.0)).log_prob(t64(x))), lognormal,
                        rel_tol=1e-13)
    nu, y = 4.0, 1.3
    student = (lg((nu + 1) / 2) - lg(nu / 2) - 0.5 * math.log(nu * math.pi)
               - (nu + 1) / 2 * math.log1p(y * y / nu))
    assert math.isclose(float(StudentT(t64(nu)).log_prob(t64(y))), student, rel_tol=1e-13)
    c = [0.5, 2.0, 3.0]
    p = [0.2, 0.3, 0.5]
    dirichlet = (sum((ci - 1) * math.log(pi) for ci, pi in zip(c, p)) + lg(sum(c))
                 - sum(lg(ci) for ci in c))
    assert math.isclose(float(Dirichlet(t64(c)).log_prob(t64(p))), dirichlet, rel_tol=1e-13)


def test_poisson_and_geometric_log_probs_sum_to_one():
    k = t64(np.arange(400.0))
    for d in (Poisson(t64([0.0, 0.7, 40.0])), Geometric(t64([0.1, 0.5, 1.0]))):
        total = d.log_prob(k.unsqueeze(-1)).exp().sum(0).numpy()
        np.testing.assert_allclose(total, 1.0, rtol=1e-10)


def test_entropies_at_known_values():
    euler = 0.5772156649015329
    assert math.isclose(float(Exponential(t64(2.0)).entropy()), 1 - math.log(2), rel_tol=1e-14)
    assert math.isclose(float(Laplace(t64(0.0), t64(3.0)).entropy()), 1 + math.log(6),
                        rel_tol=1e-14)
    # Gamma(1, 1) is Exponential(1); Chi2(2) is Exponential(1/2); Beta(1, 1) is uniform
    assert math.isclose(float(Gamma(t64(1.0), t64(1.0)).entropy()), 1.0, rel_tol=1e-14)
    assert math.isclose(float(Chi2(t64(2.0)).entropy()), 1 + math.log(2), rel_tol=1e-14)
    assert abs(float(Beta(t64(1.0), t64(1.0)).entropy())) < 1e-14
    assert abs(float(Dirichlet(t64([1.0, 1.0, 1.0])).entropy()) + math.log(2)) < 1e-14
    # Cauchy: log(4 pi scale); Gamma(2, 1): 2 + lgamma(2) - digamma(2) = 1 + euler
    assert math.isclose(float(StudentT(t64(1.0), 0.0, t64(2.0)).entropy()),
                        math.log(8 * math.pi), rel_tol=1e-13)
    assert math.isclose(float(Gamma(t64(2.0), t64(1.0)).entropy()), 1 + euler, rel_tol=1e-14)
    assert math.isclose(float(LogNormal(t64(1.0), t64(1.0)).entropy()),
                        1.5 + 0.5 * math.log(2 * math.pi), rel_tol=1e-14)
    assert math.isclose(float(Geometric(t64(0.5)).entropy()), 2 * math.log(2), rel_tol=1e-14)


def test_cdf_and_icdf_invert_each_other():
    q = t64(rng.uniform(0.01, 0.99, (2, 3)))
    for name in ("exponential", "laplace", "lognormal"):
        d = make(name)
        np.testing.assert_allclose(d.cdf(d.icdf(q)).numpy(), q.numpy(), rtol=1e-12)
    assert math.isclose(float(Gamma(t64(1.0), t64(2.0)).cdf(t64(0.5))), 1 - math.exp(-1),
                        rel_tol=1e-14)
    # Chi2(2) cdf is 1 - exp(-x/2); Gamma(3) cdf is 1 - e^-x (1 + x + x^2/2)
    assert math.isclose(float(Chi2(t64(2.0)).cdf(t64(3.0))), 1 - math.exp(-1.5), rel_tol=1e-14)
    assert math.isclose(float(Gamma(t64(3.0), t64(1.0)).cdf(t64(20.0))),
                        1 - math.exp(-20) * (1 + 20 + 200), rel_tol=1e-14)


def test_kl_divergences_are_zero_for_equal_and_match_a_monte_carlo_estimate():
    for name in ("exponential", "laplace", "lognormal", "gamma", "beta", "dirichlet",
                 "poisson", "geometric"):
        p = make(name)
        np.testing.assert_allclose(kl_divergence(p, p).numpy(), 0.0, atol=1e-12)
    p, q = Gamma(t64([2.0]), t64([1.0])), Gamma(t64([3.0]), t64([2.0]))
    ember.manual_seed(4)
    x = p.sample((4 * N,))
    estimate = float((p.log_prob(x) - q.log_prob(x)).mean())
    assert abs(float(kl_divergence(p, q)) - estimate) < 0.02


# -- gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exponential", "laplace", "lognormal", "gamma", "chi2",
                                  "beta", "dirichlet", "poisson", "student_t", "geometric"])
def test_log_prob_and_entropy_gradcheck(name):
    ember.manual_seed(5)
    d = make(name)
    x = d.sample()
    params = {k: getattr(d, k).detach() for k in d.arg_constraints if hasattr(d, k)}
    names = [k for k in params if k != "logits"]
    cls = type(d)

    def log_prob(*values):
        return cls(**dict(zip(names, values))).log_prob(x)

    inputs = tuple(params[k].clone().requires_grad_(True) for k in names)
    assert gradcheck(log_prob, inputs)
    if name not in ("poisson",):
        assert gradcheck(lambda *v: cls(**dict(zip(names, v))).entropy(), inputs)


def test_gamma_rsample_is_exact_in_rate():
    a = t64([0.4, 2.0, 9.0])
    rate = t64([0.5, 1.0, 3.0], requires_grad=True)
    ember.manual_seed(6)
    x = Gamma(a, rate).rsample()
    x.sum().backward()
    np.testing.assert_allclose(rate.grad.numpy(), -x.detach().numpy() / rate.detach().numpy(),
                               rtol=1e-13)


@pytest.mark.parametrize("a", [0.02, 0.3, 1.0, 2.5, 30.0, 900.0])
def test_gamma_rsample_concentration_gradient_holds_the_cdf_fixed(a):
    """dx/da = -(dP/da) / p(x): checked against central differences of P in a and x."""
    ember.manual_seed(7)
    conc = t64(np.full(64, a), requires_grad=True)
    x = Gamma(conc, 1.0).rsample()
    x.sum().backward()
    x64, h = x.detach().numpy(), 1e-6 * max(a, 1.0)
    xs = t64(x64)
    dp_da = (gammainc(t64(np.full(64, a + h)), xs) - gammainc(t64(np.full(64, a - h)), xs))
    dp_da = dp_da.numpy() / (2 * h)
    hx = 1e-6 * x64
    dp_dx = (gammainc(conc.detach(), t64(x64 + hx)) - gammainc(conc.detach(), t64(x64 - hx)))
    dp_dx = dp_dx.numpy() / (2 * hx)
    ok = dp_dx > 1e-200  # where the density underflows finite differences say nothing
    np.testing.assert_allclose(conc.grad.numpy()[ok], (-dp_da / dp_dx)[ok], rtol=2e-5,
                               atol=1e-12 * x64.max())


def test_gamma_concentration_gradient_is_the_sampler_at_a_fixed_quantile():
    """Sample the same uniform's quantile at a +- h by bisection on P: the finite difference
    is the derivative the implicit gradient must give."""
    a = t64([0.5, 1.7, 12.0], requires_grad=True)
    ember.manual_seed(8)
    x = Gamma(a, 1.0).rsample()
    x.sum().backward()
    u = gammainc(a.detach(), x.detach())

    def quantile(conc):
        low, high = np.zeros(3), np.full(3, 200.0)
        for _ in range(200):
            mid = (low + high) / 2
            below = gammainc(t64(conc), t64(mid)).numpy() < u.numpy()
            low, high = np.where(below, mid, low), np.where(below, high, mid)
        return (low + high) / 2

    h = 1e-5
    fd = (quantile(a.detach().numpy() + h) - quantile(a.detach().numpy() - h)) / (2 * h)
    np.testing.assert_allclose(a.grad.numpy(), fd, rtol=1e-6)


def test_rsample_gradients_reach_every_parameter():
    ember.manual_seed(9)
    for cls, values in [(Beta, [1.5, 0.7]), (StudentT, [4.0, 0.3, 2.0]),
                        (Laplace, [0.3, 2.0]), (Exponential, [2.0]), (LogNormal, [0.1, 0.5]),
                        (Chi2, [3.0])]:
        params = [t64([v, v + 0.5], requires_grad=True) for v in values]
        cls(*params).rsample((3,)).sum().backward()
        assert all(p.grad is not None and np.all(np.isfinite(p.grad.numpy())) for p in params)
        assert all(np.any(p.grad.numpy() != 0) for p in params)
    c = t64([0.5, 2.0, 3.0], requires_grad=True)
    Dirichlet(c).rsample((4,))[..., 0].sum().backward()
    assert np.all(np.isfinite(c.grad.numpy())) and np.any(c.grad.numpy() != 0)


def test_second_derivative_through_gamma_rsample_is_refused():
    a = t64([2.0], requires_grad=True)
    x = Gamma(a, 1.0).rsample()
    (g,) = ember.autograd.grad(x.sum(), a, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), ember.autograd.grad(
        Gamma(a, 1.0).rsample().sum(), a)[0].numpy() * 0 + g.detach().numpy())
    assert g.requires_grad
    with pytest.raises(NotImplementedError, match="second derivative"):
        ember.autograd.grad(g.sum(), a)


def test_gamma_cdf_gradient_in_value_is_the_density():
    a, x = t64([0.5, 3.0, 50.0]), t64([0.2, 2.0, 55.0], requires_grad=True)
    d = Gamma(a, t64([1.0, 1.0, 1.0]))
    d.cdf(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), d.log_prob(x.detach()).exp().numpy(),
                               rtol=1e-12)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda: Exponential(t64([0.0])),
    lambda: Laplace(t64([0.0]), t64([-1.0])),
    lambda: LogNormal(t64([float("nan")]), t64([1.0])),
    lambda: Gamma(t64([-1.0]), t64([1.0])),
    lambda: Chi2(t64([0.0])),
    lambda: Beta(t64([1.0]), t64([0.0])),
    lambda: Dirichlet(t64([1.0, -1.0])),
    lambda: Poisson(t64([-0.1])),
    lambda: StudentT(t64([-1.0])),
    lambda: Geometric(t64([0.0])),
    lambda: Geometric(t64([1.2])),
])
def test_invalid_parameters_are_refused(build):
    with pytest.raises(ValueError, match="Expected parameter"):
        build()


def test_validation_can_be_switched_off_and_ill_posed_calls_are_refused():
    assert np.isnan(Gamma(t64([-1.0]), t64([1.0]), validate_args=False).sample().numpy()).all()
    with pytest.raises(ValueError, match="one-dimensional"):
        Dirichlet(t64(1.0))
    with pytest.raises(ValueError, match="not both"):
        Geometric(probs=t64([0.5]), logits=t64([0.0]))


@pytest.mark.parametrize("name, value", [("exponential", -1.0), ("gamma", -0.1), ("beta", 1.1),
                                         ("poisson", 0.5), ("geometric", -1.0),
                                         ("lognormal", 0.0), ("chi2", -2.0)])
def test_values_outside_the_support_are_refused(name, value):
    with pytest.raises(ValueError, match="support"):
        make(name).log_prob(ember.full((2, 3), value, dtype=ember.float64))
