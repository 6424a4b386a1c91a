"""Datasets: the map-style and iterable protocols, and the ways of combining and splitting them."""

from __future__ import annotations

import bisect
import itertools
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np

from ...errors import index_error, type_error, value_error
from ...runtime import random

T_co = TypeVar("T_co", covariant=True)


class Dataset(Generic[T_co]):
    """A map-style dataset: `dataset[i]` is sample i; subclasses define __getitem__ (and
    usually __len__, which samplers and DataLoader's len() need).

    A subclass may also define `__getitems__(indices) -> list` to fetch a whole batch at once;
    DataLoader then calls it instead of __getitem__ per index.
    """

    def __getitem__(self, index) -> T_co:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: Dataset[T_co]) -> ConcatDataset[T_co]:
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co], Iterable[T_co]):
    """A dataset that is a stream: subclasses define __iter__ (DataLoader draws batches from it
    in order; samplers do not apply)."""

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __add__(self, other: IterableDataset[T_co]) -> ChainDataset[T_co]:
        return ChainDataset([self, other])


class TensorDataset(Dataset):
    """Sample i is the tuple of every tensor's row i; all tensors share their first dimension."""

    def __init__(self, *tensors) -> None:
        if not tensors:
            raise value_error("TensorDataset needs at least one tensor")
        for i, t in enumerate(tensors):
            if not hasattr(t, "shape") or not hasattr(t, "ndim"):
                raise type_error(f"TensorDataset: argument {i} is a {type(t).__name__}, not a "
                                 "tensor")
        sizes = [t.shape[0] if t.ndim else None for t in tensors]
        if None in sizes:
            raise value_error("TensorDataset: every tensor needs a first dimension to index")
        if any(size != sizes[0] for size in sizes):
            raise value_error(f"Size mismatch between tensors: first dimensions {sizes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(tensor[index] for tensor in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class ConcatDataset(Dataset[T_co]):
    """Map-style datasets one after the other: indices run through each in turn."""

    @staticmethod
    def cumsum(sequence) -> list[int]:
        return list(itertools.accumulate(len(d) for d in sequence))

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise value_error("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise type_error(
                    "ConcatDataset does not support IterableDataset (use ChainDataset)"
                )
        self.cumulative_sizes = self.cumsum(self.datasets)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if not -n <= idx < n:
            raise index_error(f"index {idx} is out of range for a ConcatDataset of length {n}")
        if idx < 0:
            idx += n
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[dataset_idx - 1] if dataset_idx else 0
        return self.datasets[dataset_idx][idx - start]


class ChainDataset(IterableDataset):
    """Iterable datasets one after the other, chained lazily."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise type_error(
                    f"ChainDataset only supports IterableDataset, got {type(d).__name__}"
                )
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


class Subset(Dataset[T_co]):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list[int]) -> list:
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)


def _split_lengths(lengths: Sequence[int | float], total: int) -> list[int]:
    """Lengths given as fractions summing to 1 become counts, as torch computes them."""
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = []
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise value_error(f"Fraction at index {i} is not between 0 and 1: {frac}")
            counts.append(math.floor(total * frac))
        # the remainder goes round-robin to the first splits
        for i in range(total - sum(counts)):
            counts[i % len(counts)] += 1
        for i, count in enumerate(counts):
            if count == 0:
                warnings.warn(
                    f"Length of split at index {i} is 0. This might result in an empty dataset.",
                    stacklevel=3,
                )
        return counts
    for i, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise value_error(
                f"random_split: lengths must be non-negative ints or fractions "
                f"summing to 1; got {length!r} at index {i}"
            )
    if sum(lengths) != total:
        raise value_error(
            f"Sum of input lengths does not equal the length of the input "
            f"dataset! ({sum(lengths)} != {total})"
        )
    return [int(n) for n in lengths]


def random_split(
    dataset: Dataset[T_co], lengths: Sequence[int | float], generator=None
) -> list[Subset[T_co]]:
    """Split dataset into non-overlapping random Subsets of the given lengths (counts, or
    fractions summing to 1).

    The permutation comes from `generator` (an ember.Generator), else from the global generator
    that ember.manual_seed seeds.
    """
    counts = _split_lengths(lengths, len(dataset))
    indices = random.permutation(np, sum(counts), generator).tolist()
    return [
        Subset(dataset, indices[end - n : end])
        for end, n in zip(itertools.accumulate(counts), counts)
    ]
