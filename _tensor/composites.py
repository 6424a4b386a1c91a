"""Large eager calls of a few composite ops run as one compiled program.

softmax, log_softmax, layer_norm, training batch_norm (without an affine weight or running
statistics; with them it is one op, ir/ops/norm.py) and cross_entropy are written from
primitives (so a trace records the primitives and fusion makes one kernel of them). Run op by
op in eager mode they cost five to nine dispatches and as many autograd nodes, and numpy
passes over the data that many times. On large CPU inputs an eager call instead goes through
an ember.script of the same primitive code: one native kernel forward (fused by the compiler),
one autograd node whose backward is the compiled backward graph; PyTorch likewise runs its own
fused kernels in eager mode.

The first WARMUP_CALLS eligible calls run op by op. Small inputs (where compiling would not
pay), traced code (a trace must see the primitives), other devices and dtypes, EMBER_COMPILE=0,
and a process where no compiler registered itself (hooks.set_composite_compiler: the tracer
does, when ember's public names load it) keep the op-by-op path. The script is quiet: a call
it cannot capture runs eagerly without a warning (it is ember's choice, not the user's), and
its sizes become dynamic after one change, as any script's do.
"""

from __future__ import annotations

import threading

from ..ir.dtypes import float32, float64
from ..runtime.device import CPU
from . import hooks

MIN_ELEMENTS = 64  # below this a compile would hardly pay (at 128 elements softmax forward and
# backward took 111 us compiled against 184 us op by op, layer_norm 195 against 320)
WARMUP_CALLS = 2  # eligible calls that run op by op first: a one-off call compiles nothing
_FLOATS = (float32, float64)


_native_enabled = None  # runtime.compiled.native_enabled, imported on the first call


def eligible(x, min_elements: int = MIN_ELEMENTS) -> bool:
    """Whether an eager call on x takes the compiled path."""
    global _native_enabled
    if (x._data.size < min_elements or hooks.active_trace is not None
            or x._device is not CPU or x._dtype not in _FLOATS
            or hooks.composite_compiler() is None):
        return False
    if _native_enabled is None:
        from ..runtime.compiled import native_enabled as _native_enabled
    return _native_enabled()


class Composite:
    """fn (primitive code) as a quiet script, made on the first call."""

    def __init__(self, name: str, fn, min_elements: int | None = None):
        self.name = name
        self.fn = fn
        # None: MIN_ELEMENTS (read at each call). A composite of many small ops (a loss) pays
        # its one compiled call back at any size.
        self.min_elements = min_elements
        self._script = None
        self._seen = 0
        # set while this thread runs the script: a call the script runs eagerly (a fallback)
        # comes back through the op's code, which must then go op by op, not recurse
        self._running = threading.local()

    def wants(self, x) -> bool:
        """Whether an eager call on x goes compiled: x is eligible, and WARMUP_CALLS eligible
        calls came before (a repeated call, as a training loop makes, pays the compile; an
        interactive one-off does not)."""
        minimum = MIN_ELEMENTS if self.min_elements is None else self.min_elements
        if not eligible(x, minimum) or getattr(self._running, "on", False):
            return False
        if self._script is not None and self._script.gave_up:
            return False  # it runs eagerly from now on: op by op, without its detour
        if self._seen >= WARMUP_CALLS:
            return True
        self._seen += 1
        return False

    def __call__(self, *args):
        script = self._script
        if script is None:
            script = self._script = hooks.composite_compiler()(self.fn, self.name)
        known = getattr(script, "known", None)
        if known is not None:
            done = known(args)  # a specialization made before: no way back into the op
            if done is not None:
                return done
        self._running.on = True
        try:
            return script(*args)
        finally:
            self._running.on = False
