"""ember.onnx: translate the graph ember.export captures into an ONNX model.

The function is captured exactly as ember.export captures it (exporter.capture: constants for
outside tensors, symbolic dynamic dims, the IR pipeline), then each node is translated by the
entry for its op in TRANSLATIONS (onnx_ops.py), a table keyed by op name. Constants become
initializers, Python numbers typed scalar initializers, and a symbolic size in an attr (a reshape to
batch*16) becomes a small int64 computation on the input's Shape, so dynamic axes stay
dynamic. Every op without a translation is named in one error, before anything is written.
"""

from __future__ import annotations

import numpy as np

from ..errors import EmberError
from ..ir.dtypes import as_dtype
from ..ir.symbolic import SymInt
from .export import _signature, capture
from .onnx_ops import NOT_EXPORTABLE, TRANSLATIONS, Unsupported, _onnx, _value_info

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Squeeze, Unsqueeze, ReduceSum and Split take their axes as inputs from 13


class _Size:
    """A size computed in the ONNX graph: the name of a 1-element int64 tensor. SymInt.subs
    evaluates a symbolic size with these standing for its symbols, so + * // % emit nodes."""

    def __init__(self, builder, name: str):
        self.builder = builder
        self.name = name

    def _apply(self, op: str, other, swap: bool = False) -> _Size:
        other = other.name if isinstance(other, _Size) else self.builder.ints([other])
        a, b = (other, self.name) if swap else (self.name, other)
        # sizes are non-negative, so ONNX's truncating Div is floor division here
        return _Size(self.builder, self.builder.node(op, [a, b]))

    def __add__(self, other):
        return self._apply("Add", other)

    def __radd__(self, other):
        return self._apply("Add", other, swap=True)

    def __mul__(self, other):
        return self._apply("Mul", other)

    def __rmul__(self, other):
        return self._apply("Mul", other, swap=True)

    def __floordiv__(self, other):
        return self._apply("Div", other)

    def __rfloordiv__(self, other):
        return self._apply("Div", other, swap=True)

    def __mod__(self, other):
        return self._apply("Mod", other)

    def __rmod__(self, other):
        return self._apply("Mod", other, swap=True)


class _Builder:
    """The ONNX graph under construction: nodes, initializers and fresh names."""

    def __init__(self, graph, opset: int):
        self.onnx = _onnx()
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self.names = {v.name for v in graph.inputs} | {c.name for c in graph.constants}
        self.names |= {v.name for n in graph.nodes for v in n.outputs}
        self.symbols: dict = {}  # symbol -> _Size, from the first input dim it names
        for value in graph.inputs:
            for dim, size in enumerate(value.type.shape):
                if isinstance(size, SymInt) and size.is_symbol and str(size) not in self.symbols:
                    shape = self.node("Shape", [value.name], start=dim, end=dim + 1)
                    self.symbols[str(size)] = _Size(self, shape)

    def fresh(self, hint: str) -> str:
        name, i = hint, 0
        while name in self.names:
            i += 1
            name = f"{hint}_{i}"
        self.names.add(name)
        return name

    def node(self, op: str, inputs: list, outputs: list | None = None, **attrs) -> str:
        """Add a node; the name of its (first) output."""
        outputs = outputs or [self.fresh(f"{op.lower()}_out")]
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    def constant(self, array: np.ndarray, hint: str = "const", name: str | None = None) -> str:
        name = name or self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def scalar(self, number, dtype) -> str:
        return self.constant(np.array(number, dtype=as_dtype(dtype).np), "scalar")

    def ints(self, values) -> str:
        """A 1-D int64 tensor of sizes: a constant, or a Concat where a size is symbolic."""
        values = list(values)
        if all(isinstance(v, (int, np.integer)) for v in values):
            return self.constant(np.array(values, dtype=np.int64), "ints")
        parts = []
        for v in values:
            if isinstance(v, SymInt):
                v = v.subs(self.symbols)
            parts.append(v.name if isinstance(v, _Size) else self.ints([v]))
        return self.node("Concat", parts, axis=0)


def to_model(graph, input_structure, out_spec, *, opset: int = DEFAULT_OPSET, name="ember"):
    """The ONNX ModelProto of an ember graph; an EmberError names every op (with its source
    line) that has no translation."""
    onnx = _onnx()
    missing = sorted({node.op for node in graph.nodes if node.op not in TRANSLATIONS})
    if missing:
        reasons = "; ".join(f"{op} ({NOT_EXPORTABLE.get(op, 'unknown op')})" for op in missing)
        raise EmberError(
            f"ember.onnx: no ONNX translation for the op(s) {reasons} "
            f"(translated: see ember.onnx.TRANSLATIONS)"
        )
    b = _Builder(graph, opset)
    for constant in graph.constants:
        b.constant(constant.constant, name=constant.name)
    unsupported = []
    for node in graph.nodes:
        try:
            TRANSLATIONS[node.op](b, node, node.outputs[0].name)
        except Unsupported as exc:
            unsupported.append(f"{node.op} ({exc}) at {node.source or '?'}")
    if unsupported:
        raise EmberError(f"ember.onnx: cannot translate {'; '.join(unsupported)}")
    used = {name for onnx_node in b.nodes for name in onnx_node.input}
    # a weight only a linear uses is stored transposed; the original would be dead weight
    initializers = [t for t in b.initializers if t.name in used]
    out_names = [o["name"] for o in _signature(graph, input_structure, out_spec)["outputs"]]
    outputs = []
    for value, out_name in zip(graph.outputs, out_names):
        out_name = b.fresh(out_name)
        b.node("Identity", [value.name], [out_name])
        outputs.append(_value_info(out_name, value.type))
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            b.nodes,
            name,
            [_value_info(v.name, v.type) for v in graph.inputs],
            outputs,
            initializer=initializers,
        ),
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="ember",
    )
    onnx.checker.check_model(model)
    return model


def export(fn_or_module, example_inputs, path, *, opset: int | None = None, dynamic_dims=None):
    """Capture fn_or_module on example_inputs as ember.export does (a module in eval mode;
    dynamic_dims such as {"x": {0: "batch"}} become ONNX dynamic axes) and write it to `path`
    as an ONNX model of the given opset (default 17); the ModelProto is returned."""
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise EmberError(f"ember.onnx: opset must be in {MIN_OPSET}..{newest}, got {opset}")
    captured = capture(fn_or_module, example_inputs, dynamic_dims=dynamic_dims)
    name = type(captured.module).__name__ if captured.module is not None else "ember"
    model = to_model(
        captured.graph, captured.input_structure, captured.out_spec, opset=opset, name=name
    )
    onnx.save(model, str(path))
    return model
