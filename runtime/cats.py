"""A cat written by the kernels that compute its parts, so the parts are never copied.

A transformer's backward joins the gradients of q, k and v into one (B, T, 3C) array: three
fused kernels write each (B, T, H, D) gradient, a reshape views each as (B, T, C), and an eager
cat copies them side by side. When every part of a cat is a kernel's output that nothing else
reads (through reshapes numpy makes without a copy), each kernel can store its elements where
the cat would put them: its store goes through the strides of its slice of the cat's array,
the kernel writes the cat's value, and the cat and the reshapes drop out of the program.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# views that keep the elements' row-major order: a part reached through them is the same
# elements in the same order as the kernel wrote them
ORDER_KEEPING_VIEWS = frozenset({"reshape", "view", "squeeze", "unsqueeze"})


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.insert(0, step)
        step *= size
    return tuple(strides)


def _row_major_store(spec, store) -> bool:
    """Whether the store writes element i of the loop's row-major order at offset i."""
    expected = _contiguous_strides(spec.shape)
    return store.access.offset == 0 and all(
        size == 1 or got == want
        for size, got, want in zip(spec.shape, store.access.strides, expected))


def _slice_layout(cat_shape, dim: int, start: int, part_shape, loop_shape):
    """(strides, offset) in elements of the part [start, start + part_shape[dim]) along dim of
    a row-major cat_shape array, seen in loop_shape row-major order, or None where that is not
    a strided view (numpy would copy)."""
    whole = np.empty(cat_shape, np.uint8)
    index = [slice(None)] * len(cat_shape)
    index[dim] = slice(start, start + part_shape[dim])
    part = whole[tuple(index)]
    seen = part.reshape(loop_shape)
    if not np.shares_memory(seen, whole):
        return None
    offset = seen.__array_interface__["data"][0] - whole.__array_interface__["data"][0]
    return tuple(seen.strides), offset


def _flat(spec) -> bool:
    """Whether the kernel runs over its elements as one flat run: one loop dim, every
    access at the element itself or at one fixed element, no reduction."""
    return (len(spec.shape) == 1 and spec.shape[0] > 0
            and not any(e.op == "reduce" for e in spec.exprs)
            and all(a.strides == (1,) and a.offset == 0 or a.strides == (0,)
                    for a in spec.accesses()))


def _looped_as(spec, loop: tuple):
    """The spec over `loop` (the same elements in row-major order; a _flat spec where it is
    another shape): rows over all but the last dim, which is the inner loop."""
    if tuple(spec.shape) == loop:
        return spec
    contiguous = _contiguous_strides(loop)

    def moved(access):
        strides = contiguous if access.strides == (1,) else (0,) * len(loop)
        return dataclasses.replace(access, strides=strides)

    exprs = tuple(dataclasses.replace(e, attr=moved(e.attr)) if e.op == "load" else e
                  for e in spec.exprs)
    stores = tuple(dataclasses.replace(s, access=moved(s.access)) for s in spec.stores)
    return dataclasses.replace(spec, shape=loop, outer=len(loop) - 1, exprs=exprs,
                               stores=stores)


def write_cats_in_place(steps: list, graph_outputs: set) -> tuple[list, set]:
    """The steps with each eligible cat written by its parts' kernels (see the module
    docstring), and the slots of those cats; `graph_outputs`: the slots the caller receives.
    A cat whose array leaves the program, or whose parts are read elsewhere, is left as it
    is."""
    producer, readers = {}, {}
    for position, (kind, step, node) in enumerate(steps):
        if kind == "native":
            for j, out in enumerate(step.outputs):
                producer[out.slot] = (position, j)
            reads = step.inputs
        else:
            for out in step.outs:
                producer[out.slot] = (position, None)
            reads = [a.slot for a in step.args if a.slot is not None]
        for slot in reads:
            readers[slot] = readers.get(slot, 0) + 1
    escaping = _escaping(steps, graph_outputs)
    dropped: set[int] = set()
    cats = set()
    for kind, step, node in steps:
        if kind != "eager" or node.op != "cat":
            continue
        plan = _plan_cat(steps, step, node, producer, readers, escaping)
        if plan is None:
            continue
        out = step.outs[0].slot
        cat_shape = tuple(node.outputs[0].type.shape)
        for kernel_position, j, store_index, layout, views in plan:
            kernel = steps[kernel_position][1]
            spec = _looped_as(kernel.spec, layout[2])
            stores = list(spec.stores)
            access = dataclasses.replace(stores[store_index].access, strides=layout[0],
                                         offset=layout[1])
            stores[store_index] = dataclasses.replace(stores[store_index], access=access)
            kernel.respec(dataclasses.replace(spec, stores=tuple(stores)))
            output = kernel.outputs[j]
            output.slot, output.shape = out, cat_shape
            dropped.update(views)
        dropped.add(id(step))
        cats.add(out)
    return [s for s in steps if id(s[1]) not in dropped], cats


def _escaping(steps: list, graph_outputs: set) -> set:
    """The slots whose arrays leave the program: its outputs and what they view."""
    alias_of = {}
    for kind, step, node in steps:
        if kind == "eager" and node.schema.view and step.args and step.args[0].slot is not None:
            for out in step.outs:
                alias_of[out.slot] = step.args[0].slot
    escaping = set()
    for slot in graph_outputs:
        while slot is not None and slot not in escaping:
            escaping.add(slot)
            slot = alias_of.get(slot)
    return escaping


def _plan_cat(steps, step, node, producer, readers, escaping):
    """[(kernel position, output index, store index, (strides, offset, loop shape), dropped
    view step ids)] per part of the cat, or None where one part cannot be written in place."""
    out_type = node.outputs[0].type
    cat_shape = tuple(out_type.shape)
    if (step.outs[0].slot in escaping or not all(isinstance(d, int) for d in cat_shape)
            or len(step.outs) != 1 or step.outs[0].dtype != np.dtype(out_type.dtype.np)):
        return None
    dim = node.attrs["dim"] % len(cat_shape)
    plan, start = [], 0
    for arg, value in zip(step.args, node.inputs):
        if arg.slot is None or arg.extra is not None or value.type.dtype != out_type.dtype:
            return None
        part_shape = tuple(value.type.shape)
        slot, views = arg.slot, []
        while True:
            if readers.get(slot) != 1 or slot in escaping or slot not in producer:
                return None
            position, j = producer[slot]
            kind, source, source_node = steps[position]
            if kind == "native":
                break
            if source_node.op not in ORDER_KEEPING_VIEWS or not source.args:
                return None
            views.append(id(source))
            slot = source.args[0].slot
        kernel = steps[position][1]
        spec = kernel.spec
        output = kernel.outputs[j]
        if output.buffer is not None or np.dtype(output.dtype) != np.dtype(out_type.dtype.np):
            return None
        stored = [k for k, s in enumerate(spec.stores) if s.access.arg == spec.n_inputs + j]
        if (len(stored) != 1 or not _row_major_store(spec, spec.stores[stored[0]])
                or math.prod(spec.shape) != math.prod(part_shape)):
            return None
        loop = tuple(spec.shape)
        layout = _slice_layout(cat_shape, dim, start, part_shape, loop)
        if layout is None and _flat(spec) and len(part_shape) > 1:
            # an elementwise kernel over its elements as one run: looped over the part's
            # own shape instead, its store can follow the slice
            loop = part_shape
            layout = _slice_layout(cat_shape, dim, start, part_shape, loop)
        if layout is None:
            return None
        plan.append((position, j, stored[0], (*layout, loop), views))
        start += part_shape[dim]
    return plan
