"""The Gamma family, Exponential, Laplace, LogNormal, Poisson, StudentT and Geometric against
torch.distributions: log_prob, entropy, mean/mode/variance, cdf/icdf and kl_divergence agree
(float64, random parameters, broadcasting included), as do the gradients of log_prob."""

from __future__ import annotations

import ember
import ember.distributions as ed
import numpy as np
import pytest

torch = pytest.importorskip("torch")
td = pytest.importorskip("torch.distributions")

pytestmark = pytest.mark.oracle

rng = np.random.default_rng(7)
RTOL, ATOL = 1e-10, 1e-12


def pair(a, requires_grad=False):
    """The same float64 array as an ember and a torch tensor."""
    a = np.asarray(a, dtype=np.float64)
    return (ember.tensor(a, requires_grad=requires_grad),
            torch.tensor(a, requires_grad=requires_grad))


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    theirs = theirs.detach().numpy()
    ours = ours.detach().numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def positive(shape, low=0.3, high=4.0):
    return rng.uniform(low, high, size=shape)


def normal(shape):
    return rng.normal(size=shape)


# name -> (ember class, torch class, parameter generators by shape, value generator)
CASES = {
    "exponential": (ed.Exponential, td.Exponential, [positive], lambda s: positive(s, 0.0, 5.0)),
    "laplace": (ed.Laplace, td.Laplace, [normal, positive], lambda s: rng.normal(size=s)),
    "lognormal": (ed.LogNormal, td.LogNormal, [normal, positive],
                  lambda s: positive(s, 0.05, 6.0)),
    "gamma": (ed.Gamma, td.Gamma, [lambda s: positive(s, 0.2, 6.0), positive],
              lambda s: positive(s, 0.01, 8.0)),
    "chi2": (ed.Chi2, td.Chi2, [lambda s: positive(s, 0.5, 9.0)], lambda s: positive(s, 0.01, 9)),
    "beta": (ed.Beta, td.Beta, [positive, positive], lambda s: positive(s, 0.01, 0.99)),
    "poisson": (ed.Poisson, td.Poisson, [lambda s: positive(s, 0.1, 20.0)],
                lambda s: rng.integers(0, 15, size=s).astype(float)),
    "student_t": (ed.StudentT, td.StudentT, [lambda s: positive(s, 0.5, 6.0), normal,
                                             positive], lambda s: rng.normal(size=s) * 3),
    "geometric": (ed.Geometric, td.Geometric, [lambda s: positive(s, 0.05, 0.95)],
                  lambda s: rng.integers(0, 12, size=s).astype(float)),
}
HAS_CDF = {"exponential", "laplace", "lognormal", "gamma", "chi2"}
HAS_ICDF = {"exponential", "laplace", "lognormal"}
SHAPES = [[(5,)], [(3, 1), (4,)], [(2, 3), ()]]


def build(name, shapes, requires_grad=False):
    ours_cls, theirs_cls, makers, _ = CASES[name]
    shapes = (shapes * 3)[: len(makers)]
    arrays = [make(shape) for make, shape in zip(makers, shapes)]
    pairs = [pair(a, requires_grad) for a in arrays]
    return (ours_cls(*[p[0] for p in pairs]), theirs_cls(*[p[1] for p in pairs]),
            [p[0] for p in pairs], [p[1] for p in pairs])


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_moments_entropy_and_log_prob_match_torch(name, shapes):
    ours, theirs, _, _ = build(name, shapes)
    assert tuple(ours.batch_shape) == tuple(theirs.batch_shape)
    for attr in ("mean", "mode", "variance", "stddev"):
        close(getattr(ours, attr), getattr(theirs, attr))
    if name not in ("poisson",):
        close(ours.entropy(), theirs.entropy())
    value = CASES[name][3](tuple(theirs.batch_shape))
    v_ours, v_theirs = pair(value)
    close(ours.log_prob(v_ours), theirs.log_prob(v_theirs))
    if name in HAS_CDF:
        close(ours.cdf(v_ours), theirs.cdf(v_theirs))
    if name in HAS_ICDF:
        q_ours, q_theirs = pair(rng.uniform(0.01, 0.99, size=tuple(theirs.batch_shape)))
        close(ours.icdf(q_ours), theirs.icdf(q_theirs))


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_prob_gradients_match_torch(name):
    ours, theirs, p_ours, p_theirs = build(name, [(4,)], requires_grad=True)
    v_ours, v_theirs = pair(CASES[name][3]((4,)))
    ours.log_prob(v_ours).sum().backward()
    theirs.log_prob(v_theirs).sum().backward()
    for a, b in zip(p_ours, p_theirs):
        close(a.grad, b.grad, rtol=1e-9)


def test_dirichlet_matches_torch():
    for shape in [(4,), (2, 3, 5)]:
        c_ours, c_theirs = pair(positive(shape, 0.2, 5.0), requires_grad=True)
        ours, theirs = ed.Dirichlet(c_ours), td.Dirichlet(c_theirs)
        for attr in ("mean", "mode", "variance"):
            close(getattr(ours, attr), getattr(theirs, attr))
        close(ours.entropy(), theirs.entropy())
        x = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        x_ours, x_theirs = pair(x)
        ours.log_prob(x_ours).sum().backward()
        theirs.log_prob(x_theirs).sum().backward()
        close(ours.log_prob(x_ours), theirs.log_prob(x_theirs))
        close(c_ours.grad, c_theirs.grad, rtol=1e-9)


