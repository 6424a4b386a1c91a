"""Imports point one way: ir <- codegen <- runtime <- tensor/autograd <- nn/optim <- tracer <-
the public API. Checked twice: by what a fresh interpreter loads, and by reading the source."""

import ast
import json
import os
import subprocess
import sys

import pytest

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "ember"


def loaded_after(statement: str) -> list[str]:
    """The ember modules a fresh interpreter has loaded after running `statement`, plus
    'numpy' when numpy was loaded."""
    code = (
        "import sys, json\n"
        f"{statement}\n"
        "names = [m for m in sys.modules if m == 'ember' or m.startswith('ember.')]\n"
        "names += ['numpy'] if 'numpy' in sys.modules else []\n"
        "print(json.dumps(sorted(names)))\n"
    )
    env = dict(os.environ)
    env.pop("EMBER_LOG", None)
    # run outside the repository, so that `ember` is the installed package, not a folder
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(PACKAGE_DIR),
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _under(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_import_runtime_loads_no_autograd_nn_optim_or_tracer():
    modules = loaded_after("import ember.runtime")
    assert "ember.runtime.kernels" in modules  # the check would see a violation
    forbidden = [
        m
        for m in modules
        if _under(
            m,
            (
                "ember.autograd",
                "ember.nn",
                "ember.optim",
                "ember.tracer",
                "ember._tensor",
                "ember.utils",
                "ember.distributed",
            ),
        )
    ]
    assert not forbidden, f"import ember.runtime loaded {forbidden}"


@pytest.mark.parametrize(
    "module", ["ember.ir", "ember.ir.ops", "ember.ir.schema", "ember.ir.dtypes"]
)
def test_import_ir_loads_only_ir_and_errors(module):
    modules = loaded_after(f"import {module}")
    assert module in modules
    outside = [
        m for m in modules if m.startswith("ember.") and not _under(m, ("ember.ir", "ember.errors"))
    ]
    assert not outside, f"import {module} loaded {outside}"


def test_ir_ops_registers_every_schema_without_the_runtime():
    modules = loaded_after(
        "import ember.ir.ops\nfrom ember.ir.schema import SCHEMAS\n"
        "assert len(SCHEMAS) > 50, len(SCHEMAS)"
    )
    assert not any(_under(m, ("ember.runtime",)) for m in modules)


def test_import_ember_is_lazy():
    modules = loaded_after("import ember")
    assert modules == ["ember"], f"import ember loaded {modules}"


def test_using_a_name_loads_what_it_needs():
    modules = loaded_after("import ember\nember.zeros(3)")
    assert {"ember._tensor", "ember._tensor.factories", "numpy"} <= set(modules)
    modules = loaded_after("import ember\nember.float32")
    assert "ember.ir.dtypes" in modules and "ember._tensor" not in modules


# -- the same rules, read from the source ----------------------------------------------------


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, PACKAGE_DIR)[: -len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join([PACKAGE, *rel])


def imported_modules(path: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved; a
    `from package import name` counts as importing package.name (it may be a module)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    module = _module_name(path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def python_files(folder: str) -> list[str]:
    root = os.path.join(PACKAGE_DIR, folder)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
    return sorted(files)


def violations(folder: str, allowed) -> list[str]:
    bad = []
    for path in python_files(folder):
        for line, name in imported_modules(path):
            if _under(name, (PACKAGE,)) and not _under(name, allowed):
                bad.append(f"{os.path.relpath(path, PACKAGE_DIR)}:{line} imports {name}")
    return bad


def test_the_source_reader_resolves_relative_imports():
    path = os.path.join(PACKAGE_DIR, "ir", "ops", "elementwise.py")
    names = {name for _, name in imported_modules(path)}
    assert "ember.ir.schema.register" in names
    assert any(_under(n, ("ember.errors",)) for n in names)
    assert violations("ir", ("ember.ir",)), "a rule that forbids errors must find it"


def test_ir_source_imports_only_ir_and_errors():
    assert python_files("ir")
    bad = violations("ir", ("ember.ir", "ember.errors"))
    assert not bad, "ir/ must not import runtime, autograd, nn, tracer, _tensor, ops:\n" + (
        "\n".join(bad)
    )


def test_runtime_source_imports_nothing_above_it():
    assert python_files("runtime")
    bad = violations(
        "runtime", ("ember.runtime", "ember.ir", "ember.codegen", "ember.errors", "ember._log")
    )
    assert not bad, "runtime/ must not import autograd, _tensor, ops, nn, tracer:\n" + (
        "\n".join(bad)
    )


def test_codegen_source_imports_only_ir_and_itself():
    assert python_files("codegen")
    bad = violations("codegen", ("ember.codegen", "ember.ir", "ember.errors", "ember._log",
                                 "ember._version"))
    assert not bad, "codegen/ must not import runtime, autograd, _tensor, nn, tracer:\n" + (
        "\n".join(bad)
    )


TENSOR_LAYER = ("ember._tensor", "ember.autograd", "ember.ir", "ember.runtime", "ember.codegen",
                "ember.errors", "ember._log")


@pytest.mark.parametrize("folder", ["_tensor", "autograd"])
def test_tensor_layer_imports_nothing_above_it(folder):
    """The tensor layer and autograd reach the tracer only through _tensor/hooks.py, which the
    tracer registers with: no import of tracer/, nn/, optim/, utils/ or distributed/, at the
    top of a file or inside a function."""
    assert python_files(folder)
    bad = violations(folder, TENSOR_LAYER)
    assert not bad, f"{folder}/ must not import tracer, nn, optim, utils, distributed:\n" + (
        "\n".join(bad)
    )


def test_the_tracer_plugs_into_the_tensor_layer():
    modules = loaded_after(
        "import ember\nember.zeros(3)\nfrom ember._tensor import hooks\n"
        "assert hooks.composite_compiler() is not None"
    )
    assert "ember.tracer" in modules


def test_repository_root_keeps_few_modules():
    modules = sorted(f for f in os.listdir(PACKAGE_DIR) if f.endswith(".py"))
    assert len(modules) <= 8, modules
