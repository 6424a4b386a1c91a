"""Shared by the IR tests: run a pass on IR text and get IR text back, as FileCheck tests do."""

import textwrap

import pytest
from ember.ir.parser import parse_graph
from ember.ir.verify import verify


def ir(text: str) -> str:
    """IR text written indented in a test, as the printer writes it."""
    return textwrap.dedent(text).strip("\n") + "\n"


@pytest.fixture
def run_pass():
    """run_pass(pass_fn, text, **options) -> (changed, text after): the pass runs on the parsed
    graph, which must verify before and after."""

    def run(pass_fn, text: str, **options):
        graph = parse_graph(ir(text))
        verify(graph)
        changed = pass_fn(graph, **options)
        verify(graph)
        return changed, str(graph)

    return run


@pytest.fixture
def dedent():
    return ir
