"""DataLoader: batches drawn from a dataset in the sampler's order, optionally by worker
threads.

Workers are threads, not processes: the dataset is shared (not copied), nothing is pickled,
and batches come back in the same order as with num_workers=0. They pay off when fetching a
sample waits on I/O or on numpy code that releases the GIL.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import runtime_error, type_error, value_error
from ...runtime import random
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

_worker = threading.local()


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker knows about itself: get_worker_info() returns it inside a worker."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


def get_worker_info() -> WorkerInfo | None:
    """The current worker's WorkerInfo, or None outside DataLoader workers.

    An IterableDataset reads it to shard its stream, since every worker iterates it.
    """
    return getattr(_worker, "info", None)


def _non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise value_error(f"{name} option should be a non-negative integer, got {value!r}")
    return int(value)


class DataLoader:
    """Iterates over a dataset in batches, as torch.utils.data.DataLoader.

    Map-style datasets are visited in the order of `sampler` (sequential, or random with
    shuffle=True), grouped by `batch_sampler` (batch_size and drop_last), and each batch is
    made by `collate_fn` (default_collate). With batch_size=None, samples come one by one
    through default_convert. An IterableDataset is read in order; with workers, each worker
    iterates it (shard it with get_worker_info()) and batches alternate between workers.
    """

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | Iterable | None = None,
        batch_sampler: Sampler | Iterable | None = None,
        num_workers: int = 0,
        collate_fn: Callable | None = None,
        drop_last: bool = False,
        *,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        generator=None,
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
        pin_memory_device: str = "",
        persistent_workers: bool = False,
        multiprocessing_context=None,
        in_order: bool = True,
    ) -> None:
        self.dataset = dataset
        self.num_workers = _non_negative_int("num_workers", num_workers)
        # Accepted as PyTorch takes them. Batches are numpy-backed CPU tensors, so there is no
        # page-locked copy to make (pin_memory); workers are threads of this process, started
        # each pass (persistent_workers: worker_init_fn runs at each pass's start), so there
        # is no process context to choose; batches always come in order, which in_order=False
        # also allows.
        if persistent_workers and self.num_workers == 0:
            raise value_error("persistent_workers option needs num_workers > 0")
        self.pin_memory = bool(pin_memory)
        self.pin_memory_device = str(pin_memory_device)
        self.persistent_workers = bool(persistent_workers)
        self.multiprocessing_context = multiprocessing_context
        self.in_order = bool(in_order)
        if timeout < 0:
            raise value_error(f"timeout option should be non-negative, got {timeout}")
        if prefetch_factor is not None:
            if self.num_workers == 0:
                raise value_error("prefetch_factor option needs worker threads (num_workers > 0)")
            _non_negative_int("prefetch_factor", prefetch_factor)
        if generator is not None and not isinstance(generator, random.Generator):
            raise type_error(
                f"generator must be an ember.Generator, got {type(generator).__name__}"
            )
        self._is_iterable = isinstance(dataset, IterableDataset)
        if self._is_iterable:
            for name, value in (
                ("shuffle", shuffle),
                ("sampler", sampler),
                ("batch_sampler", batch_sampler),
            ):
                if value not in (None, False):
                    raise value_error(
                        f"DataLoader with IterableDataset: expected unspecified "
                        f"{name} option, but got {name}={value!r}"
                    )
        elif sampler is not None and shuffle:
            raise value_error("sampler option is mutually exclusive with shuffle")

        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise value_error(
                    "batch_sampler option is mutually exclusive with batch_size, "
                    "shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise value_error(
                "batch_size=None option disables auto-batching and is mutually "
                "exclusive with drop_last"
            )

        if sampler is None and not self._is_iterable:
            sampler = (
                RandomSampler(dataset, generator=generator)
                if shuffle
                else SequentialSampler(dataset)
            )
        if batch_size is not None and batch_sampler is None and not self._is_iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        elif batch_size is not None:
            # validates batch_size and drop_last for an iterable dataset too
            BatchSampler([], batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.prefetch_factor = (
            2 if prefetch_factor is None and self.num_workers else prefetch_factor
        )
        self._auto_collation = batch_size is not None or batch_sampler is not None
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    # -- what one step fetches -----------------------------------------------------------

    def _fetch(self, index):
        """The batch (or sample) for one entry of the index sampler."""
        if not self._auto_collation:
            return self.collate_fn(self.dataset[index])
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(list(index)) if callable(getitems) else [self.dataset[i] for i in index]
        return self.collate_fn(samples)

    def _iterable_batches(self) -> Iterator:
        stream = iter(self.dataset)
        if not self._auto_collation:
            for sample in stream:
                yield self.collate_fn(sample)
            return
        while batch := list(itertools.islice(stream, self.batch_size)):
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield self.collate_fn(batch)

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> Iterator:
        # Drawn on every pass whatever num_workers is, so the shuffle order does not depend on
        # the number of workers.
        gen = random.numpy_generator(self.generator)
        base_seed = int(gen.integers(0, 2**63 - 1, dtype=np.int64))
        if self.num_workers == 0:
            if self._is_iterable:
                batches = self._iterable_batches()
            else:
                batches = map(self._fetch, self._index_sampler)
        elif self._is_iterable:
            batches = self._threaded_iterable(base_seed)
        else:
            batches = self._threaded_map(base_seed)
        return _LoaderIterator(self, batches)

    def _enter_worker(self, worker_id: int, base_seed: int) -> None:
        _worker.info = WorkerInfo(worker_id, self.num_workers, base_seed + worker_id, self.dataset)
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)

    def _timed_out(self):
        return runtime_error(
            f"DataLoader timed out after {self.timeout} seconds waiting for a worker"
        )

    def _threaded_map(self, base_seed: int) -> Iterator:
        ids = itertools.count()
        lock = threading.Lock()

        def fetch_in_worker(index):
            if get_worker_info() is None:  # this thread's first task
                with lock:
                    worker_id = next(ids)
                self._enter_worker(worker_id, base_seed)
            return self._fetch(index)

        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="ember-dataloader")
        indices = iter(self._index_sampler)
        pending = deque()
        try:
            for index in itertools.islice(indices, max(1, self.num_workers * self.prefetch_factor)):
                pending.append(pool.submit(fetch_in_worker, index))
            while pending:
                try:
                    batch = pending.popleft().result(timeout=self.timeout or None)
                except FutureTimeout:
                    raise self._timed_out() from None
                for index in itertools.islice(indices, 1):
                    pending.append(pool.submit(fetch_in_worker, index))
                yield batch
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _threaded_iterable(self, base_seed: int) -> Iterator:
        stop = threading.Event()
        queues = [
            queue.Queue(maxsize=max(1, self.prefetch_factor)) for _ in range(self.num_workers)
        ]

        def put(q, item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False

        def work(worker_id: int) -> None:
            q = queues[worker_id]
            try:
                self._enter_worker(worker_id, base_seed)
                for batch in self._iterable_batches():
                    if not put(q, ("batch", batch)):
                        return
                put(q, ("done", None))
            except BaseException as exc:  # noqa: BLE001  (the main thread raises it)
                put(q, ("error", exc))

        for worker_id in range(self.num_workers):
            threading.Thread(
                target=work, args=(worker_id,), daemon=True, name=f"ember-dataloader-{worker_id}"
            ).start()
        try:
            active = list(range(self.num_workers))
            while active:
                for worker_id in list(active):
                    try:
                        kind, value = queues[worker_id].get(timeout=self.timeout or None)
                    except queue.Empty:
                        raise self._timed_out() from None
                    if kind == "error":
                        raise value
                    if kind == "done":
                        active.remove(worker_id)
                    else:
                        yield value
        finally:
            stop.set()

    def __len__(self) -> int:
        if not self._is_iterable:
            return len(self._index_sampler)
        n = len(self.dataset)
        if self.batch_size is None:
            return n
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size


class _LoaderIterator:
    """What iter(loader) gives, as PyTorch's: the batches one pass yields, with len() (the
    loader's: scripts size progress bars and schedules by len(iter(loader)))."""

    __slots__ = ("_loader", "_batches")

    def __init__(self, loader: DataLoader, batches: Iterator):
        self._loader = loader
        self._batches = batches

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._batches)

    def __len__(self) -> int:
        return len(self._loader)
