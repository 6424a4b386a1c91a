"""The derivative table and its registration decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

# Which inputs a rule keeps for backward: all (True), none (False), or a function of
# needs_input_grad giving one bool per input, so an input is saved (and version-checked)
# only when a gradient that will be computed reads it.
SaveInputs = bool | Callable[[tuple], tuple]


class Rule(NamedTuple):
    fn: Callable
    save_inputs: SaveInputs
    # all outputs (True), none (False), or one bool per output: an output that is not saved
    # may be written in place before the backward (batch_norm_train's, by an in-place ReLU)
    save_outputs: bool | tuple
    # outputs whose missing gradient reaches the rule as None rather than zeros: outputs kept
    # for the backward only (lstm_layer's gates), which a loss rarely reads
    optional_grads: tuple = ()
    # accumulate(node, held, g): add the one input's gradient for the output gradient g into
    # `held`, that input's gradient so far, in place (the engine calls it only where `held`
    # is its own and nothing records), returning whether it did; the rule runs otherwise.
    # A slice adds g into its region, where its rule would make a whole zero tensor to sum.
    accumulate: Callable | None = None


def save_other(needs: tuple) -> tuple:
    """Binary ops like mul and matmul: a's gradient reads b and b's reads a."""
    return (needs[1], needs[0])


def save_all_but_first(needs: tuple) -> tuple:
    """Indexing ops: only the index tensors, never the indexed tensor's value."""
    return (False,) + (True,) * (len(needs) - 1)


def save_second(needs: tuple) -> tuple:
    """gather, index_select, masked_fill, scatter: only the index or mask (input 1)."""
    return tuple(i == 1 for i in range(len(needs)))


def save_first(needs: tuple) -> tuple:
    """where: only the condition."""
    return tuple(i == 0 for i in range(len(needs)))


DERIVATIVES: dict[str, Rule] = {}


def derivative(*names: str, save_inputs: SaveInputs = True, save_outputs: bool | tuple = False,
               optional_grads: tuple = (), accumulate: Callable | None = None) -> Callable:
    """Decorator: register fn as the derivative rule of each op in names.

    save_inputs / save_outputs say what backward needs kept alive (and version-checked);
    optional_grads lists the outputs whose gradient is None, not zeros, when none reached them.
    """

    def wrap(fn: Callable) -> Callable:
        for name in names:
            if name in DERIVATIVES:
                raise ValueError(f"a derivative for {name!r} is already registered")
            DERIVATIVES[name] = Rule(fn, save_inputs, save_outputs, tuple(optional_grads),
                                     accumulate)
        return fn

    return wrap
