"""ember.distributions against torch.distributions: log_prob, entropy, mean/variance, cdf/icdf
and kl_divergence agree to 1e-6 relative for the same parameters, broadcasting included; the
same arguments are refused; gradients of log_prob agree."""

from __future__ import annotations

import ember
import ember.distributions as ed
import numpy as np
import pytest

torch = pytest.importorskip("torch")
td = pytest.importorskip("torch.distributions")

pytestmark = pytest.mark.oracle

rng = np.random.default_rng(1)
RTOL, ATOL = 1e-6, 1e-12


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


def normal_params(loc_shape, scale_shape):
    return rng.normal(size=loc_shape), rng.uniform(0.3, 2.5, size=scale_shape)


BROADCASTS = [((5,), (5,)), ((3, 1), (4,)), ((2, 3), ()), ((), ())]


def build(name, shapes):
    """(ember distribution, torch distribution) over the same random parameters."""
    a_shape, b_shape = shapes
    if name == "normal":
        loc, scale = normal_params(a_shape, b_shape)
        (el, tl), (es, ts) = pair(loc), pair(scale)
        return ed.Normal(el, es), td.Normal(tl, ts)
    if name == "uniform":
        low, width = normal_params(a_shape, b_shape)
        (el, tl), (eh, th) = pair(low), pair(low + width)
        return ed.Uniform(el, eh), td.Uniform(tl, th)
    if name == "bernoulli":
        (ep, tp) = pair(rng.uniform(0.05, 0.95, size=a_shape))
        return ed.Bernoulli(probs=ep), td.Bernoulli(probs=tp)
    if name == "bernoulli_logits":
        (eg, tg) = pair(rng.normal(size=a_shape) * 2)
        return ed.Bernoulli(logits=eg), td.Bernoulli(logits=tg)
    if name == "categorical":
        (ep, tp) = pair(rng.uniform(0.05, 2, size=a_shape + (4,)))
        return ed.Categorical(probs=ep), td.Categorical(probs=tp)
    if name == "categorical_logits":
        (eg, tg) = pair(rng.normal(size=a_shape + (4,)) * 2)
        return ed.Categorical(logits=eg), td.Categorical(logits=tg)
    if name == "one_hot":
        (eg, tg) = pair(rng.normal(size=a_shape + (4,)))
        return ed.OneHotCategorical(logits=eg), td.OneHotCategorical(logits=tg)
    raise AssertionError(name)


NAMES = ["normal", "uniform", "bernoulli", "bernoulli_logits", "categorical",
         "categorical_logits", "one_hot"]


def values_for(name, t, sample_shape=(3,)):
    """Values inside the support of torch distribution t, as a float64 / int64 array."""
    torch.manual_seed(0)
    return t.sample(sample_shape).numpy()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shapes", BROADCASTS)
def test_shapes_log_prob_entropy_mean_and_variance_agree(name, shapes):
    e, t = build(name, shapes)
    assert tuple(e.batch_shape) == tuple(t.batch_shape)
    assert tuple(e.event_shape) == tuple(t.event_shape)
    x = values_for(name, t)
    close(e.log_prob(ember.tensor(x)), t.log_prob(torch.tensor(x)))
    close(e.entropy(), t.entropy())
    np.testing.assert_allclose(e.mean.detach().numpy(), t.mean.detach().numpy(), rtol=RTOL,
                               equal_nan=True)
    np.testing.assert_allclose(e.variance.detach().numpy(), t.variance.detach().numpy(),
                               rtol=RTOL, equal_nan=True)
    if name in ("normal", "uniform", "bernoulli", "bernoulli_logits", "one_hot"):
        np.testing.assert_allclose(e.stddev.detach().numpy(), t.stddev.detach().numpy(),
                                   rtol=RTOL, equal_nan=True)
    np.testing.assert_allclose(e.mode.detach().numpy(), t.mode.detach().numpy(),
                               equal_nan=True)
    sample = e.sample((2,))
    assert tuple(sample.shape) == tuple(t.sample((2,)).shape)
    if hasattr(t, "probs"):
        close(e.probs, t.probs)
        close(e.logits, t.logits)


@pytest.mark.parametrize("name", ["normal", "uniform"])
@pytest.mark.parametrize("shapes", BROADCASTS)
def test_cdf_and_icdf_agree(name, shapes):
    e, t = build(name, shapes)
    x = values_for(name, t)
    close(e.cdf(ember.tensor(x)), t.cdf(torch.tensor(x)))
    p = rng.uniform(0.001, 0.999, size=x.shape)
    close(e.icdf(ember.tensor(p)), t.icdf(torch.tensor(p)), atol=1e-9)


def test_normal_icdf_agrees_in_the_tails_and_at_the_ends():
    p = np.array([1e-300, 1e-12, 1e-6, 0.3, 0.5, 0.7, 1 - 1e-6, 1 - 1e-12, 0.0, 1.0])
    (ep, tp) = pair(p)
    close(ed.Normal(ember.tensor(0.0, dtype=ember.float64), 1.0).icdf(ep),
          td.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0).icdf(tp), rtol=1e-6)


def test_float32_log_prob_agrees_with_torchs_float32():
    loc, scale = normal_params((4,), (4,))
    x = rng.normal(size=(3, 4)).astype(np.float32)
    e = ed.Normal(ember.tensor(loc.astype(np.float32)), ember.tensor(scale.astype(np.float32)))
    t = td.Normal(torch.tensor(loc.astype(np.float32)), torch.tensor(scale.astype(np.float32)))
    out = e.log_prob(ember.tensor(x))
    assert out.dtype == ember.float32
    close(out, t.log_prob(torch.tensor(x)), rtol=1e-5, atol=1e-6)
    logits = rng.normal(size=(2, 5)).astype(np.float32)
    close(ed.Categorical(logits=ember.tensor(logits)).entropy(),
          td.Categorical(logits=torch.tensor(logits)).entropy(), rtol=1e-5)


