"""Every primitive has one entry in each layer that needs it: schema, kernel, derivative."""

import ember._tensor  # noqa: F401  (loads the schema, kernel and derivative tables)
import pytest
from ember.autograd.derivatives import DERIVATIVES
from ember.ir.schema import SCHEMAS
from ember.runtime.kernels import KERNELS


def test_tables_are_loaded():
    assert len(SCHEMAS) > 50
    assert {"add", "matmul", "sum", "conv2d", "index"} <= set(SCHEMAS)


@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_every_schema_has_a_kernel(op):
    assert op in KERNELS, f"op {op!r} has a schema but no eager kernel"
    assert callable(KERNELS[op])


@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_every_differentiable_schema_has_a_derivative(op):
    schema = SCHEMAS[op]
    assert schema.name == op
    if schema.differentiable:
        assert op in DERIVATIVES, (
            f"op {op!r} is differentiable but has no derivative rule; add one in "
            "autograd/derivatives or mark its schema differentiable=False"
        )
        assert callable(DERIVATIVES[op].fn)


def test_no_kernel_without_a_schema():
    orphans = sorted(set(KERNELS) - set(SCHEMAS))
    assert not orphans, f"kernels registered for ops without a schema: {orphans}"


def test_no_derivative_without_a_schema():
    orphans = sorted(set(DERIVATIVES) - set(SCHEMAS))
    assert not orphans, f"derivatives registered for ops without a schema: {orphans}"


def test_non_differentiable_ops_have_no_derivative():
    stray = sorted(op for op in DERIVATIVES if not SCHEMAS[op].differentiable)
    assert not stray, f"derivative rules for ops whose schema says differentiable=False: {stray}"


# -- every table derived from an op's declaration, or checked against it ----------------------

import os  # noqa: E402
import re  # noqa: E402

import ember  # noqa: E402
import numpy as np  # noqa: E402
from ember._tensor import methods  # noqa: E402
from ember.codegen import scalar as fusion_vocabulary  # noqa: E402
from ember.codegen.cuda.scalar import TEMPLATES as CUDA_TEMPLATES  # noqa: E402
from ember.codegen.llvm import mathlib  # noqa: E402
from ember.codegen.llvm.scalar import TEMPLATES as LLVM_TEMPLATES  # noqa: E402
from ember.runtime.kernels import elementwise as elementwise_kernels  # noqa: E402
from ember.tracer.onnx_ops import NOT_EXPORTABLE, TRANSLATIONS  # noqa: E402

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _public_names(schema):
    return (schema.name, *schema.aliases)


@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_every_declared_variant_exists(op):
    schema = SCHEMAS[op]
    for name in _public_names(schema):
        if "function" in schema.variants:
            assert callable(getattr(ember, name, None)), f"ember.{name} (op {op!r}) is missing"
        if "method" in schema.variants:
            assert callable(getattr(ember.Tensor, name, None)), f"Tensor.{name} is missing"
        if "inplace" in schema.variants:
            assert callable(getattr(ember.Tensor, name + "_", None)), f"Tensor.{name}_ is missing"


@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_a_plain_op_is_its_declared_function(op):
    schema = SCHEMAS[op]
    if schema.arity is None:
        return
    assert "function" in schema.variants, f"op {op!r} declares an arity but no function"
    fn = getattr(ember, op)
    try:
        x = ember.rand(3, dtype=ember.float64) + 0.5
        expected = ember.dispatch(op, (x,) if schema.arity == 1 else (x, x * 2))
    except ember.EmberError:  # an op on integers only (bitwise)
        x = ember.tensor([1, 6, 12])
        expected = ember.dispatch(op, (x,) if schema.arity == 1 else (x, x * 2))
    args = (x,) if schema.arity == 1 else (x, x * 2)
    out = fn(*args)
    assert np.array_equal(out.numpy(), expected.numpy(), equal_nan=True)


def test_hand_written_method_lists_do_not_repeat_declared_ops():
    declared_methods = {n for s in SCHEMAS.values() if "method" in s.variants
                        for n in _public_names(s)}
    declared_inplace = {n for s in SCHEMAS.values() if "inplace" in s.variants
                        for n in _public_names(s)}
    assert not declared_methods & set(methods._SAME_NAME)
    assert not declared_inplace & set(methods._INPLACE)


@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_every_fusable_op_has_a_template_in_each_backend(op):
    schema = SCHEMAS[op]
    if not schema.fuse:
        return
    assert schema.kind == "elementwise", f"op {op!r} fuses but is not elementwise"
    assert set(schema.fuse) <= set("fiub"), f"op {op!r} fuses for unknown kinds {schema.fuse!r}"
    if op in fusion_vocabulary.CONVERSIONS:
        return
    assert op in LLVM_TEMPLATES, f"op {op!r} fuses but has no LLVM template (llvm/scalar.py)"
    assert op in CUDA_TEMPLATES, f"op {op!r} fuses but has no CUDA template (cuda/scalar.py)"


