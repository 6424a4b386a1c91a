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
