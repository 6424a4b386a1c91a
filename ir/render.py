"""Draw a graph: Graphviz DOT text, with each fusion group (when a compiled program has marked
them) in its own cluster; rendered to SVG or PNG by Graphviz's `dot` when it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import runtime_error


def to_dot(graph) -> str:
    """The graph as DOT text: one box per node, edges along values, clusters for the fusion
    groups recorded in `graph.fusion_groups` (lists of nodes), if any."""
    ids = {}
    lines = ["digraph ember {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    for i, v in enumerate([*graph.inputs, *graph.constants]):
        ids[v] = f"v{i}"
        kind = "input" if v.is_input else "constant"
        lines.append(f'  v{i} [label="%{v.name}\\n{kind} {list(v.shape)}", shape=ellipse];')
    grouped = {}
    for k, group in enumerate(getattr(graph, "fusion_groups", None) or []):
        for node in group:
            grouped[node] = k
    clusters: dict[int, list[str]] = {}
    for j, node in enumerate(graph.nodes):
        name = f"n{j}"
        for v in node.outputs:
            ids[v] = name
        label = f"{node.op}\\n{' '.join(f'%{v.name}' for v in node.outputs)}"
        entry = f'  {name} [label="{label}"];'
        if node in grouped:
            clusters.setdefault(grouped[node], []).append(entry)
        else:
            lines.append(entry)
    for k, entries in clusters.items():
        lines.append(f"  subgraph cluster_{k} {{")
        lines.append(f'    label="kernel {k}"; style=rounded; color=blue;')
        lines += ["  " + e for e in entries]
        lines.append("  }")
    for j, node in enumerate(graph.nodes):
        for x in node.inputs:
            if hasattr(x, "name") and x in ids:
                lines.append(f"  {ids[x]} -> n{j};")
    for v in graph.outputs:
        lines.append(f'  out_{ids[v]} [label="output", shape=ellipse];')
        lines.append(f"  {ids[v]} -> out_{ids[v]};")
    lines.append("}")
    return "\n".join(lines)


def render(graph, path: str) -> str:
    """Write the graph to path: .dot as text, .svg/.png/.pdf through Graphviz's dot."""
    text = to_dot(graph)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in ("dot", "gv", ""):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    dot = shutil.which("dot")
    if dot is None:
        raise runtime_error(
            f"render({path!r}): drawing .{ext} needs Graphviz's `dot`, which is not installed; "
            "render to a .dot file instead, or install graphviz"
        )
    subprocess.run([dot, f"-T{ext}", "-o", path], input=text.encode(), check=True)
    return path
