"""torch.nn.utils.rnn: padding a list of sequences into one batch, packing a padded batch into
a PackedSequence for the recurrent layers, and back.

A PackedSequence holds the steps of a batch of variable-length sequences, sorted longest
first, time-major: the data of step t is batch_sizes[t] rows, one per sequence still running.
Packing and unpadding are one index_select each (the index is computed from the lengths, which
are CPU integers), so gradients flow through them like through any other indexing op. RNN, LSTM
and GRU (nn/layers/rnn.py) accept a PackedSequence and return one.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence

import numpy as np

from ..._tensor import Tensor, ops
from ..._tensor.factories import full, tensor
from ...errors import index_error, runtime_error, type_error, value_error
from ...ir.dtypes import float16, float32, float64, int8, int16, int32, int64, uint8

__all__ = [
    "PackedSequence",
    "invert_permutation",
    "pack_padded_sequence",
    "pack_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpack_sequence",
    "unpad_sequence",
]

_PackedSequenceFields = namedtuple(
    "PackedSequence_", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"]
)


class PackedSequence(_PackedSequenceFields):
    """The packed steps of a batch of sequences: data (sum of lengths, *), batch_sizes (an
    int64 CPU tensor, how many sequences run at each step), sorted_indices (the batch order
    packing sorted the sequences into, or None when they came sorted) and unsorted_indices
    (its inverse). A tuple, so packed[0] is the data. Made by pack_padded_sequence and
    pack_sequence, not by hand."""

    __slots__ = ()

    def __new__(cls, data, batch_sizes: Tensor | None = None,
                sorted_indices: Tensor | None = None, unsorted_indices: Tensor | None = None):
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        if batch_sizes is None:  # PackedSequence((data, batch_sizes), sorted_indices)
            if not (isinstance(data, (list, tuple)) and len(data) == 2):
                raise type_error(
                    "PackedSequence: expected data and batch_sizes, or one (data, batch_sizes) "
                    f"pair, but got a {type(data).__name__}"
                )
            data, batch_sizes = data
        if batch_sizes.device.type != "cpu":
            raise value_error(
                f"batch_sizes should always be on CPU, but it is on {batch_sizes.device}. "
                "Instances of PackedSequence should never be created manually; make them with "
                "nn.utils.rnn.pack_sequence or pack_padded_sequence"
            )
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args, **kwargs) -> PackedSequence:
        """data.to(*args, **kwargs), the indices following data to its device; self when data
        is unchanged. batch_sizes stays on the CPU."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self

        def follow(indices):
            return None if indices is None else indices.to(data.device)

        return type(self)(data, self.batch_sizes, follow(self.sorted_indices),
                          follow(self.unsorted_indices))

    def cuda(self, device=None) -> PackedSequence:
        return self.to(device if device is not None else "cuda")

    def cpu(self) -> PackedSequence:
        return self.to("cpu")

    def double(self) -> PackedSequence:
        return self.to(dtype=float64)

    def float(self) -> PackedSequence:
        return self.to(dtype=float32)

    def half(self) -> PackedSequence:
        return self.to(dtype=float16)

    def long(self) -> PackedSequence:
        return self.to(dtype=int64)

    def int(self) -> PackedSequence:
        return self.to(dtype=int32)

    def short(self) -> PackedSequence:
        return self.to(dtype=int16)

    def char(self) -> PackedSequence:
        return self.to(dtype=int8)

    def byte(self) -> PackedSequence:
        return self.to(dtype=uint8)

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The inverse of a 1-D permutation tensor (None stays None)."""
    if permutation is None:
        return None
    order = np.asarray(permutation.tolist(), dtype=np.int64)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return tensor(inverse, dtype=int64, device=permutation.device)


# -- packing -----------------------------------------------------------------------------------


def _lengths_list(lengths) -> list[int]:
    """lengths (a list or a 1-D CPU tensor) as Python ints."""
    if isinstance(lengths, Tensor):
        if lengths.dim() != 1 or lengths.device.type != "cpu":
            raise runtime_error(
                "'lengths' argument should be a 1D CPU int64 tensor, but got "
                f"{lengths.dim()}D {lengths.device.type} {lengths.dtype} tensor"
            )
        return [int(n) for n in lengths.tolist()]
    try:
        return [int(n) for n in lengths]
    except TypeError:
        raise type_error(
            "pack_padded_sequence: lengths must be a list of ints or a 1D CPU tensor, but got "
            f"{type(lengths).__name__}"
        ) from None


def _check_lengths(lengths: list[int], steps: int, batch: int, enforce_sorted: bool) -> None:
    if len(lengths) != batch:
        raise runtime_error(
            f"Expected `len(lengths)` to be equal to batch_size, but got {len(lengths)} "
            f"(batch_size={batch})"
        )
    if min(lengths, default=0) <= 0:
        raise runtime_error(
            "Length of all samples has to be greater than 0, but found an element in 'lengths' "
            f"that is <= 0 (lengths={lengths})"
        )
    if max(lengths) > steps:
        raise runtime_error(
            f"pack_padded_sequence: a length ({max(lengths)}) is longer than the input's "
            f"{steps} time steps (lengths={lengths})"
        )
    if enforce_sorted and any(a < b for a, b in zip(lengths, lengths[1:])):
        raise runtime_error(
            "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True "
            f"(lengths={lengths}). You can pass `enforce_sorted=False` to pack_padded_sequence "
            "and/or pack_sequence to sidestep this requirement if you do not need ONNX "
            "exportability."
        )


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack input (T, B, *), or (B, T, *) with batch_first, holding sequences of the given
    lengths (a list or 1-D CPU tensor): only each sequence's first lengths[b] steps are kept.
    With enforce_sorted the lengths must decrease; otherwise the batch is sorted and the
    permutation kept in sorted_indices."""
    if not isinstance(input, Tensor):
        raise type_error(
            f"pack_padded_sequence: expected input to be a Tensor, but got "
            f"{type(input).__name__}"
        )
    if input.dim() < 2:
        raise index_error(
            "pack_padded_sequence: expected input of at least 2 dimensions (T, B, *) or "
            f"(B, T, *), but got shape {tuple(input.shape)}"
        )
    lengths = _lengths_list(lengths)
    batch_dim, time_dim = (0, 1) if batch_first else (1, 0)
    steps, batch = int(input.shape[time_dim]), int(input.shape[batch_dim])
    _check_lengths(lengths, steps, batch, enforce_sorted)
    sorted_indices = unsorted_indices = None
    if not enforce_sorted:
        order = sorted(range(batch), key=lambda b: -lengths[b])  # stable, as torch.sort
        sorted_indices = tensor(order, dtype=int64, device=input.device)
        unsorted_indices = tensor(np.argsort(order), dtype=int64, device=input.device)
        lengths = [lengths[b] for b in order]
        if order != list(range(batch)):
            input = ops.index_select(input, batch_dim, sorted_indices)
    running = np.arange(steps)[:, None] < np.asarray(lengths)[None, :]  # (T, B)
    t, b = np.nonzero(running)  # row-major: step by step, the running sequences in order
    rows = b * steps + t if batch_first else t * batch + b
    flat = ops.reshape(input, (steps * batch,) + tuple(input.shape[2:]))
    data = ops.index_select(flat, 0, tensor(rows, dtype=int64, device=input.device))
    batch_sizes = tensor(running.sum(1)[: lengths[0]], dtype=int64)
    return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices)


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Tensor, Tensor]:
    """The inverse of pack_padded_sequence: (padded (T, B, *) or (B, T, *) with batch_first,
    lengths int64 tensor), the batch in its original order, T the longest length or
    total_length, the missing steps filled with padding_value."""
    if not isinstance(sequence, PackedSequence):
        raise type_error(
            f"pad_packed_sequence: expected a PackedSequence, but got {type(sequence).__name__}"
        )
    data, batch_sizes, _, unsorted_indices = sequence
    sizes = np.asarray(batch_sizes.tolist(), dtype=np.int64)
    steps = int(sizes.size)
    if total_length is not None:
        if total_length < steps:
            raise value_error(
                "Expected total_length to be at least the length of the longest sequence in "
                f"input, but got total_length={total_length} and max sequence length being "
                f"{steps}"
            )
        steps = int(total_length)
    batch = int(sizes[0])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    running = np.zeros((steps, batch), dtype=bool)
    running[: sizes.size] = np.arange(batch)[None, :] < sizes[:, None]
    # each (step, sequence) reads its packed row, or the padding row appended after the data
    rows = np.full((steps, batch), data.shape[0], dtype=np.int64)
    t, b = np.nonzero(running)
    rows[t, b] = offsets[t] + b
    lengths = running.sum(0)
    if unsorted_indices is not None:
        order = np.asarray(unsorted_indices.tolist(), dtype=np.int64)
        rows, lengths = rows[:, order], lengths[order]
    if batch_first:
        rows = rows.T
    padding = full((1,) + tuple(data.shape[1:]), padding_value, dtype=data.dtype,
                   device=data.device)
    padded = ops.index_select(ops.cat([data, padding], 0), 0,
                              tensor(rows.reshape(-1), dtype=int64, device=data.device))
    padded = ops.reshape(padded, rows.shape + tuple(data.shape[1:]))
    return padded, tensor(lengths, dtype=int64)


