"""ember.utils.data as a PyTorch user expects it: datasets, random_split, samplers, collation
and DataLoader, seeded by ember.manual_seed or an ember.Generator."""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict, namedtuple

import ember
import numpy as np
import pytest
from ember.utils.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    default_convert,
    get_worker_info,
    random_split,
)

Point = namedtuple("Point", ["x", "y"])


def rows(n: int, width: int = 3):
    """A TensorDataset whose sample i is (features with first value i, label i)."""
    features = ember.arange(n * width, dtype=ember.float32).reshape(n, width) / width
    labels = ember.arange(n)
    return TensorDataset(features, labels)


def labels_of(loader) -> list[list[int]]:
    return [batch[1].tolist() for batch in loader]


class Squares(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i * i

    def __len__(self) -> int:
        return self.n


class Stream(IterableDataset):
    """0..n-1; with workers, each worker yields its own share (i % num_workers == id)."""

    def __init__(self, n: int, sized: bool = True):
        self.n = n
        self.sized = sized

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self) -> int:
        if not self.sized:
            raise TypeError("unsized stream")
        return self.n


# -- datasets ----------------------------------------------------------------------------------


def test_tensor_dataset_sample_is_the_row_of_every_tensor():
    x = ember.randn(5, 2)
    y = ember.arange(5)
    ds = TensorDataset(x, y)
    assert len(ds) == 5
    sample = ds[3]
    assert isinstance(sample, tuple) and len(sample) == 2
    np.testing.assert_array_equal(sample[0].numpy(), x.numpy()[3])
    assert sample[1].item() == 3


def test_tensor_dataset_refuses_tensors_of_different_lengths():
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(ember.zeros(4, 2), ember.zeros(5))


def test_concat_dataset_runs_through_each_dataset_in_turn():
    a, b, c = Squares(3), Squares(0), Squares(4)
    ds = ConcatDataset([a, b, c])
    assert len(ds) == 7
    assert ds.cumulative_sizes == [3, 3, 7]
    assert [ds[i] for i in range(7)] == [0, 1, 4, 0, 1, 4, 9]
    assert ds[-1] == 9 and ds[-7] == 0
    with pytest.raises(IndexError):
        ds[7]
    with pytest.raises(IndexError):
        ds[-8]
    assert [(a + c)[i] for i in range(7)] == [0, 1, 4, 0, 1, 4, 9]


def test_concat_dataset_refuses_iterable_datasets_and_empty_lists():
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([Squares(2), Stream(3)])
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])


def test_chain_dataset_and_iterable_addition_chain_streams():
    assert list(ChainDataset([Stream(2), Stream(3)])) == [0, 1, 0, 1, 2]
    assert list(Stream(2) + Stream(1)) == [0, 1, 0]
    assert len(Stream(2) + Stream(1)) == 3


def test_subset_maps_indices_and_fetches_batches():
    ds = Subset(Squares(10), [7, 2, 5])
    assert len(ds) == 3
    assert [ds[i] for i in range(3)] == [49, 4, 25]
    assert ds.__getitems__([2, 0]) == [25, 49]


def test_random_split_with_lengths_partitions_the_dataset():
    ember.manual_seed(0)
    parts = random_split(Squares(10), [3, 7])
    assert [len(p) for p in parts] == [3, 7]
    indices = parts[0].indices + parts[1].indices
    assert sorted(indices) == list(range(10))
    assert indices != list(range(10))  # shuffled


@pytest.mark.parametrize(
    "n,fractions",
    [
        (10, [0.3, 0.7]),
        (5, [0.5, 0.5]),
        (10, [1 / 3, 1 / 3, 1 / 3]),
        (7, [0.1, 0.2, 0.7]),
        (3, [0.25, 0.25, 0.25, 0.25]),
    ],
)
def test_random_split_fractions_give_torchs_lengths(n, fractions):
    ember.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = random_split(Squares(n), fractions)
        # torch's rule: floor of each fraction, the remainder handed out round-robin
        expected = [int(n * f) for f in fractions]
        for i in range(n - sum(expected)):
            expected[i % len(expected)] += 1
    # an empty split is warned about, as torch does
    assert any("is 0" in str(w.message) for w in caught) == (0 in expected)
    assert [len(p) for p in parts] == expected
    assert sorted(i for p in parts for i in p.indices) == list(range(n))


