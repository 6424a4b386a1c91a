"""The eager kernel of every primitive, keyed by op name.

A kernel is `kernel(xp, *inputs, **attrs)`: xp is the array module (numpy or cupy), inputs
are arrays (already cast to the op's compute dtype by dispatch) or scalars, attrs are the
op's attributes. Kernels are written once against the numpy API so numpy and cupy share them.
"""

from .registry import KERNELS, kernel  # noqa: F401
from . import elementwise, index, nn, reduce, shape  # noqa: F401,E402
