"""Sampling from a distribution given as a tensor: ember.multinomial."""

from __future__ import annotations

from ...runtime.device import array_module
from ...runtime.kernels.random_ops import sample
from .. import hooks
from ..tensor import Tensor


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator=None) -> Tensor:
    """num_samples category indices per row of input (1-D or 2-D, weights that need not sum
    to 1), with or without replacement. Without replacement, a row's samples are distinct, in
    the order drawn (Gumbel-top-k: the k smallest of E / w for exponential E, the same
    distribution as drawing one by one). The numbers come from ember's generator, not torch's.
    From the global stream it is the op `multinomial` (captured as a graph op, drawn on every
    call); a generator of its own draws here."""
    if generator is None:
        from ..dispatch import dispatch

        return dispatch("multinomial", (input,), {"num_samples": int(num_samples),
                                                  "replacement": bool(replacement)})
    hooks.stop_trace("the random sampler ember.multinomial with a generator of its own (its "
                     "numbers would be frozen)")
    return Tensor._make(sample(array_module(input.device), input._data, num_samples,
                               replacement, generator), None, input.device)
