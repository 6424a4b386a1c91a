"""DistributedSampler: each process's share of a dataset, as torch.utils.data.DistributedSampler.

The ranks' shares partition the dataset (padded by repeating indices from the start, or
trimmed with drop_last, so that every share has the same length); with shuffle, the order is a
permutation seeded by seed + epoch, the same on every rank. The permutation is PyTorch's own:
torch.randperm's CPU algorithm over a Mersenne Twister seeded as torch.Generator seeds it, so
ember and PyTorch give every rank exactly the same indices.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np

from ...errors import value_error
from .sampler import Sampler, _check_bool

_MT_WORDS = 624


def _mt19937_state(seed: int) -> np.ndarray:
    """The MT19937 state torch.Generator.manual_seed(seed) sets (init_genrand with the seed's
    low 32 bits)."""
    key = np.empty(_MT_WORDS, dtype=np.uint32)
    s = seed & 0xFFFFFFFF
    key[0] = s
    for j in range(1, _MT_WORDS):
        s = (1812433253 * (s ^ (s >> 30)) + j) & 0xFFFFFFFF
        key[j] = s
    return key


def torch_randperm(n: int, seed: int) -> list[int]:
    """torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU: a
    Fisher-Yates shuffle drawing `random() % (n - i)` from the generator's 32-bit outputs
    (PyTorch's algorithm for n below 2**32 / 20)."""
    bits = np.random.MT19937()
    bits.state = {
        "bit_generator": "MT19937",
        "state": {"key": _mt19937_state(seed), "pos": _MT_WORDS},
    }
    draws = bits.random_raw(max(n - 1, 0)).tolist()
    perm = list(range(n))
    for i in range(n - 1):
        z = i + draws[i] % (n - i)
        perm[i], perm[z] = perm[z], perm[i]
    return perm


class DistributedSampler(Sampler[int]):
    """The indices of a dataset that rank `rank` of `num_replicas` processes visits.

    num_replicas and rank default to the default process group's world size and rank. Call
    set_epoch(epoch) at the start of each epoch so that each epoch has a fresh shuffle.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            from ... import distributed as dist

            if num_replicas is None:
                num_replicas = dist.get_world_size()
            if rank is None:
                rank = dist.get_rank()
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise value_error(f"num_replicas must be a positive int, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise value_error(
                f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.shuffle = _check_bool("shuffle", shuffle)
        self.seed = int(seed)
        self.drop_last = _check_bool("drop_last", drop_last)
        n = len(dataset)
        if self.drop_last and n % num_replicas:
            # drop the tail so that every rank gets the same number of samples
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            indices = torch_randperm(n, self.seed + self.epoch)
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            else:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[: self.total_size]
        return iter(indices[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass belongs to: with shuffle, each epoch has its own order."""
        self.epoch = epoch
