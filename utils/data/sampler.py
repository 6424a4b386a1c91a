"""Samplers: the order in which DataLoader visits a map-style dataset, and its batching."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Generic, TypeVar

import numpy as np

from ...errors import runtime_error, type_error, value_error
from ...runtime import random

T_co = TypeVar("T_co", covariant=True)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise value_error(f"{name} should be a positive integer value, but got {name}={value!r}")
    return int(value)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise value_error(f"{name} should be a boolean value, but got {name}={value!r}")
    return value


def _fresh_generator() -> random.Generator:
    """A stream of its own, seeded from the global generator: so ember.manual_seed fixes it,
    and each call (each epoch) gets a different one."""
    return random.Generator().manual_seed(random.fresh_seed())


class Sampler(Generic[T_co]):
    """Yields dataset indices (or lists of them); subclasses define __iter__ and usually
    __len__."""

    def __init__(self, data_source: Sized | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class SequentialSampler(Sampler[int]):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler[int]):
    """A random order of the indices (a fresh permutation per pass), or with replacement
    `num_samples` independent draws.

    Without a `generator`, each pass seeds a stream from the global generator, so the same
    ember.manual_seed gives the same passes, and successive passes differ.
    """

    def __init__(
        self,
        data_source: Sized,
        replacement: bool = False,
        num_samples: int | None = None,
        generator=None,
    ) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise type_error(
                f"replacement should be a boolean value, but got replacement={replacement!r}"
            )
        _positive_int("num_samples", self.num_samples)

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        gen = self.generator if self.generator is not None else _fresh_generator()
        count = self.num_samples
        if self.replacement:
            # drawn in chunks, as torch does, so a long pass does not hold every index at once
            for start in range(0, count, 32):
                yield from random.integers(
                    np, 0, n, (min(32, count - start),), np.int64, gen
                ).tolist()
            return
        for _ in range(count // n):
            yield from random.permutation(np, n, gen).tolist()
        if count % n:
            yield from random.permutation(np, n, gen)[: count % n].tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given indices, in a random order (drawn from `generator` or the global one)."""

    def __init__(self, indices: Sequence[int], generator=None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        for i in random.permutation(np, len(self.indices), self.generator).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler[int]):
    """`num_samples` indices in [0, len(weights)), index i drawn with probability proportional
    to weights[i] (with or without replacement)."""

    def __init__(
        self, weights: Sequence[float], num_samples: int, replacement: bool = True, generator=None
    ) -> None:
        _positive_int("num_samples", num_samples)
        _check_bool("replacement", replacement)
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1:
            raise value_error(
                f"weights should be a 1d sequence but given weights have shape {tuple(w.shape)}"
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise runtime_error(
                "invalid multinomial distribution: weights must be finite, "
                "non-negative and not all zero"
            )
        if not replacement and num_samples > np.count_nonzero(w):
            raise runtime_error(
                f"cannot sample n_sample={num_samples} > "
                f"{np.count_nonzero(w)} non-zero weights without replacement"
            )
        self.weights = w
        self.num_samples = int(num_samples)
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        p = self.weights / self.weights.sum()
        picks = random.numpy_generator(self.generator).choice(
            len(p), size=self.num_samples, replace=self.replacement, p=p
        )
        return iter(picks.tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler[list[int]]):
    """Groups another sampler's indices into lists of batch_size (the last may be shorter,
    unless drop_last)."""

    def __init__(
        self, sampler: Sampler[int] | Iterable[int], batch_size: int, drop_last: bool
    ) -> None:
        self.sampler = sampler
        self.batch_size = _positive_int("batch_size", batch_size)
        self.drop_last = _check_bool("drop_last", drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        indices = iter(self.sampler)
        while batch := list(itertools.islice(indices, self.batch_size)):
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size
