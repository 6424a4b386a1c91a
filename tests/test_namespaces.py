"""The torch namespaces real scripts touch besides the ops: torch.backends' switches,
torch.accelerator, and torch.compile over ember.script."""

import subprocess
import sys

import ember
import numpy as np
import pytest
from ember.tracer import ScriptFallback, ScriptFunction, ScriptModule


def test_backend_switches_are_kept_and_queries_answer_for_this_machine():
    ember.backends.cudnn.benchmark = True
    ember.backends.cudnn.deterministic = True
    ember.backends.cuda.matmul.allow_tf32 = True
    try:
        assert ember.backends.cudnn.benchmark and ember.backends.cudnn.deterministic
        assert ember.backends.cuda.matmul.allow_tf32
        assert ember.backends.cudnn.is_available() is False
        assert ember.backends.mps.is_available() is False and not ember.backends.mps.is_built()
        assert ember.backends.mkldnn.is_available() is False
        assert ember.backends.cuda.is_built() == ember.cuda.is_available()
    finally:
        ember.backends.cudnn.benchmark = False
        ember.backends.cudnn.deterministic = False
        ember.backends.cuda.matmul.allow_tf32 = False


def test_backend_modules_import_as_scripts_import_them():
    code = ("import ember.backends.cudnn as cudnn\nimport ember.backends.cuda\n"
            "cudnn.benchmark = True\nimport ember\nassert ember.backends.cudnn.benchmark\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_accelerator_answers_for_cuda():
    assert ember.accelerator.is_available() == ember.cuda.is_available()
    if not ember.cuda.is_available():
        assert ember.accelerator.current_accelerator() is None
        assert ember.accelerator.device_count() == 0
        assert ember.accelerator.current_device_index() == -1
        ember.accelerator.synchronize()  # nothing to wait for
    else:
        assert ember.accelerator.current_accelerator().type == "cuda"


def test_compile_is_script_with_torch_compiles_keywords():
    model = ember.nn.Sequential(ember.nn.Linear(4, 8), ember.nn.ReLU(), ember.nn.Linear(8, 2))
    compiled = ember.compile(model, mode="max-autotune", dynamic=True)
    assert isinstance(compiled, ScriptModule)
    x = ember.randn(5, 4)
    np.testing.assert_allclose(compiled(x).detach().numpy(), model(x).detach().numpy(),
                               rtol=1e-6, atol=1e-7)

    @ember.compile
    def f(x):
        return x.sin() * 2

    assert isinstance(f, ScriptFunction)
    np.testing.assert_array_equal(f(x).numpy(), (x.sin() * 2).numpy())
    assert ember.compile(model, disable=True) is model


def test_compile_fullgraph_raises_on_a_graph_break():
    @ember.compile(fullgraph=True)
    def breaks(x):
        print(x)  # printing a tensor cannot be captured
        return x + 1

    with pytest.raises(ScriptFallback):
        breaks(ember.randn(3))


def test_compile_refuses_what_it_cannot_honour():
    with pytest.raises(ember.EmberError, match="unknown mode"):
        ember.compile(lambda x: x, mode="fastest")
    with pytest.raises(ember.EmberError, match="own compiler"):
        ember.compile(lambda x: x, backend=lambda gm, inputs: gm)
    with pytest.raises(ember.EmberError, match="own compiler"):
        ember.compile(lambda x: x, backend="tvm")
