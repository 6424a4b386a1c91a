"""ir/digraph.py against networkx, whose DiGraph fusion and scheduling used before: the same
nodes, edges and adjacency in the same orders after the same additions and removals, and the
same lexicographical topological order."""

import random

import networkx as nx
import pytest
from ember.ir.digraph import DiGraph, lexicographical_topological_sort


def _random_dag(seed: int, nodes: int = 40, edges: int = 90):
    rng = random.Random(seed)
    order = list(range(nodes))
    rng.shuffle(order)  # insertion order differs from the topological one
    pairs = []
    for _ in range(edges):
        a, b = sorted(rng.sample(range(nodes), 2))
        pairs.append((order[a], order[b]))
    return order, pairs


@pytest.mark.parametrize("seed", range(20))
def test_same_graph_as_networkx_through_edits(seed):
    order, pairs = _random_dag(seed)
    ours, theirs = DiGraph(), nx.DiGraph()
    rng = random.Random(seed + 100)
    for g in (ours, theirs):
        g.add_nodes_from(order[: len(order) // 2])
        for a, b in pairs:
            g.add_edge(a, b)
    for node in rng.sample(order, 8):  # contraction removes nodes with their edges
        ours.remove_node(node)
        theirs.remove_node(node)
    assert list(ours) == list(theirs.nodes)
    assert ours.edges == list(theirs.edges)
    for node in theirs.nodes:
        assert node in ours
        assert list(ours.successors(node)) == list(theirs.successors(node))
        assert list(ours.predecessors(node)) == list(theirs.predecessors(node))
    for key in (None, lambda n: -n, lambda n: n % 7):
        assert (lexicographical_topological_sort(ours, key)
                == list(nx.lexicographical_topological_sort(theirs, key)))


def test_a_cycle_has_no_order_and_a_self_loop_is_removed_whole():
    g = DiGraph()
    g.add_edge(1, 2)
    g.add_edge(2, 1)
    with pytest.raises(ValueError, match="cycle"):
        lexicographical_topological_sort(g)
    g.add_edge(3, 3)
    g.remove_node(3)
    assert 3 not in g and len(g) == 2
    with pytest.raises(KeyError):
        g.remove_node(3)
