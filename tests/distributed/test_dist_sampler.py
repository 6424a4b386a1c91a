"""DistributedSampler: the ranks' shares partition the dataset in every epoch, and are
torch.utils.data.DistributedSampler's indices exactly."""

import itertools

import ember
import numpy as np
import pytest
from ember.utils.data import DataLoader, DistributedSampler, TensorDataset
from ember.utils.data.distributed import torch_randperm

SIZES = [1, 7, 10, 12, 97]
REPLICAS = [1, 2, 3, 4]


def shares(n, replicas, epoch, **kwargs):
    samplers = [DistributedSampler(range(n), replicas, r, **kwargs) for r in range(replicas)]
    for s in samplers:
        s.set_epoch(epoch)
    return [list(s) for s in samplers], samplers


@pytest.mark.parametrize("n, replicas", list(itertools.product(SIZES, REPLICAS)))
@pytest.mark.parametrize("shuffle", [True, False])
def test_shares_partition_the_dataset_in_every_epoch(n, replicas, shuffle):
    orders = set()
    for epoch in range(3):
        parts, samplers = shares(n, replicas, epoch, shuffle=shuffle, seed=5)
        per_rank = -(-n // replicas)  # padded up to equal shares
        assert all(len(p) == per_rank == len(s) for p, s in zip(parts, samplers))
        everything = [i for p in parts for i in p]
        assert set(everything) == set(range(n))
        # the padding repeats the epoch's order from its start: no index is drawn twice more
        counts = np.bincount(everything, minlength=n)
        assert counts.max() - counts.min() <= 1
        orders.add(tuple(everything))
    if shuffle and n > 3:
        assert len(orders) == 3  # set_epoch reshuffles
    if not shuffle:
        assert len(orders) == 1


@pytest.mark.parametrize("n, replicas", list(itertools.product(SIZES, REPLICAS)))
def test_drop_last_gives_disjoint_equal_shares(n, replicas):
    parts, samplers = shares(n, replicas, 1, shuffle=True, drop_last=True)
    everything = [i for p in parts for i in p]
    assert len(everything) == len(set(everything)) == (n // replicas) * replicas
    assert all(len(p) == n // replicas == len(s) for p, s in zip(parts, samplers))


def test_the_same_seed_and_epoch_give_the_same_order_on_every_process():
    a = DistributedSampler(range(50), 2, 0, seed=3)
    b = DistributedSampler(range(50), 2, 0, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)
    assert list(DistributedSampler(range(50), 2, 0, seed=4)) != list(
        DistributedSampler(range(50), 2, 0, seed=3)
    )


def test_bad_rank_and_replicas_are_clear_errors():
    with pytest.raises(ember.EmberError, match=r"Invalid rank 2, rank should be in the interval"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ember.EmberError, match="num_replicas must be a positive int"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(ember.EmberError, match="init_process_group"):
        DistributedSampler(range(4))  # no process group to ask


def test_a_dataloader_over_the_sampler_visits_the_rank_s_share():
    x = ember.arange(10, dtype=ember.float32)
    sampler = DistributedSampler(range(10), num_replicas=2, rank=1, shuffle=False)
    batches = list(DataLoader(TensorDataset(x), batch_size=2, sampler=sampler))
    assert [b[0].tolist() for b in batches] == [[1.0, 3.0], [5.0, 7.0], [9.0]]


@pytest.mark.oracle
@pytest.mark.parametrize("n", [1, 2, 10, 1000])
@pytest.mark.parametrize("seed", [0, 7, 2**32 + 3])
def test_randperm_is_torchs(n, seed):
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(seed)
    assert torch_randperm(n, seed) == torch.randperm(n, generator=generator).tolist()


@pytest.mark.oracle
@pytest.mark.parametrize("n, replicas", list(itertools.product(SIZES, REPLICAS)))
@pytest.mark.parametrize("shuffle, drop_last", [(True, False), (True, True), (False, False)])
def test_indices_match_torch(n, replicas, shuffle, drop_last):
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchSampler

    for rank in range(replicas):
        ours = DistributedSampler(range(n), replicas, rank, shuffle, seed=11, drop_last=drop_last)
        theirs = TorchSampler(range(n), replicas, rank, shuffle, seed=11, drop_last=drop_last)
        for epoch in (0, 3):
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)
            assert len(ours) == len(theirs)
