"""Random kernels, drawing from the seeded per-device generator."""

from __future__ import annotations

from .. import random
from .registry import kernel


@kernel("bernoulli")
def _bernoulli(xp, p):
    return (random.uniform(xp, p.shape, p.dtype) < p).astype(p.dtype)