def test_independent_agrees():
    loc, scale = normal_params((2, 3, 4), (4,))
    (el, tl), (es, ts) = pair(loc), pair(scale)
    e = ed.Independent(ed.Normal(el, es), 2)
    t = td.Independent(td.Normal(tl, ts), 2)
    assert tuple(e.batch_shape) == tuple(t.batch_shape)
    assert tuple(e.event_shape) == tuple(t.event_shape)
    x = rng.normal(size=(5, 2, 3, 4))
    close(e.log_prob(ember.tensor(x)), t.log_prob(torch.tensor(x)))
    close(e.entropy(), t.entropy())


@pytest.mark.parametrize("name", ["normal", "uniform", "bernoulli", "categorical",
                                  "categorical_logits", "one_hot"])
@pytest.mark.parametrize("shapes", [((5,), (5,)), ((3, 1), (4,))])
def test_kl_divergence_agrees(name, shapes):
    ep, tp = build(name, shapes)
    eq, tq = build(name, shapes)
    close(ed.kl_divergence(ep, eq), td.kl_divergence(tp, tq))
    close(ed.kl_divergence(ep, ep), td.kl_divergence(tp, tp), atol=1e-12)


def test_kl_divergence_agrees_at_the_edges():
    p = [0.0, 1.0, 0.3, 0.0, 1.0]
    q = [0.5, 0.5, 0.0, 0.0, 1.0]
    (ep, tp), (eq, tq) = pair(p), pair(q)
    close(ed.kl_divergence(ed.Bernoulli(ep), ed.Bernoulli(eq)),
          td.kl_divergence(td.Bernoulli(tp), td.Bernoulli(tq)))
    (ep, tp), (eq, tq) = pair([[0.0, 0.5, 0.5]]), pair([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    close(ed.kl_divergence(ed.Categorical(ep), ed.Categorical(eq)),
          td.kl_divergence(td.Categorical(tp), td.Categorical(tq)))
    (a, ta), (b, tb) = pair([0.0, -1.0, 0.5]), pair([1.0, 2.0, 0.8])
    (c, tc), (d, tdd) = pair([-0.5, 0.0, 0.0]), pair([1.5, 2.0, 3.0])
    close(ed.kl_divergence(ed.Uniform(a, b), ed.Uniform(c, d)),
          td.kl_divergence(td.Uniform(ta, tb), td.Uniform(tc, tdd)))
    loc, scale = normal_params((2, 3), (3,))
    (el, tl), (es, ts) = pair(loc), pair(scale)
    (el2, tl2), (es2, ts2) = pair(loc[::-1].copy()), pair(scale * 1.5)
    close(ed.kl_divergence(ed.Independent(ed.Normal(el, es), 1),
                           ed.Independent(ed.Normal(el2, es2), 1)),
          td.kl_divergence(td.Independent(td.Normal(tl, ts), 1),
                           td.Independent(td.Normal(tl2, ts2), 1)))


def test_log_prob_and_rsample_gradients_agree():
    loc, scale = normal_params((3,), (3,))
    (el, tl), (es, ts) = pair(loc, True), pair(scale, True)
    x = rng.normal(size=(4, 3))
    ed.Normal(el, es).log_prob(ember.tensor(x)).sum().backward()
    td.Normal(tl, ts).log_prob(torch.tensor(x)).sum().backward()
    close(el.grad, tl.grad)
    close(es.grad, ts.grad)
    (eg, tg) = pair(rng.normal(size=(2, 4)), True)
    v = np.array([3, 1])
    (ed.Categorical(logits=eg).log_prob(ember.tensor(v))
     + ed.Categorical(logits=eg).entropy()).sum().backward()
    (td.Categorical(logits=tg).log_prob(torch.tensor(v))
     + td.Categorical(logits=tg).entropy()).sum().backward()
    close(eg.grad, tg.grad)
    (eb, tb) = pair([-1.0, 0.0, 2.0], True)
    y = np.array([1.0, 0.0, 0.0])
    (ed.Bernoulli(logits=eb).log_prob(ember.tensor(y)) + ed.Bernoulli(logits=eb).entropy()
     ).sum().backward()
    (td.Bernoulli(logits=tb).log_prob(torch.tensor(y)) + td.Bernoulli(logits=tb).entropy()
     ).sum().backward()
    close(eb.grad, tb.grad)


@pytest.mark.parametrize(
    "args",
    [
        ("Normal", (0.0, -1.0)),
        ("Normal", ([0.0, 1.0], [1.0, 0.0])),
        ("Bernoulli", ([0.2, 1.2],)),
        ("Categorical", ([0.5, -0.5, 1.0],)),
        ("Uniform", (2.0, 1.0)),
    ],
)
def test_the_same_parameters_are_refused(args):
    name, params = args
    as_tensor = [p if isinstance(p, float) else None for p in params]
    ember_params = [p if f is not None else ember.tensor(p) for p, f in zip(params, as_tensor)]
    torch_params = [p if f is not None else torch.tensor(p) for p, f in zip(params, as_tensor)]
    with pytest.raises(ValueError) as theirs:
        getattr(td, name)(*torch_params)
    with pytest.raises(ValueError) as ours:
        getattr(ed, name)(*ember_params)
    assert isinstance(ours.value, ember.EmberError)
    # the same first line, but for the Size's and the tensor's printed module
    first_theirs = str(theirs.value).splitlines()[0].replace("torch.", "")
    first_ours = str(ours.value).splitlines()[0].replace("ember.", "")
    assert first_ours == first_theirs
