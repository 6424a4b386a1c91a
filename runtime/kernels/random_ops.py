"""Random kernels, drawing from the seeded per-device generator."""

from __future__ import annotations

import numpy as np

from ...errors import runtime_error
from ...ir.dtypes import as_dtype
from .. import random
from .index import binary_search
from .registry import kernel

# the most comparisons (rows x draws x categories) a draw with replacement makes by counting
_COUNT_LIMIT = 1 << 24


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
    return sample(xp, probs, num_samples, replacement)


def sample(xp, probs, num_samples: int, replacement: bool, generator=None):
    """The multinomial draw on an array: the op's kernel, and eager's draw from a generator
    of its own (_tensor/ops/sampling.py)."""
    if probs.ndim not in (1, 2):
        raise runtime_error(f"prob_dist must be 1 or 2 dim, got {probs.ndim}")
    if probs.dtype.kind != "f":
        raise runtime_error(f"multinomial only supports floating-point dtypes for input, got: "
                            f"{probs.dtype}")
    if num_samples <= 0:
        raise runtime_error(f"cannot sample n_sample <= 0 samples, got {num_samples}")
    n = probs.shape[-1]
    if n == 0:
        raise runtime_error("multinomial: the distribution has no categories (size 0)")
    weights = probs.astype(np.float64).reshape(-1, n)
    if not bool(xp.all(xp.isfinite(weights))) or bool(xp.any(weights < 0)):
        raise runtime_error("probability tensor contains either `inf`, `nan` or element < 0")
    if bool(xp.any(weights.sum(axis=1) <= 0)):
        raise runtime_error("invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement:
        if num_samples > n:
            raise runtime_error(f"cannot sample n_sample > prob_dist.size(-1) samples without "
                                f"replacement (n_sample = {num_samples}, categories = {n})")
        if bool(xp.any((weights > 0).sum(axis=1) < num_samples)):
            raise runtime_error("invalid multinomial distribution (with replacement=False, not "
                                "enough non-negative category to sample)")
    rows = weights.shape[0]
    u = random.uniform(xp, (rows, num_samples if replacement else n), np.float64, generator)
    if replacement:
        cdf = xp.cumsum(weights, axis=1)
        cdf /= cdf[:, -1:]
        # the first category whose cumulative weight passes u (zero-weight ones never do),
        # every row at once, not one search per row: for few categories, by counting those
        # at or below u (one comparison each), else by log2(n) whole-array search steps
        if rows * num_samples * n <= _COUNT_LIMIT:
            samples = (cdf[:, None, :] <= u[:, :, None]).sum(axis=-1)
        else:
            samples = binary_search(xp, cdf, u, right=True)
        samples = xp.minimum(samples, n - 1)
    else:
        with np.errstate(divide="ignore"):
            keys = -xp.log1p(-u) / weights  # exponential / weight; weight 0 gives inf
        samples = xp.argsort(keys, axis=1, kind="stable")[:, :num_samples]
    samples = samples.astype(np.int64)
    if probs.ndim == 1:
        samples = samples.reshape(num_samples)
    return samples