def test_random_split_refuses_lengths_that_do_not_add_up():
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(Squares(10), [3, 6])
    with pytest.raises(ValueError, match="between 0 and 1"):
        random_split(Squares(10), [1.5, -0.5])


def test_random_split_is_reproducible_with_manual_seed_and_generators():
    ember.manual_seed(3)
    first = [p.indices for p in random_split(Squares(20), [5, 15])]
    ember.manual_seed(3)
    again = [p.indices for p in random_split(Squares(20), [5, 15])]
    assert first == again
    g1 = ember.Generator().manual_seed(11)
    g2 = ember.Generator().manual_seed(11)
    ember.manual_seed(99)  # an explicit generator ignores the global seed
    a = [p.indices for p in random_split(Squares(20), [0.5, 0.5], generator=g1)]
    b = [p.indices for p in random_split(Squares(20), [0.5, 0.5], generator=g2)]
    assert a == b
    c = [
        p.indices
        for p in random_split(Squares(20), [0.5, 0.5], generator=ember.Generator().manual_seed(12))
    ]
    assert c != a


# -- generators --------------------------------------------------------------------------------


def test_generator_streams_are_seeded_and_independent_of_the_global_seed():
    g = ember.Generator().manual_seed(5)
    assert g.initial_seed() == 5
    ember.manual_seed(0)
    a = ember.rand(4, generator=g)
    ember.manual_seed(1)
    g.manual_seed(5)
    b = ember.rand(4, generator=g)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    ember.manual_seed(0)
    global_draw = ember.rand(4)
    assert not np.array_equal(global_draw.numpy(), a.numpy())


def test_generator_state_resumes_the_stream():
    g = ember.Generator().manual_seed(7)
    ember.randn(3, generator=g)
    state = g.get_state()
    assert isinstance(state, ember.Tensor) and state.dtype == ember.uint8
    a = ember.randperm(10, generator=g).tolist()
    b = ember.randint(0, 100, (5,), generator=g).tolist()
    g.set_state(state)
    assert ember.randperm(10, generator=g).tolist() == a
    assert ember.randint(0, 100, (5,), generator=g).tolist() == b
    with pytest.raises(RuntimeError, match="uint8"):
        g.set_state(ember.zeros(3))


def test_generator_must_be_an_ember_generator():
    with pytest.raises(TypeError, match="ember.Generator"):
        ember.rand(2, generator=np.random.default_rng(0))
    with pytest.raises(TypeError, match="ember.Generator"):
        DataLoader(Squares(3), shuffle=True, generator=1234)


# -- samplers ----------------------------------------------------------------------------------


def test_sequential_sampler_visits_in_order():
    sampler = SequentialSampler(Squares(4))
    assert list(sampler) == [0, 1, 2, 3] and len(sampler) == 4


def test_random_sampler_gives_a_fresh_permutation_each_pass():
    ember.manual_seed(0)
    sampler = RandomSampler(Squares(30))
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(30))
    assert first != second
    ember.manual_seed(0)
    assert list(RandomSampler(Squares(30))) == first


def test_random_sampler_num_samples_and_replacement():
    ember.manual_seed(1)
    sampler = RandomSampler(Squares(4), num_samples=10)
    drawn = list(sampler)
    assert len(sampler) == 10 and len(drawn) == 10
    assert sorted(drawn[:4]) == sorted(drawn[4:8]) == [0, 1, 2, 3]  # whole permutations first
    with_replacement = list(RandomSampler(Squares(3), replacement=True, num_samples=100))
    assert len(with_replacement) == 100 and set(with_replacement) == {0, 1, 2}


def test_random_sampler_validates_its_arguments():
    with pytest.raises(TypeError, match="replacement"):
        RandomSampler(Squares(3), replacement=1)
    with pytest.raises(ValueError, match="num_samples"):
        RandomSampler(Squares(3), num_samples=0)
    with pytest.raises(ValueError, match="num_samples"):
        RandomSampler(Squares(0))


def test_subset_random_sampler_permutes_the_given_indices():
    g = ember.Generator().manual_seed(2)
    drawn = list(SubsetRandomSampler([10, 20, 30, 40], generator=g))
    assert sorted(drawn) == [10, 20, 30, 40]


