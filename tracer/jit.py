"""ember.jit: torch.jit's names, for model code and scripts written for TorchScript.

ember.script captures by running the Python (tracer/script.py), so the annotations that steer
TorchScript's compiler (ignore, unused, export, Final, annotate, interface) have nothing to
steer and give back what they are given; is_scripting() is False, as in PyTorch's eager code.

    traced = ember.jit.trace(model, example)    # runs it once, as torch.jit.trace
    traced(x)                                   # ember.script's guarded graphs
    traced.save("model.pt")                     # a graph file (ember.export on the example)
    loaded = ember.jit.load("model.pt")         # runs it in ember.runtime, tensors in and out

trace differs from torch.jit.trace in one way users gain from: where control flow takes
another path, the guards capture it again instead of replaying the traced path. The saved
file is ember's graph file with the example's first dimension symbolic where the program
allows it (so other batch sizes run), else with the example's sizes; TorchScript archives
are not read (ember.load and ember.runtime read ember's formats only).
"""

from __future__ import annotations

import os

from ..errors import EmberError, EmberNotImplementedError, type_error
from . import ScriptFunction, ScriptModule  # noqa: F401  (torch.jit's names too)
from . import script as _script  # the package's ember.script
from .pytree import flatten


def script(obj=None, optimize=None, _frames_up=0, _rcb=None, example_inputs=None):
    """torch.jit.script: ember.script(obj) (a function, method or nn.Module)."""
    if obj is None:
        return _script
    return _script(obj)


def trace(func, example_inputs=None, optimize=None, check_trace=True, check_inputs=None,
          check_tolerance=1e-5, strict=True, _force_outplace=False,
          _module_class=None, _compilation_unit=None, example_kwarg_inputs=None,
          _store_inputs=True):
    """torch.jit.trace: ember.script(func), called once on example_inputs (a tensor or a
    tuple of them), which it keeps for save()."""
    from ..nn.module import Module

    if example_kwarg_inputs is not None:
        raise EmberNotImplementedError(
            "ember.jit.trace: example_kwarg_inputs is not supported; pass the inputs "
            "positionally as example_inputs")
    if example_inputs is None:
        raise type_error("ember.jit.trace: example_inputs is required (a tensor or a tuple "
                         "of the arguments)")
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    traced = (TracedModule(func, args) if isinstance(func, Module)
              else TracedFunction(func, args))
    traced(*args)
    return traced


def _save(target, args, path) -> None:
    """The graph file of target on args: the first dimension symbolic where the program
    allows it, else every size as in the example."""
    from ..nn.module import Module
    from .export import export

    batch = {i: {0: "batch"} for i, a in enumerate(args)
             if getattr(a, "ndim", 0) >= 1 and a.shape[0] > 1}
    training = target.training if isinstance(target, Module) else False
    if batch:
        try:
            export(target, args, path, dynamic_dims=batch, training=training)
            return
        except EmberError:
            pass  # a size the program uses as a number: the example's sizes, below
    export(target, args, path, training=training)


class TracedFunction:
    """A function traced by ember.jit.trace: calls run ember.script's graphs."""

    def __init__(self, fn, example_inputs: tuple):
        self._fn = fn
        self._example_inputs = example_inputs
        self._scripted = _script(fn)
        self.__name__ = getattr(fn, "__name__", "traced")
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, *args, **kwargs):
        return self._scripted(*args, **kwargs)

    def save(self, f) -> None:
        _save(self._fn, self._example_inputs, _path(f, "save"))

    def __repr__(self) -> str:
        return f"TracedFunction({self.__name__})"


class TracedModule(ScriptModule):
    """A module traced by ember.jit.trace: a ScriptModule (it still trains) that can save()
    its graph file."""

    def __init__(self, module, example_inputs: tuple):
        super().__init__(module)
        object.__setattr__(self, "_example_inputs", example_inputs)

    def save(self, f) -> None:
        _save(self._module, self._example_inputs, _path(f, "save"))

    def __repr__(self) -> str:
        return f"TracedModule({self._module!r})"


def _path(f, what: str) -> str:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    raise type_error(f"ember.jit.{what}: expected a file path (str or os.PathLike), got "
                     f"{type(f).__name__}; ember's graph files are written by path")


def save(m, f, _extra_files=None) -> None:
    """torch.jit.save: the graph file of a program traced by ember.jit.trace."""
    if isinstance(m, (TracedFunction, TracedModule)):
        m.save(f)
        return
    raise EmberNotImplementedError(
        f"ember.jit.save: {type(m).__name__} has no example inputs to size its graph file; "
        f"save a program made by ember.jit.trace(model, example_inputs), or call "
        f"ember.export(model, example_inputs, path)")


class LoadedModule:
    """A graph file loaded by ember.jit.load: called with tensors, returns tensors. Its mode
    (eval or training) is the one it was saved in."""

    def __init__(self, program):
        self._program = program

    def __call__(self, *args):
        import numpy as np

        from .._tensor import Tensor
        from .._tensor.factories import from_numpy
        from .pytree import unflatten

        leaves, spec = flatten(args)
        arrays = [np.ascontiguousarray(x.detach().cpu().numpy()) if isinstance(x, Tensor)
                  else x for x in leaves]
        out = self._program(*unflatten(arrays, spec))
        out_leaves, out_spec = flatten(out)
        return unflatten([from_numpy(np.array(o)) if isinstance(o, np.ndarray)
                                    else o for o in out_leaves], out_spec)

    forward = __call__

    def eval(self):
        return self

    def __repr__(self) -> str:
        return f"LoadedModule({self._program.path!r})"


def load(f, map_location=None, _extra_files=None) -> LoadedModule:
    """torch.jit.load: a graph file written by ember.jit.save (or ember.export)."""
    from ..runtime.loaded import load as load_graph_file

    device = "cpu" if map_location is None else str(map_location)
    return LoadedModule(load_graph_file(_path(f, "load"), device=device))


def ignore(drop=False, **kwargs):
    """torch.jit.ignore: ember runs the function as Python in any case."""
    if callable(drop):
        return drop
    return lambda fn: fn


def unused(fn):
    """torch.jit.unused: ember runs the function as Python in any case."""
    return fn


def export(fn):
    """torch.jit.export: ember captures whichever methods run, so none needs marking."""
    return fn


def interface(obj):
    """torch.jit.interface: an ordinary class to ember."""
    return obj


def annotate(the_type, the_value):
    """torch.jit.annotate: the value itself (ember's capture needs no type)."""
    return the_value


def is_scripting() -> bool:
    """False: ember's scripted code runs as the same Python as eager (see the docstring)."""
    return False


def is_tracing() -> bool:
    """Whether ember is capturing a graph now (ember.script, ember.trace, ember.export)."""
    from .tracer import active

    return active() is not None


def script_if_tracing(fn):
    """torch.jit.script_if_tracing: the function itself (ember captures it when traced)."""
    return fn


try:
    from typing import Final  # noqa: F401  (torch.jit.Final is typing.Final)
except ImportError:  # pragma: no cover
    Final = None
