"""An output written over an input (KernelSpec.written_over, planned by runtime/compiled.py):
the LLVM kernel reads that input through the output's pointer, so every pointer is noalias
and the vectorizer needs no run-time alias check (which, the two pointers being equal, sent
it to its scalar loop); the values stay right for the in-place update and for its inputs."""

import gc
import re

import ember
import numpy as np
from ember.codegen.llvm.emit import emit_module
from ember.runtime import native


def _kernel_body(ir_text: str, name: str) -> tuple[str, str]:
    """(the define line, the body) of kernel `name` in a module's text."""
    lines = ir_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'define void @"{name}"'))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return lines[start], "\n".join(lines[start + 1:end])


def _scripted_adamw_kernels():
    p = ember.nn.Parameter(ember.randn(64, 32))
    p.grad = ember.randn(64, 32)
    opt = ember.optim.AdamW([p], lr=1e-2, weight_decay=0.1)
    eager_p = ember.nn.Parameter(p.detach().clone())
    eager_p.grad = p.grad.clone()
    eager_opt = ember.optim.AdamW([eager_p], lr=1e-2, weight_decay=0.1)
    step = ember.script(opt.step)
    for _ in range(3):
        step()
        eager_opt.step()
    np.testing.assert_allclose(p.detach().numpy(), eager_p.detach().numpy(), rtol=1e-6,
                               atol=1e-7)
    program = step.specializations[-1].program
    kernels = [s.run for s in getattr(program, "steps", ()) if isinstance(s.run,
                                                                          native.NativeKernel)]
    kernels += [o for o in gc.get_objects() if isinstance(o, native.NativeRun)
                for o in o.kernels]
    return [k for k in kernels if k.spec.written_over]


def test_an_input_written_over_is_read_through_its_outputs_pointer():
    kernels = _scripted_adamw_kernels()
    assert kernels, "the update wrote no parameter in place"
    for kernel in kernels:
        spec = kernel.spec
        over = dict(spec.written_over)
        assert set(over) | set(over.values()) <= set(spec.aliased)
        define, body = _kernel_body(emit_module([spec], name="t"), spec.name)
        params = re.findall(r'ptr( noalias)? (%"[^"]+")', define)
        assert len(params) == len(spec.args)
        assert all(noalias for noalias, _ in params), define
        for i in over:
            name = params[i][1]
            assert name not in body, f"input {i} read through its own pointer"
        for j in over.values():
            assert params[j][1] in body


def test_a_read_only_input_is_copied_before_an_output_is_written_over_it():
    """A donated input whose array cannot be written gets a fresh output, which must start
    as the input: the kernel reads the input through it. Eager raises on the read-only
    tensor; the other state written in the same kernel is still computed from right values."""

    def f(a, b):
        with ember.no_grad():
            a.add_(1.0)
            b.add_(a)

    scripted = ember.script(f)
    a, b = ember.zeros(4096), ember.zeros(4096)
    scripted(a, b)
    scripted(a, b)
    np.testing.assert_array_equal(b.numpy(), np.full(4096, 3.0, np.float32))
    frozen = np.zeros(4096, np.float32)
    frozen.flags.writeable = False
    a2, b2 = ember.from_numpy(frozen), ember.zeros(4096)
    for _ in range(20):  # fresh arrays from a heap full of other values
        np.full(4096, 1e30, np.float32)
    try:
        scripted(a2, b2)
    except ValueError:
        pass  # the read-only tensor cannot take the write back, as in eager
    assert np.abs(b2.numpy()).max() <= 1.0
    np.testing.assert_array_equal(frozen, np.zeros(4096, np.float32))