def test_weighted_random_sampler_follows_the_weights():
    ember.manual_seed(0)
    drawn = list(WeightedRandomSampler([0.0, 1.0, 3.0, 0.0], num_samples=2000))
    counts = np.bincount(drawn, minlength=4)
    assert counts[0] == counts[3] == 0
    assert 2.5 < counts[2] / counts[1] < 3.5
    distinct = list(WeightedRandomSampler([1, 1, 1, 0, 1], 4, replacement=False))
    assert sorted(distinct) == [0, 1, 2, 4]
    with pytest.raises(RuntimeError, match="without replacement"):
        WeightedRandomSampler([1, 0, 1], 3, replacement=False)
    with pytest.raises(RuntimeError, match="non-negative"):
        WeightedRandomSampler([1, -1], 1)


@pytest.mark.parametrize("n", [0, 1, 9, 10, 11])
@pytest.mark.parametrize("batch_size", [1, 3, 10])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_sampler_matches_torch(n, batch_size, drop_last):
    ours = BatchSampler(SequentialSampler(range(n)), batch_size, drop_last)
    theirs = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    if drop_last and theirs and len(theirs[-1]) < batch_size:
        theirs.pop()
    assert list(ours) == theirs
    assert len(ours) == len(theirs)


def test_batch_sampler_validates_its_arguments():
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            BatchSampler(range(3), bad, False)
    with pytest.raises(ValueError, match="drop_last"):
        BatchSampler(range(3), 2, 0)


# -- collation ---------------------------------------------------------------------------------


def test_collate_stacks_tensors_along_a_new_first_dimension():
    samples = [ember.randn(2, 3) for _ in range(4)]
    batch = default_collate(samples)
    assert tuple(batch.shape) == (4, 2, 3)
    np.testing.assert_array_equal(batch.numpy(), np.stack([s.numpy() for s in samples]))


def test_collate_of_numbers_follows_torch_dtypes():
    assert default_collate([1.5, 2.0]).dtype == ember.float64
    assert default_collate([1, 2]).dtype == ember.int64
    assert default_collate([True, False]).dtype == ember.bool
    assert default_collate([np.float32(1), np.float32(2)]).dtype == ember.float32
    assert default_collate([np.int32(1), np.int32(2)]).dtype == ember.int32
    assert default_collate([1, 2]).tolist() == [1, 2]


def test_collate_of_numpy_arrays_keeps_their_dtype():
    arrays = [np.arange(3, dtype=np.float64) + i for i in range(2)]
    batch = default_collate(arrays)
    assert isinstance(batch, ember.Tensor) and batch.dtype == ember.float64
    np.testing.assert_array_equal(batch.numpy(), np.stack(arrays))
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_collate_keeps_strings_and_transposes_tuples_into_lists():
    batch = default_collate([(1, "a"), (2, "b")])
    assert isinstance(batch, list) and len(batch) == 2
    assert batch[0].tolist() == [1, 2]
    assert list(batch[1]) == ["a", "b"]
    assert default_collate(["x", "y"]) == ["x", "y"]


def test_collate_dicts_key_by_key_keeping_their_type():
    samples = [OrderedDict([("b", i), ("a", ember.full((2,), float(i)))]) for i in range(3)]
    batch = default_collate(samples)
    assert type(batch) is OrderedDict and list(batch) == ["b", "a"]
    assert batch["b"].tolist() == [0, 1, 2]
    assert tuple(batch["a"].shape) == (3, 2)


def test_collate_namedtuples_field_by_field():
    batch = default_collate([Point(1.0, "p"), Point(2.0, "q")])
    assert type(batch) is Point
    assert batch.x.tolist() == [1.0, 2.0] and batch.x.dtype == ember.float64
    assert list(batch.y) == ["p", "q"]


def test_collate_refuses_ragged_sequences_and_unknown_types():
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object(), object()])


