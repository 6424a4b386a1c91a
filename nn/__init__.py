"""ember.nn: modules, layers, functional, init and utils, as torch.nn spells them."""

from . import (  # noqa: F401
    functional,
    init,
    modules,  # noqa: F401  (torch.nn.modules.<file> paths)
    parallel,
    utils,
)
from .containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential  # noqa: F401
from .layers import *
from .module import Module  # noqa: F401
from .parameter import Buffer, Parameter  # noqa: F401
