"""The seeded random generators: one per device, reseeded together by manual_seed()."""

from __future__ import annotations

import numpy as np

_seed = 0
_generators: dict = {}


def manual_seed(seed: int) -> None:
    global _seed
    _seed = int(seed)
    _generators.clear()


def initial_seed() -> int:
    return _seed


def generator(xp):
    """The generator of an array module (numpy or cupy), created from the current seed."""
    key = xp.__name__
    gen = _generators.get(key)
    if gen is None:
        if xp is np:
            gen = np.random.Generator(np.random.PCG64(_seed))
        else:
            gen = xp.random.RandomState(_seed)
        _generators[key] = gen
    return gen


def uniform(xp, shape, dtype):
    gen = generator(xp)
    if xp is np:
        if np.dtype(dtype) in (np.float32, np.float64):
            return gen.random(shape, dtype=dtype)
        return gen.random(shape).astype(dtype)
    return gen.random_sample(shape).astype(dtype)


def normal(xp, shape, dtype):
    gen = generator(xp)
    if xp is np:
        if np.dtype(dtype) in (np.float32, np.float64):
            return gen.standard_normal(shape, dtype=dtype)
        return gen.standard_normal(shape).astype(dtype)
    return gen.standard_normal(shape).astype(dtype)


def integers(xp, low, high, shape, dtype):
    gen = generator(xp)
    if xp is np:
        return gen.integers(low, high, size=shape, dtype=dtype)
    return gen.randint(low, high, size=shape).astype(dtype)


def permutation(xp, n):
    return generator(xp).permutation(n)