def pack_sequence(sequences: Sequence[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of sequences of shapes (L_i, *): pad_sequence, then pack_padded_sequence."""
    lengths = [int(s.size(0)) for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """The inverse of pack_sequence: the list of sequences, in their original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


# -- padding -----------------------------------------------------------------------------------


def pad_sequence(sequences: Sequence[Tensor], batch_first: bool = False,
                 padding_value: float = 0.0, padding_side: str = "right") -> Tensor:
    """Stack sequences of shapes (L_i, *) into (max L, B, *), or (B, max L, *) with
    batch_first, filling the missing steps with padding_value on padding_side."""
    if padding_side not in ("left", "right"):
        raise value_error(
            f"Expected padding_side to be one of left or right, but got {padding_side}."
        )
    if isinstance(sequences, Tensor):
        sequences = list(ops.unbind(sequences, 0))
    if not sequences:
        raise value_error("received an empty list of sequences")
    max_len = max(s.size(0) for s in sequences)
    padded = []
    for s in sequences:
        missing = max_len - s.size(0)
        if missing:
            fill = full((missing,) + tuple(s.shape[1:]), padding_value, dtype=s.dtype,
                        device=s.device)
            s = ops.cat([s, fill] if padding_side == "right" else [fill, s], 0)
        padded.append(s)
    return ops.stack(padded, 0 if batch_first else 1)


def unpad_sequence(padded_sequences: Tensor, lengths: Tensor | Sequence[int],
                   batch_first: bool = False) -> list[Tensor]:
    """The inverse of pad_sequence (right padding): each batch entry cut to its length."""
    if not batch_first:
        padded_sequences = ops.transpose(padded_sequences, 0, 1)
    lengths = lengths.tolist() if isinstance(lengths, Tensor) else list(lengths)
    return [padded_sequences[i, : int(n)] for i, n in enumerate(lengths)]
