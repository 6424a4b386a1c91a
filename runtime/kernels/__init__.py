"""The eager kernel of every primitive, keyed by op name.

A kernel is `kernel(xp, *inputs, **attrs)`: xp is the array module (numpy or cupy), inputs
are arrays (already cast to the op's compute dtype by dispatch) or scalars, attrs are the
op's attributes. Kernels are written once against the numpy API so numpy and cupy share them.
"""

import warnings

from . import (  # noqa: F401,E402
    attention,
    collectives,
    conv,
    elementwise,
    index,
    nn,
    norm,
    pool,
    reduce,
    rnn,
    shape,
)
from .registry import KERNELS, kernel  # noqa: F401

# inf - inf, 0 * inf, x / 0 give nan and inf silently, as in PyTorch: numpy's floating-point
# warnings are ignored where a kernel raises them (and only there, so a user's own numpy
# code keeps its warnings). Cheaper than an errstate context around every op.
# dispatch casts Python scalars to the compute dtype (1e5 as float16 is inf): the same there.
warnings.filterwarnings("ignore", category=RuntimeWarning,
                        module=r"ember\.(runtime\.kernels(\.|$)|_tensor\.dispatch$)")
