"""Optimizer: the base of every optimizer; param groups, per-parameter state, state dicts.

Mirrors torch.optim.Optimizer: `param_groups` is a list of dicts (a "params" list plus the
group's options), `state` maps each parameter to its dict of buffers, and `state_dict()` names
parameters by their index in the order of the groups, so a saved state loads onto any model
built the same way.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .._tensor import Tensor, hooks
from .._tensor.factories import tensor
from ..autograd.grad_mode import enable_grad, no_grad
from ..errors import runtime_error, type_error, value_error
from ..ir.dtypes import float32, float64, get_default_dtype
from ..runtime import updates
from ..runtime.device import CPU
from ..utils.hooks import RemovableHandle


class _RequiredParameter:
    """The default of an option that every param group must set itself."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _is_number(value) -> bool:
    return isinstance(value, (int, float, Tensor)) or (
        isinstance(value, np.generic) and value.dtype.kind in "biuf"
    )


def _with_number_checks(init):
    """Wrap an optimizer's __init__ so that an option whose default is a number (lr, eps,
    momentum, betas, ...) must be given a number: lr="0.1" from a config file is a clear
    TypeError, not a failed comparison inside the range checks."""
    signature = inspect.signature(init)
    numeric = [
        name for name, p in signature.parameters.items()
        if _is_number(p.default) and not isinstance(p.default, bool)
        or (isinstance(p.default, tuple) and p.default and all(map(_is_number, p.default)))
    ]

    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        try:
            given = signature.bind_partial(self, *args, **kwargs).arguments
        except TypeError:
            given = {}  # a wrong call: __init__ itself says what is wrong
        for name in numeric:
            if name not in given:
                continue
            value = given[name]
            pair = isinstance(signature.parameters[name].default, tuple)
            parts = value if pair else (value,)
            if not isinstance(parts, (tuple, list)) or not all(map(_is_number, parts)):
                raise type_error(
                    f"{type(self).__name__}: {name} must be "
                    f"{'a tuple of numbers' if pair else 'a number'}, got "
                    f"{type(value).__name__}: {value!r}"
                )
        return init(self, *args, **kwargs)

    return checked


def _with_step_hooks(step):
    """Wrap an optimizer's step() so that its pre- and post-hooks run around it."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        if self._in_step:  # a subclass's step calling its parent's: hooks ran already
            return step(self, *args, **kwargs)
        self._in_step = True
        try:
            for hook in list(self._step_pre_hooks.values()):
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise runtime_error(
                            f"a step pre-hook must return None or a tuple (new_args, "
                            f"new_kwargs), but {hook!r} returned {result!r}"
                        )
                    args, kwargs = result
            if hooks.op_profiler is None:
                out = step(self, *args, **kwargs)
            else:  # PyTorch's range name for a profiled optimizer step
                name = type(self).__name__
                with hooks.op_profiler.range(f"Optimizer.step#{name}.step"):
                    out = step(self, *args, **kwargs)
            self._opt_called = True
            for hook in list(self._step_post_hooks.values()):
                hook(self, args, kwargs)
            return out
        finally:
            self._in_step = False

    wrapper.with_step_hooks = True
    return wrapper


def new_step_counter() -> Tensor:
    """A 0-d 'step' counter, kept on the CPU in float32 (float64 under a float64 default), as
    PyTorch keeps it."""
    return tensor(0.0, dtype=float64 if get_default_dtype() is float64 else float32)


def addcmul_(out: Tensor, a: Tensor, b: Tensor, value: float = 1.0) -> Tensor:
    """out += value * a * b, in place, rounded in PyTorch's order: (value * a) * b."""
    return out.add_((a * value) * b if value != 1 else a * b)


def addcdiv_(out: Tensor, a: Tensor, b: Tensor, value: float = 1.0) -> Tensor:
    """out += value * a / b, in place, rounded in PyTorch's order: (value * a) / b."""
    return out.add_((a * value) / b if value != 1 else a / b)


def on_arrays(p, grad, *state) -> bool:
    """Whether an eager update runs as one native pass over the arrays (runtime/updates.py,
    the optimizers' fast path), else as tensor ops: not traced (a trace must see tensor ops),
    every tensor on the CPU with one dtype and shape, the parameter writable in place, and the
    arrays ones the native updates take (float32/float64, contiguous, distinct)."""
    if hooks.active_trace is not None and hooks.trace_here() is not None:
        return False
    arrays = [p._data, grad._data] + [s._data for s in state]
    first = arrays[0]
    return (all(t._device is CPU for t in (p, grad, *state))
            and all(a.__class__ is np.ndarray and a.dtype == first.dtype
                    and a.shape == first.shape for a in arrays)
            and first.flags.writeable and updates.usable(*arrays))


