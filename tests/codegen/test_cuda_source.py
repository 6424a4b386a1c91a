"""The CUDA backend: kernel specs emitted as CUDA C that nvcc accepts, on any machine; on a GPU
(tests marked cuda) the same scripted code runs the generated kernels and matches the CPU."""

import dataclasses
import os
import shutil
import subprocess

import ember
import ember.nn.functional as F
import numpy as np
import pytest
from ember.codegen.cuda.emit import emit_source, launch_shape
from ember.runtime.compiled import CompiledProgram

NVCC = shutil.which("nvcc")


def _program(fn, *arrays, backend="cuda"):
    graph = ember.trace(fn, tuple(ember.tensor(a) for a in arrays))
    return CompiledProgram(graph, "t", backend=backend)


X = np.random.default_rng(0).standard_normal((64, 33)).astype(np.float32)


def test_a_row_reduction_is_one_block_per_row_with_warp_shuffles():
    source = _program(lambda a: F.softmax(a, -1), X).code
    assert 'extern "C" __global__ void t_k0(' in source
    assert source.count("ember_block_reduce<float>(") == 2  # max, then the sum of exp
    assert "__shfl_down_sync" in source and "expf(" in source


def test_an_elementwise_kernel_is_a_grid_stride_loop_over_strided_loads():
    source = _program(lambda a: (a.t() * 2 + 1).sigmoid(), X).code
    assert "t += stride" in source and "stride = (long long)gridDim.x * blockDim.x" in source
    assert "i1 * 33LL" in source  # the transpose folded into the load's strides


def test_float16_is_stored_as_half_and_rounded_after_every_op():
    source = _program(lambda a: (a * 3.3 + 1).relu(), X.astype(np.float16)).code
    assert "const __half* __restrict__ a0" in source and "__float2half(" in source
    assert "ember_r16(" in source and "3.30078125f" in source  # float16(3.3), as eager


def test_launch_shapes_cover_every_row():
    program = _program(lambda a: F.layer_norm(a, (33,)), X)
    spec = program.specs[0]
    assert launch_shape(spec, spec.rows) == (64, 256)
    program = _program(lambda a: a * 2, X)
    spec = program.specs[0]
    blocks, threads = launch_shape(spec, spec.rows)
    assert blocks * threads >= 64 * 33


def test_source_for_cuda_is_available_without_a_gpu():
    scripted = ember.script(lambda a: F.log_softmax(a, -1) * 2)
    text = scripted.source(ember.tensor(X), backend="cuda")
    assert "kernel" in text and '__global__ void' in text
    with pytest.raises(ember.EmberError, match="unknown backend"):
        scripted.source(ember.tensor(X), backend="metal")


CORPUS = [
    lambda a: F.softmax(a, -1),
    lambda a: F.log_softmax(a, -1).exp(),
    lambda a: F.layer_norm(a, (33,)),
    lambda a: ember.where(a > 0, a * 1.5 + 0.5, a * 0.1),
    lambda a: F.gelu(a) + F.silu(a) + a.tanh().erf().sin().cos(),
    lambda a: (a.half() * 2).relu().float().clamp(-1, 1),
    lambda a: a.double().exp().amax(-1) + a.double().amin(-1),
    lambda a: (a > 0).int().sum(-1) + (a < 0).long().prod(-1),
    lambda a: a.sum() + a.mean() + a.var(-1).sum() + a.logsumexp(-1).sum(),
    lambda a: (a.abs() + 1).log1p().expm1().rsqrt().reciprocal().sqrt().floor().round(),
    lambda a: ember.maximum(a, a.t().t() * 0.5).masked_fill(a > 1, -0.0),
    lambda a: (a.to(ember.uint8) - 3).to(ember.int8).sign().float() ** 2,
]


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed (CI and the dev machines have it)")
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_generated_source_compiles_with_nvcc(arch, tmp_path):
    specs = []
    for i, fn in enumerate(CORPUS):
        program = _program(fn, X)
        assert program.specs, f"corpus entry {i} compiled no kernel"
        specs += [dataclasses.replace(spec, name=f"c{i}_{j}")
                  for j, spec in enumerate(program.specs)]
    path = tmp_path / "corpus.cu"
    path.write_text(emit_source(specs))
    result = subprocess.run([NVCC, "--ptx", f"-arch={arch}", "-o", os.devnull, str(path)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[:4000]


@pytest.mark.cuda
def test_scripted_functions_on_cuda_run_generated_kernels_and_match_the_cpu():
    for fn in CORPUS:
        scripted = ember.script(fn)
        x = ember.tensor(X)
        want = fn(x).numpy()
        xc = x.to("cuda")
        scripted(xc)
        got = scripted(xc).cpu().numpy()
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
        assert "__global__" in scripted.code


@pytest.mark.cuda
def test_a_scripted_training_step_on_cuda_matches_eager():
    from ember import nn

    def build():
        ember.manual_seed(0)
        model = nn.Sequential(nn.Linear(33, 16), nn.ReLU(), nn.Linear(16, 4)).to("cuda")
        return model, ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    (m1, o1), (m2, o2) = build(), build()

    def make(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    eager, scripted = make(m1, o1), ember.script(make(m2, o2))
    x = ember.tensor(X).to("cuda")
    y = ember.tensor(np.arange(64) % 4).to("cuda")
    for _ in range(5):
        eager(x, y)
        scripted(x, y)
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().cpu().numpy(),
                                   rtol=1e-4, atol=1e-6)
