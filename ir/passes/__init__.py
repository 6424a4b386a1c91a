"""Graph passes, each a small function over a Graph that edits it in place and returns whether
it changed anything; PIPELINE lists, in order, the ones the compiler runs.

propagate_types is not in the pipeline: the tracer runs it, with the symbols it chose, to
type a graph for every size of a dynamic dimension.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

from ...errors import IRError
from ..graph import Graph
from ..verify import verify as verify_graph
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import evaluate_scalars, fold_constants
from .propagate import propagate_types
from .simplify import simplify_algebra

PIPELINE: list[Callable[..., bool]] = [
    simplify_algebra,
    fold_constants,
    eliminate_common_subexpressions,
    eliminate_dead_code,
]

# the pipeline repeats while a round changes something, this many rounds at most
MAX_ROUNDS = 10


def debug_enabled() -> bool:
    """EMBER_DEBUG set (to anything but 0): verify the graph between passes."""
    return os.environ.get("EMBER_DEBUG", "") not in ("", "0")


def _options_for(run_pass: Callable, options: dict) -> dict:
    # a pass takes the options it names (fold_constants takes evaluate)
    names = inspect.signature(run_pass).parameters
    return {k: v for k, v in options.items() if k in names and v is not None}


def run_pipeline(
    graph: Graph, verify: bool = False, *, evaluate=None, passes: list | None = None
) -> bool:
    """Run the passes (PIPELINE by default) in order, round after round until none changes
    anything. With verify, or EMBER_DEBUG set, the verifier runs before the first pass and
    after each, and names the pass that broke the graph. `evaluate` goes to constant folding
    (see ir.passes.fold). Whether anything changed."""
    passes = PIPELINE if passes is None else passes
    check = verify or debug_enabled()
    if check:
        verify_graph(graph)
    options = {"evaluate": evaluate}
    changed = False
    for _ in range(MAX_ROUNDS):
        round_changed = False
        for run_pass in passes:
            if run_pass(graph, **_options_for(run_pass, options)):
                round_changed = True
                if check:
                    try:
                        verify_graph(graph)
                    except IRError as exc:
                        raise IRError(f"after pass {run_pass.__name__}: {exc}") from None
        changed |= round_changed
        if not round_changed:
            break
    return changed


__all__ = [
    "MAX_ROUNDS",
    "PIPELINE",
    "eliminate_common_subexpressions",
    "eliminate_dead_code",
    "evaluate_scalars",
    "fold_constants",
    "propagate_types",
    "run_pipeline",
    "simplify_algebra",
]
