"""Shared test set-up: tests marked `cuda` skip without a usable GPU; every kernel spec the
suite compiles is also emitted as CUDA C and, at the end of the session, compiled with nvcc for
sm_90 and sm_80 when nvcc is installed (a failure fails the run)."""

import os
import shutil
import subprocess
import tempfile

import pytest

_SPECS: dict = {}  # spec key -> spec, every kernel any CompiledProgram of this session built


def pytest_configure(config):
    from ember.runtime import compiled

    build = compiled.CompiledProgram.__init__

    def recording_init(self, *args, **kwargs):
        build(self, *args, **kwargs)
        for spec in self.specs:
            _SPECS.setdefault(spec.key(), spec)

    compiled.CompiledProgram.__init__ = recording_init


@pytest.fixture
def dispatched_ops():
    """seen(fn): the ops fn dispatches, in order (through the tracer hook dispatch calls)."""
    from ember._tensor import hooks

    def seen(fn):
        ops = []
        previous = hooks.tracer_hook
        hooks.tracer_hook = lambda op, *rest: ops.append(op)
        try:
            fn()
        finally:
            hooks.tracer_hook = previous
        return ops

    return seen


_TORCH_MODULES: dict = {}  # test file -> whether it compares against PyTorch


def _compares_with_torch(path) -> bool:
    """Whether a test file skips without PyTorch (importorskip("torch")): its tests are
    oracle tests, which CI runs again once torch is installed (`pytest -m oracle`)."""
    known = _TORCH_MODULES.get(path)
    if known is None:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            text = ""
        known = _TORCH_MODULES[path] = 'importorskip("torch")' in text
    return known


def pytest_collection_modifyitems(config, items):
    import ember

    for item in items:
        if "oracle" not in item.keywords and _compares_with_torch(str(item.path)):
            item.add_marker(pytest.mark.oracle)
    if ember.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device (cupy missing or no GPU)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    nvcc = shutil.which("nvcc")
    if nvcc is None or not _SPECS or os.environ.get("EMBER_SKIP_NVCC_CHECK"):
        return
    import dataclasses

    from ember.codegen.cuda.emit import emit_source

    specs = [dataclasses.replace(s, name=f"k{i}") for i, s in enumerate(_SPECS.values())]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "suite_kernels.cu")
        with open(path, "w") as f:
            f.write(emit_source(specs, "suite"))
        runs = [subprocess.Popen([nvcc, "--ptx", f"-arch={arch}", "-o", os.devnull, path],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for arch in ("sm_90", "sm_80")]
        failed = []
        for arch, run in zip(("sm_90", "sm_80"), runs):
            out, _ = run.communicate(timeout=600)
            if run.returncode != 0:
                failed.append(f"nvcc --ptx -arch={arch} failed:\n{out[:4000]}")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if failed:
            kept = os.path.join(tempfile.gettempdir(), "ember_suite_kernels.cu")
            shutil.copy(path, kept)
            message = "\n".join(failed) + f"\n(the source is kept in {kept})"
            session.exitstatus = 1
        else:
            message = (f"CUDA source of the {len(specs)} kernel specs this run compiled: "
                       "nvcc --ptx ok for sm_90 and sm_80")
        if reporter is not None:
            reporter.write_line("\n" + message)