def test_dirichlet_and_beta_modes_below_one_match_torch():
    c = np.array([[0.5, 0.3, 0.9], [2.0, 0.5, 3.0], [0.2, 0.9, 0.1]])
    c_ours, c_theirs = pair(c)
    close(ed.Dirichlet(c_ours).mode, td.Dirichlet(c_theirs).mode)
    a_ours, a_theirs = pair([0.5, 2.0, 0.5, 1.0])
    b_ours, b_theirs = pair([0.5, 0.5, 3.0, 1.0])
    close(ed.Beta(a_ours, b_ours).mode, td.Beta(a_theirs, b_theirs).mode)


def test_student_t_moments_by_df_region_match_torch():
    df_ours, df_theirs = pair([0.5, 1.0, 1.5, 2.0, 2.5, 7.0])
    close(ed.StudentT(df_ours, 1.0, 2.0).mean, td.StudentT(df_theirs, 1.0, 2.0).mean)
    close(ed.StudentT(df_ours, 1.0, 2.0).variance, td.StudentT(df_theirs, 1.0, 2.0).variance)


def test_gamma_cdf_at_extremes_matches_torch():
    a = np.array([0.05, 0.5, 1.0, 3.0, 30.0, 300.0, 2.0, 2.0])
    x = np.array([1e-6, 3.0, 0.1, 12.0, 25.0, 310.0, 0.0, 60.0])
    (a_ours, a_theirs), (x_ours, x_theirs) = pair(a), pair(x)
    # torch switches to an asymptotic expansion for large a, good to ~1e-9 there
    close(ed.Gamma(a_ours, 1.0).cdf(x_ours), td.Gamma(a_theirs, 1.0).cdf(x_theirs), rtol=5e-9)


def test_gamma_cdf_gradient_in_value_and_rate_matches_torch():
    (a_ours, a_theirs) = pair(positive((5,), 0.3, 5.0))
    r_ours, r_theirs = pair(positive((5,)), requires_grad=True)
    x_ours, x_theirs = pair(positive((5,), 0.1, 4.0), requires_grad=True)
    ed.Gamma(a_ours, r_ours).cdf(x_ours).sum().backward()
    td.Gamma(a_theirs, r_theirs).cdf(x_theirs).sum().backward()
    close(r_ours.grad, r_theirs.grad, rtol=1e-10)
    close(x_ours.grad, x_theirs.grad, rtol=1e-10)


KL_PAIRS = {
    "exponential": [positive],
    "gamma": [positive, positive],
    "beta": [positive, positive],
    "laplace": [normal, positive],
    "poisson": [positive],
    "geometric": [lambda s: positive(s, 0.05, 0.95)],
    "lognormal": [normal, positive],
}


@pytest.mark.parametrize("name", sorted(KL_PAIRS))
def test_kl_divergence_matches_torch(name):
    ours_cls, theirs_cls = CASES[name][:2]
    dists = []
    for shapes in [(3, 1), (4,)]:
        pairs = [pair(make(shapes)) for make in KL_PAIRS[name]]
        dists.append((ours_cls(*[p[0] for p in pairs]), theirs_cls(*[p[1] for p in pairs])))
    (p_ours, p_theirs), (q_ours, q_theirs) = dists
    close(ed.kl_divergence(p_ours, q_ours), td.kl_divergence(p_theirs, q_theirs), rtol=1e-9)


def test_dirichlet_kl_matches_torch():
    (p_ours, p_theirs), (q_ours, q_theirs) = pair(positive((2, 4))), pair(positive((2, 4)))
    close(ed.kl_divergence(ed.Dirichlet(p_ours), ed.Dirichlet(q_ours)),
          td.kl_divergence(td.Dirichlet(p_theirs), td.Dirichlet(q_theirs)), rtol=1e-9)


@pytest.mark.parametrize("ours_args, theirs_args, cls", [
    ((-1.0,), (-1.0,), "Exponential"),
    ((1.0, 0.0), (1.0, 0.0), "Laplace"),
    ((0.0, -1.0), (0.0, -1.0), "Gamma"),
    ((-2.0,), (-2.0,), "Chi2"),
    ((1.0, -0.5), (1.0, -0.5), "Beta"),
    ((-0.5,), (-0.5,), "Poisson"),
    ((0.0,), (0.0,), "StudentT"),
    ((0.0,), (0.0,), "Geometric"),
    ((1.5,), (1.5,), "Geometric"),
])
def test_invalid_arguments_are_refused_like_torch(ours_args, theirs_args, cls):
    with pytest.raises(ValueError):
        getattr(td, cls)(*[torch.tensor([a], dtype=torch.float64) for a in theirs_args],
                         validate_args=True)
    with pytest.raises(ValueError):
        getattr(ed, cls)(*[ember.tensor([a], dtype=ember.float64) for a in ours_args],
                         validate_args=True)


@pytest.mark.parametrize("name, value", [("exponential", -1.0), ("gamma", -0.5),
                                         ("beta", 1.5), ("poisson", 1.5), ("geometric", -1.0),
                                         ("lognormal", -1.0)])
def test_values_outside_the_support_are_refused_like_torch(name, value):
    ours, theirs, _, _ = build(name, [(3,)])
    with pytest.raises(ValueError):
        theirs.log_prob(torch.full((3,), value, dtype=torch.float64))
    with pytest.raises(ValueError):
        ours.log_prob(ember.full((3,), value, dtype=ember.float64))