@pytest.mark.parametrize(
    "templates", [LLVM_TEMPLATES, CUDA_TEMPLATES], ids=["llvm_ir", "cuda_c"]  # not "cuda": a mark
)
def test_every_template_is_of_a_fusable_op(templates):
    fusable = {op for op, s in SCHEMAS.items() if s.fuse} | set(fusion_vocabulary.SPEC_ONLY)
    stray = sorted(set(templates) - fusable)
    assert not stray, f"templates of ops that never fuse (declare fuse= in ir/ops): {stray}"
    assert fusable - fusion_vocabulary.CONVERSIONS <= set(templates)


def test_inline_math_functions_are_the_declared_ones():
    declared = {op for op, s in SCHEMAS.items() if s.mathlib}
    assert declared == set(mathlib.FUNCTIONS)


@pytest.mark.parametrize("op", sorted(op for op, s in SCHEMAS.items() if s.ufunc))
def test_a_declared_ufunc_is_the_eager_kernel(op):
    ufunc = SCHEMAS[op].ufunc
    assert hasattr(np, ufunc), f"op {op!r} declares numpy.{ufunc}, which does not exist"
    assert KERNELS[op].__name__ == f"kernel_{ufunc}"


def test_quiet_kernels_are_declared_ufuncs():
    assert elementwise_kernels._QUIET <= {op for op, s in SCHEMAS.items() if s.ufunc}


@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_every_op_exports_to_onnx_or_says_why_not(op):
    assert (op in TRANSLATIONS) != (op in NOT_EXPORTABLE), (
        f"op {op!r} needs an ONNX translation (tracer/onnx_ops.py, or onnx= in its "
        "declaration) or a reason in NOT_EXPORTABLE, not both"
    )
    if op in NOT_EXPORTABLE:
        assert NOT_EXPORTABLE[op].strip()


@pytest.mark.parametrize("op", sorted(op for op, s in SCHEMAS.items() if s.onnx))
def test_a_declared_onnx_operator_exists(op):
    onnx = pytest.importorskip("onnx")
    assert onnx.defs.has(SCHEMAS[op].onnx), f"op {op!r} declares an unknown ONNX operator"


def test_an_elementwise_op_is_spelled_in_few_source_files():
    """One declaration, not a side table per layer: tanh appears in its declaration, its
    derivative, its inline polynomial (llvm/mathlib.py), and the nn code that uses it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR):
        rel = os.path.relpath(dirpath, PACKAGE_DIR)
        top = rel.split(os.sep)[0]
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__", "build"))]
        if top in ("tests", "benchmarks", "examples"):
            continue
        for name in filenames:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    if re.search(r"\btanh\b", f.read()):  # not atanh, arctanh
                        found.append(os.path.join(rel, name))
    # 8 where tables were, plus the users of the function, not tables of it: nn/layers/rnn.py
    # (the gates, and RNN's nonlinearity option) and the LSTM layer op's kernel
    # (runtime/kernels/rnn.py), its native pass (codegen/llvm/recurrent.py) and its double
    # backward in Tensor ops (autograd/derivatives/nn.py)
    assert len(found) <= 12, sorted(found)


@pytest.mark.parametrize("op", sorted(SCHEMAS))
def test_every_op_declares_its_inputs_and_the_attrs_its_kernel_takes(op):
    """What a graph file's node may hold is read from the declaration (ir.schema.check_node),
    so each op declares its input count and its attrs, and these are the kernel's keyword
    parameters that are not inputs."""
    import inspect

    schema = SCHEMAS[op]
    assert schema.input_bounds() is not None, f"op {op!r} declares no num_inputs (nor arity)"
    assert schema.attrs is not None, f"op {op!r} declares no attrs (attrs={{}} for none)"
    params = inspect.signature(KERNELS[op]).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):  # view_scatter: the view op's attrs too
        assert schema.attrs_of is not None
        return
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    takes_inputs = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD][1:]
    takes_inputs = takes_inputs[: schema.input_bounds()[1]]
    assert set(schema.attrs) == names - {"xp", "out"} - set(takes_inputs)
    optional = {p.name for p in params if p.default is not p.empty} & set(schema.attrs)
    assert optional == {n for n, a in schema.attrs.items() if a.optional}


def test_the_collectives_declare_the_reduce_ops_of_ember_distributed():
    from ember.distributed import ReduceOp
    from ember.ir.ops.collectives import REDUCE_OPS

    assert set(REDUCE_OPS) == {op.name for op in ReduceOp}
