"""Random kernels, drawing from the seeded per-device generator."""

from __future__ import annotations

from ...ir.dtypes import as_dtype
from .. import random
from .registry import kernel


@kernel("bernoulli")
def _bernoulli(xp, p):
    return (random.uniform(xp, p.shape, p.dtype) < p).astype(p.dtype)


def _np_dtype(name):
    return as_dtype(name).np


@kernel("uniform")
def _uniform(xp, shape, dtype):
    return random.uniform(xp, tuple(shape), _np_dtype(dtype))


@kernel("normal")
def _normal(xp, shape, dtype):
    return random.normal(xp, tuple(shape), _np_dtype(dtype))


@kernel("randint")
def _randint(xp, shape, dtype, low, high):
    return random.integers(xp, low, high, tuple(shape), _np_dtype(dtype))


@kernel("full")
def _full(xp, shape, dtype, value):
    return xp.full(tuple(shape), value, _np_dtype(dtype))


@kernel("multinomial")
def _multinomial(xp, probs, num_samples, replacement):
    from ..._tensor.ops.sampling import sample

    return sample(xp, probs, num_samples, replacement)
