"""The op functions users call (ember.add, ember.sum, x.permute, ...), over dispatch().

Each function normalizes its arguments (dims, shapes, defaults) into a primitive's attrs, or
composes primitives; composites are differentiable and traceable for free. One module per
kind of op, as in ir/ops. The plain elementwise functions (ember.exp) and every declared
alias (ember.negative, ember.clip) are made from the op declarations (ir/ops).
"""

from __future__ import annotations

from ...ir.schema import declared
from .arrange import *  # noqa: F403
from .distance import *  # noqa: F403
from .einsum import *  # noqa: F403
from .elementwise import *  # noqa: F403
from .index import *  # noqa: F403
from .nn import *  # noqa: F403
from .reduce import *  # noqa: F403
from .sampling import *  # noqa: F403
from .search import *  # noqa: F403
from .shape import *  # noqa: F403
from .sort import *  # noqa: F403

# ember.negative is ember.neg, ember.clip is ember.clamp, ...
for _schema in declared("function"):
    for _alias in _schema.aliases:
        globals()[_alias] = globals()[_schema.name]


def __getattr__(name: str):
    # torch.ops.profiler._record_function_enter / _record_function_exit (autograd/profiler.py)
    if name == "profiler":
        import types

        from ...autograd import profiler

        space = types.SimpleNamespace(_record_function_enter=profiler._record_function_enter,
                                      _record_function_exit=profiler._record_function_exit)
        globals()["profiler"] = space  # one object, so ember.fx may wrap its functions
        return space
    raise AttributeError(f"module 'ember.ops' has no attribute {name!r}")
