"""ember.fx: torch.fx for ember. Trace a module or function into a Graph of Nodes, edit
it, and run it again as a GraphModule.

    import ember as torch
    gm = torch.fx.symbolic_trace(model)     # Graph + generated forward
    print(gm.graph); print(gm.code)

Loading ember.fx makes ember's public functions proxy-aware (see _patching.py), as torch's
functions always are: `ember.add` is the proxy-aware function from then on, so a mapping of
functions built after the import matches the targets a trace records.
"""

from . import _patching

_patching.install()

from . import node, proxy  # noqa: E402
from ._symbolic_trace import PH, Tracer, has_side_effect, symbolic_trace, wrap  # noqa: E402
from .graph import Graph  # noqa: E402
from .graph_module import GraphModule  # noqa: E402
from .interpreter import Interpreter, Transformer  # noqa: E402
from .node import Node, map_arg  # noqa: E402
from .proxy import Proxy  # noqa: E402
from .subgraph_rewriter import replace_pattern  # noqa: E402

__all__ = ["PH", "Graph", "GraphModule", "Interpreter", "Node", "Proxy", "Tracer",
           "Transformer", "has_side_effect", "map_arg", "node", "proxy", "replace_pattern",
           "symbolic_trace", "wrap"]