class Optimizer:
    """Base class of all optimizers.

    params: an iterable of tensors, of (name, tensor) pairs, or of dicts that each define a
    param group (a "params" entry plus options that override `defaults` for that group).
    """

    _in_step = False
    _opt_called = False

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        if isinstance(params, Tensor):
            raise type_error(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got a Tensor of shape {tuple(params.shape)}"
            )
        self.state: defaultdict[Any, dict] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        param_groups = list(params)
        if not param_groups:
            raise value_error("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        # ember's own optimizers only: a user's subclass may give a number option other values
        if init is not None and cls.__module__.startswith(__package__ + "."):
            cls.__init__ = _with_number_checks(init)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "with_step_hooks", False):
            cls.step = _with_step_hooks(step)

    def __getstate__(self) -> dict:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_step_pre_hooks", OrderedDict())
        self.__dict__.setdefault("_step_post_hooks", OrderedDict())

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"

    # -- param groups ------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (the rest from `defaults`)."""
        if not isinstance(param_group, dict):
            raise type_error(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise value_error("a param group must have a 'params' entry")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise type_error(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise value_error(
                    "all optimizer params should be with/without names. Some param names are "
                    "missing"
                )
            param_group["param_names"] = names
        param_group["params"] = params

        for p in params:
            if not isinstance(p, Tensor):
                raise type_error(
                    f"optimizer can only optimize Tensors, but one of the params is "
                    f"{type(p).__module__}.{type(p).__name__}"
                )
            if not (p.is_leaf or p.retains_grad):
                raise value_error(
                    f"can't optimize a non-leaf Tensor (shape {tuple(p.shape)}, grad_fn "
                    f"{type(p.grad_fn).__name__}); optimize the leaf it was computed from"
                )
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise value_error(
                    f"parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            param_group.setdefault(name, default)

        ids = [id(p) for p in params]
        if len(ids) != len(set(ids)):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; each will be "
                "updated more than once per step",
                stacklevel=3,
            )
        taken = set()
        for group in self.param_groups:
            taken.update(id(p) for p in group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise value_error(
                    "all optimizer param groups should be with/without names. cannot add param "
                    f"group {which} to the optimizer"
                )
        shared = [i for i, p in enumerate(params) if id(p) in taken]
        if shared:
            raise value_error(
                "some parameters appear in more than one parameter group (the new group's "
                f"parameters at positions {shared} are already in another group)"
            )
        self.param_groups.append(param_group)

    # -- gradients and steps -----------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's .grad: to None (the default), or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    # written without reading it first: a scripted step then neither takes
                    # the .grad it finds as an input nor guards on its being None
                    p.grad = None
                    continue
                grad = p.grad
                if grad is None:
                    continue
                if grad.grad_fn is not None:
                    grad.detach_()
                else:
                    grad.requires_grad_(False)
                grad.zero_()

    @_with_step_hooks
    def step(self, closure: Callable[[], Any] | None = None):
        """Update the parameters once; closure, if given, recomputes and returns the loss.

        Each optimizer supplies _update_group(group), run for every param group under no_grad.
        """
        loss = self._run_closure(closure)
        with no_grad():
            for group in self.param_groups:
                self._update_group(group)
        return loss

    def _update_group(self, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    @staticmethod
    def _gradients(group: dict):
        """(param, gradient) for each param of the group that has one; negated to maximize."""
        for p in group["params"]:
            grad = p.grad
            if grad is not None:
                yield p, (-grad if group["maximize"] else grad)

    @staticmethod
    def _run_closure(closure: Callable[[], Any] | None):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs), before step()."""
        handle = RemovableHandle(self._step_pre_hooks)
        self._step_pre_hooks[handle.id] = hook
        return handle

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """hook(optimizer, args, kwargs) -> None, after step()."""
        handle = RemovableHandle(self._step_post_hooks)
        self._step_post_hooks[handle.id] = hook
        return handle

    # -- state dicts -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}.

        Parameters are named by their index in the order of the groups; the state's tensors
        are the optimizer's own (not copies), as in PyTorch.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict() onto this optimizer's parameters, matched by position.

        Tensors are copied (to each parameter's device, and to its dtype if it is a floating
        parameter; 'step' counters keep theirs), so the loaded state never aliases the dict.
        """
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise value_error(
                f"expected an optimizer state dict with keys 'state' and 'param_groups', got {keys}"
            )
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise value_error(
                f"loaded state dict has a different number of parameter groups: it has "
                f"{len(saved_groups)}, the optimizer has {len(groups)}"
            )
        for i, (group, saved) in enumerate(zip(groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise value_error(
                    f"loaded state dict contains a parameter group that doesn't match the size "
                    f"of optimizer's group: group {i} has {len(saved['params'])} parameters in "
                    f"the state dict and {len(group['params'])} in the optimizer"
                )
        id_map = dict(
            zip(
                itertools.chain.from_iterable(g["params"] for g in saved_groups),
                itertools.chain.from_iterable(g["params"] for g in groups),
            )
        )
        state: defaultdict[Any, dict] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = _copy_state(param, value)
            else:
                state[key] = copy.deepcopy(value)
        for group, saved in zip(groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
        self.__setstate__({"state": state, "param_groups": saved_groups})


def _copy_state(param: Tensor, value: Any, key: Any = None) -> Any:
    """A deep copy of one parameter's state, its tensors moved to the parameter."""
    if isinstance(value, Tensor):
        out = value.detach().clone()
        if key == "step":
            return out
        if param.is_floating_point():
            return out.to(device=param.device, dtype=param.dtype)
        return out.to(device=param.device)
    if isinstance(value, dict):
        return {k: _copy_state(param, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_state(param, v) for v in value)
    return copy.deepcopy(value)
