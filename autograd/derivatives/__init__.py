"""The derivative rule of every differentiable primitive, keyed by op name.

A rule is `rule(node, *grad_outputs) -> tuple of input gradients` written in Tensor ops, so
it runs eagerly and under tracing alike, and double backward is the same code. node.inputs and
node.outputs hold what the rule saved, node.attrs the op's attributes, node.input_meta each
input's (shape, dtype, device). The engine sums broadcast gradients back to input shapes.
"""

from . import elementwise, index, nn, norm, reduce, shape  # noqa: F401
from .registry import DERIVATIVES, Rule, derivative  # noqa: F401