def _plain(value):
    """A comparable form of an ember or torch batch."""
    if hasattr(value, "numpy") and hasattr(value, "dtype"):
        array = value.numpy()
        return ("tensor", str(value.dtype).split(".")[-1], array.shape, array.tolist())
    if isinstance(value, dict):
        return (type(value).__name__, [(k, _plain(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_plain(v) for v in value])
    return value


@pytest.mark.oracle
def test_collate_matches_torch_on_a_nested_random_batch():
    torch = pytest.importorskip("torch")
    import torch.utils.data as tdata

    rng = np.random.default_rng(0)

    def sample(framework):
        as_t = ember.from_numpy if framework == "ember" else torch.from_numpy
        values = rng.standard_normal(3).astype(np.float32)
        return {
            "image": as_t(values.copy()),
            "meta": (int(rng.integers(9)), "name", float(rng.random())),
            "extra": [np.arange(2), {"flag": bool(rng.random() > 0.5)}],
            "point": Point(1, 2.5),
        }

    state = rng.bit_generator.state
    ours = default_collate([sample("ember") for _ in range(4)])
    rng.bit_generator.state = state
    theirs = tdata.default_collate([sample("torch") for _ in range(4)])
    assert _plain(ours) == _plain(theirs)


def test_default_convert_turns_numpy_into_tensors_only():
    converted = default_convert({"a": np.arange(3), "b": (np.float64(2.0), 5, "s")})
    assert isinstance(converted["a"], ember.Tensor) and converted["a"].dtype == ember.int64
    assert isinstance(converted["b"], list)
    assert converted["b"][0].dtype == ember.float64 and converted["b"][1:] == [5, "s"]


# -- DataLoader ---------------------------------------------------------------------------------


def test_dataloader_batches_in_order_with_a_short_last_batch():
    ds = rows(10)
    loader = DataLoader(ds, batch_size=3)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(b[1]) for b in batches] == [3, 3, 3, 1]
    assert labels_of(loader) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    features = batches[1][0]
    assert tuple(features.shape) == (3, 3)
    np.testing.assert_array_equal(features.numpy(), ds.tensors[0].numpy()[3:6])


def test_dataloader_drop_last_drops_the_short_batch():
    loader = DataLoader(rows(10), batch_size=3, drop_last=True)
    assert len(loader) == 3
    assert labels_of(loader) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_dataloader_without_batching_converts_single_samples():
    loader = DataLoader([np.arange(2) + i for i in range(3)], batch_size=None)
    samples = list(loader)
    assert len(loader) == 3
    assert all(isinstance(s, ember.Tensor) and tuple(s.shape) == (2,) for s in samples)
    assert [s.tolist() for s in samples] == [[0, 1], [1, 2], [2, 3]]


def test_dataloader_uses_the_given_sampler_batch_sampler_and_collate_fn():
    ds = Squares(6)
    assert list(DataLoader(ds, batch_size=2, sampler=[5, 4, 3, 2, 1, 0], collate_fn=list)) == [
        [25, 16],
        [9, 4],
        [1, 0],
    ]
    assert [b.tolist() for b in DataLoader(ds, batch_sampler=[[0, 2], [5]])] == [[0, 4], [25]]


def test_dataloader_prefers_a_dataset_getitems():
    calls = []

    class Batched(Squares):
        def __getitems__(self, indices):
            calls.append(list(indices))
            return [i * i for i in indices]

    assert [b.tolist() for b in DataLoader(Batched(5), batch_size=2)] == [[0, 1], [4, 9], [16]]
    assert calls == [[0, 1], [2, 3], [4]]


def test_dataloader_refuses_contradictory_options():
    ds = Squares(4)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=[0, 1], shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler"):
        DataLoader(ds, batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="drop_last"):
        DataLoader(ds, batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(ds, prefetch_factor=2)
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(Stream(3), batch_size=0)


def test_shuffle_is_reproducible_with_manual_seed_and_differs_across_epochs():
    ds = rows(25)
    ember.manual_seed(123)
    loader = DataLoader(ds, batch_size=4, shuffle=True)
    epoch1, epoch2 = labels_of(loader), labels_of(loader)
    ember.manual_seed(123)
    other = DataLoader(ds, batch_size=4, shuffle=True)
    assert labels_of(other) == epoch1 and labels_of(other) == epoch2
    assert epoch1 != epoch2
    for epoch in (epoch1, epoch2):
        flat = [i for batch in epoch for i in batch]
        assert sorted(flat) == list(range(25)) and flat != list(range(25))
    ember.manual_seed(124)
    assert labels_of(DataLoader(ds, batch_size=4, shuffle=True)) != epoch1


def test_shuffle_with_a_generator_ignores_the_global_seed():
    ds = rows(20)
    ember.manual_seed(0)
    a = labels_of(
        DataLoader(ds, batch_size=5, shuffle=True, generator=ember.Generator().manual_seed(9))
    )
    ember.manual_seed(1)
    b = labels_of(
        DataLoader(ds, batch_size=5, shuffle=True, generator=ember.Generator().manual_seed(9))
    )
    assert a == b


def test_dataloader_over_an_iterable_dataset():
    loader = DataLoader(Stream(7), batch_size=3)
    assert len(loader) == 3
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    dropping = DataLoader(Stream(7), batch_size=3, drop_last=True)
    assert len(dropping) == 2 and [b.tolist() for b in dropping] == [[0, 1, 2], [3, 4, 5]]
    assert [
        s.item() if isinstance(s, ember.Tensor) else s
        for s in DataLoader(Stream(3), batch_size=None)
    ] == [0, 1, 2]
    with pytest.raises(TypeError):
        len(DataLoader(Stream(3, sized=False)))


# -- worker threads ------------------------------------------------------------------------


def test_worker_threads_give_the_same_batches_as_the_main_thread():
    ds = rows(37)
    ember.manual_seed(5)
    plain = labels_of(DataLoader(ds, batch_size=4, shuffle=True))
    ember.manual_seed(5)
    threaded = labels_of(
        DataLoader(ds, batch_size=4, shuffle=True, num_workers=3, prefetch_factor=1)
    )
    assert threaded == plain


def test_workers_know_who_they_are_and_run_worker_init_fn():
    seen, inits = set(), []
    lock = threading.Lock()

    class Probe(Squares):
        def __getitem__(self, i):
            info = get_worker_info()
            with lock:
                seen.add((info.id, info.num_workers, threading.get_ident()))
            time.sleep(0.002)
            return super().__getitem__(i)

    loader = DataLoader(Probe(40), batch_size=2, num_workers=3, worker_init_fn=inits.append)
    assert [b.tolist() for b in loader] == [[4 * i * i, (2 * i + 1) ** 2] for i in range(20)]
    assert get_worker_info() is None
    ids = {worker_id for worker_id, _, _ in seen}
    assert ids <= {0, 1, 2} and {n for _, n, _ in seen} == {3}
    assert sorted(inits) == sorted(ids)
    assert threading.get_ident() not in {ident for _, _, ident in seen}


def test_a_worker_error_reaches_the_caller():
    class Broken(Squares):
        def __getitem__(self, i):
            if i == 5:
                raise KeyError("sample 5 is corrupt")
            return i

    with pytest.raises(KeyError, match="corrupt"):
        list(DataLoader(Broken(8), batch_size=2, num_workers=2))
    with pytest.raises(KeyError, match="corrupt"):
        list(DataLoader(Broken(8), batch_size=2))


def test_iterable_workers_shard_the_stream_and_alternate():
    loader = DataLoader(Stream(10), batch_size=2, num_workers=2)
    batches = [b.tolist() for b in loader]
    # worker 0 holds 0,2,4,6,8 and worker 1 holds 1,3,5,7,9; their batches alternate
    assert batches == [[0, 2], [1, 3], [4, 6], [5, 7], [8], [9]]


def test_iterable_worker_errors_and_timeouts_reach_the_caller():
    class Failing(IterableDataset):
        def __iter__(self):
            yield 1
            raise ValueError("stream broke")

    with pytest.raises(ValueError, match="stream broke"):
        list(DataLoader(Failing(), batch_size=1, num_workers=2))

    class Slow(Squares):
        def __getitem__(self, i):
            time.sleep(0.5)
            return i

    with pytest.raises(RuntimeError, match="timed out"):
        list(DataLoader(Slow(2), num_workers=1, timeout=0.05))


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loaders_iterator_has_the_loaders_length(workers):
    # scripts size progress bars by len(iter(loader)); next() on it takes one batch
    loader = DataLoader(TensorDataset(ember.arange(10.0)), batch_size=3, num_workers=workers)
    it = iter(loader)
    assert len(it) == len(loader) == 4 and iter(it) is it
    assert next(it)[0].tolist() == [0.0, 1.0, 2.0]
    assert [b[0].tolist() for b in it] == [[3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [9.0]]
    with pytest.raises(StopIteration):
        next(it)
