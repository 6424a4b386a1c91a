"""torch.nn.utils.rnn: padding a list of sequences into one batch and back.

Packed sequences are not supported: ember's recurrent layers take padded batches, so the
pack functions raise a clear error instead of returning something the layers cannot read.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._tensor import Tensor, ops
from ..._tensor.factories import full
from ...errors import EmberNotImplementedError, value_error

__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pack_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpad_sequence",
]


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


def _unsupported(name: str):
    def fn(*args, **kwargs):
        raise EmberNotImplementedError(
            f"nn.utils.rnn.{name}: ember does not support packed sequences; pass the padded "
            "batch (nn.utils.rnn.pad_sequence) to the RNN, LSTM or GRU directly, and read each "
            "sequence's last output at its own length"
        )

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = "Not supported: raises EmberNotImplementedError (no packed sequences)."
    return fn


pack_padded_sequence = _unsupported("pack_padded_sequence")
pad_packed_sequence = _unsupported("pad_packed_sequence")
pack_sequence = _unsupported("pack_sequence")


class PackedSequence:
    """Not supported: constructing one raises EmberNotImplementedError."""

    def __init__(self, *args, **kwargs) -> None:
        _unsupported("PackedSequence")()
