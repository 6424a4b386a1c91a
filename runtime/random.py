"""The seeded random generators: one per device, reseeded together by manual_seed()."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..errors import EmberNotImplementedError, runtime_error, type_error
from .device import as_device

_seed = 0
_generators: dict = {}


def manual_seed(seed: int) -> None:
    global _seed
    _seed = int(seed)
    _generators.clear()


def initial_seed() -> int:
    return _seed


_local = threading.local()  # .seeded: (seed, generators) while a seeded() block runs


def generator(xp):
    """The generator of an array module (numpy or cupy), created from the current seed (or
    from the seed of the seeded() block this thread is in)."""
    key = xp.__name__
    seeded_here = getattr(_local, "seeded", None)
    seed, generators = (_seed, _generators) if seeded_here is None else seeded_here
    gen = generators.get(key)
    if gen is None:
        if xp is np:
            gen = np.random.Generator(np.random.PCG64(seed))
        else:
            gen = xp.random.RandomState(seed)
        generators[key] = gen
    return gen


@contextlib.contextmanager
def seeded(seed: int):
    """Draws made on this thread inside the block come from generators of their own, made
    from `seed` as manual_seed(seed) makes the global ones (the same numbers, in the same
    order), and leave the global streams where they were: the seed input of an exported
    graph that draws random numbers."""
    saved = getattr(_local, "seeded", None)
    _local.seeded = (int(seed), {})
    try:
        yield
    finally:
        _local.seeded = saved


def stream_state():
    """The position of every global stream (to draw the same numbers again: a captured call
    whose guard failed after its graph drew is traced afresh from the same position)."""
    generator(np)  # made now if no draw made it yet (manual_seed drops them)
    return {key: (gen.bit_generator.state if hasattr(gen, "bit_generator") else gen.get_state())
            for key, gen in _generators.items()}


def restore_stream_state(state) -> None:
    for key, value in state.items():
        gen = _generators.get(key)
        if gen is None:
            continue
        if hasattr(gen, "bit_generator"):
            gen.bit_generator.state = value
        else:
            gen.set_state(value)


# torch.Generator's seed when none is given.
DEFAULT_SEED = 67280421310721


class Generator:
    """A seeded CPU random stream of its own, as torch.Generator: passed as `generator=`.

    Numbers drawn from it never disturb the global generators, and the same seed gives the
    same numbers. Draws for a CUDA tensor are made on the host and copied.
    """

    def __init__(self, device="cpu"):
        dev = as_device(device)
        if dev.type != "cpu":
            raise EmberNotImplementedError(
                f"Generator(device={str(dev)!r}): ember's generators live on the CPU; use "
                "Generator('cpu') (its numbers can fill tensors on any device)"
            )
        self.device = dev
        self.manual_seed(DEFAULT_SEED)

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed)
        self._seed = seed
        # PCG64 takes non-negative seeds; torch accepts negatives by wrapping them.
        self._np = np.random.Generator(np.random.PCG64(seed % 2**64))
        return self

    def seed(self) -> int:
        """Reseed from the operating system's entropy; returns the new seed."""
        seed = int(np.random.SeedSequence().entropy % 2**63)
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> np.ndarray:
        """The stream's position as bytes (uint8): set_state() of it resumes from here."""
        state = self._np.bit_generator.state
        words = (state["state"]["state"], state["state"]["inc"])
        raw = b"".join(w.to_bytes(16, "little") for w in words)
        raw += bytes([state["has_uint32"]]) + int(state["uinteger"]).to_bytes(4, "little")
        return np.frombuffer(raw, dtype=np.uint8).copy()

    def set_state(self, new_state) -> Generator:
        raw = np.asarray(new_state)
        if raw.dtype != np.uint8 or raw.shape != (_STATE_BYTES,):
            raise runtime_error(
                f"Generator.set_state expects the {_STATE_BYTES} uint8 values get_state() "
                f"returns, got dtype {raw.dtype} and shape {tuple(raw.shape)}"
            )
        raw = raw.tobytes()
        self._np.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {
                "state": int.from_bytes(raw[:16], "little"),
                "inc": int.from_bytes(raw[16:32], "little"),
            },
            "has_uint32": raw[32],
            "uinteger": int.from_bytes(raw[33:37], "little"),
        }
        return self

    def __repr__(self) -> str:
        return f"<ember.Generator(device='cpu', initial_seed={self._seed})>"


_STATE_BYTES = 37


def _source(xp, gen):
    """The generator to draw from, and whether it is a numpy one."""
    if gen is None:
        return generator(xp), xp is np
    if not isinstance(gen, Generator):
        raise type_error(f"generator must be an ember.Generator, got {type(gen).__name__}")
    return gen._np, True


def numpy_generator(gen=None) -> np.random.Generator:
    """The numpy generator behind an ember Generator, or the global CPU one for None."""
    return _source(np, gen)[0]


def _on(xp, array):
    return array if xp is np else xp.asarray(array)


def uniform(xp, shape, dtype, gen=None):
    g, is_numpy = _source(xp, gen)
    if is_numpy:
        if np.dtype(dtype) in (np.float32, np.float64):
            return _on(xp, g.random(shape, dtype=dtype))
        return _on(xp, g.random(shape).astype(dtype))
    return g.random_sample(shape).astype(dtype)


def normal(xp, shape, dtype, gen=None):
    g, is_numpy = _source(xp, gen)
    if is_numpy and np.dtype(dtype) in (np.float32, np.float64):
        return _on(xp, g.standard_normal(shape, dtype=dtype))
    return _on(xp, g.standard_normal(shape).astype(dtype))


def integers(xp, low, high, shape, dtype, gen=None):
    g, is_numpy = _source(xp, gen)
    if is_numpy:
        return _on(xp, g.integers(low, high, size=shape, dtype=dtype))
    return g.randint(low, high, size=shape).astype(dtype)


def permutation(xp, n, gen=None):
    g, _ = _source(xp, gen)
    return _on(xp, g.permutation(n))


def fresh_seed() -> int:
    """A seed drawn from the global CPU generator (as torch draws one for a RandomSampler)."""
    return int(generator(np).integers(0, 2**63 - 1, dtype=np.int64))
