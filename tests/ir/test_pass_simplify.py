"""Algebraic simplification, as IR text in and IR text out: each rule where it must fire, and
where it must not."""

import pytest
from ember.ir.dtypes import ALL, float16, float32, float64, int8, int16, int32, int64, uint8
from ember.ir.passes import eliminate_dead_code, simplify_algebra
from ember.ir.passes.simplify import lossless_cast


def simplify_and_clean(graph) -> bool:
    changed = simplify_algebra(graph)
    eliminate_dead_code(graph)
    return changed


def test_neutral_operands_vanish(run_pass, dedent):
    changed, out = run_pass(
        simplify_and_clean,
        """
        graph(%x: f32[B, 4], %i: i32[B]):
          %c0: f32[4] = constant([1.0, 1.0, 1.0, 1.0])
          %c1: f32[] = constant(-0.0)
          %0: f32[B, 4] = mul(%x, 1)
          %1: f32[B, 4] = mul(1.0, %0)
          %2: f32[B, 4] = add(%1, -0.0)
          %3: f32[B, 4] = add(%c1, %2)
          %4: f32[B, 4] = sub(%3, 0.0)
          %5: f32[B, 4] = div(%4, 1)
          %6: f32[B, 4] = mul(%5, %c0)
          %7: i32[B] = add(%i, 0)
          %8: i32[B] = mul(%7, True)
          return (%6, %8)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B, 4], %i: i32[B]):
          return (%x, %i)
    """)


def test_a_float_plus_positive_zero_stays_as_ieee_has_it(run_pass, dedent):
    """-0.0 + 0.0 is +0.0 and -0.0 - (-0.0) is +0.0: for floats those are no identities (an
    integer's + 0 still is)."""
    text = """
        graph(%x: f32[4]):
          %c0: f32[] = constant(0.0)
          %0: f32[4] = add(%x, 0.0)
          %1: f32[4] = add(0, %x)
          %2: f32[4] = add(%x, %c0)
          %3: f32[4] = sub(%x, -0.0)
          return (%0, %1, %2, %3)
    """
    changed, out = run_pass(simplify_algebra, text)
    assert not changed and out == dedent(text)


def test_identities_that_would_change_the_type_stay(run_pass, dedent):
    text = """
        graph(%x: f32[4], %i: i32[4], %b: bool[4], %h: f16[4]):
          %c0: f32[3, 4] = constant([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
          %c1: f64[4] = constant([0.0, 0.0, 0.0, 0.0])
          %0: f32[3, 4] = mul(%x, %c0)
          %1: f32[4] = mul(%i, 1.0)
          %2: f32[4] = div(%i, 1)
          %3: i64[4] = add(%b, 0)
          %4: f64[4] = add(%h, %c1)
          %5: f32[4] = sub(0, %x)
          %6: f32[4] = div(1, %x)
          %7: f32[4] = mul(%x, 1.5)
          return (%0, %1, %2, %3, %4, %5, %6, %7)
    """
    changed, out = run_pass(simplify_algebra, text)
    assert not changed and out == dedent(text)


def test_integer_self_subtraction_is_zeros(run_pass, dedent):
    changed, out = run_pass(
        simplify_and_clean,
        """
        graph(%i: i32[B, 4], %j: i64[]):
          %0: i32[B, 4] = sub(%i, %i)
          %1: i64[] = sub(%j, %j)
          return (%0, %1)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%i: i32[B, 4], %j: i64[]):
          %c0: i32[] = constant(0)
          %c1: i64[] = constant(0)
          %2: i32[B, 4] = expand(%c0, shape=(B, 4))
          return (%2, %c1)
    """)


def test_float_self_subtraction_stays(run_pass, dedent):
    # inf - inf and nan - nan are nan, not 0
    text = """
        graph(%x: f32[B, 4], %y: f32[B, 4]):
          %0: f32[B, 4] = sub(%x, %x)
          %1: f32[B, 4] = sub(%x, %y)
          return (%0, %1)
    """
    changed, out = run_pass(simplify_algebra, text)
    assert not changed and out == dedent(text)


def test_permutes_compose(run_pass, dedent):
    changed, out = run_pass(
        simplify_and_clean,
        """
        graph(%x: f32[2, 3, 4]):
          %0: f32[4, 2, 3] = permute(%x, dims=(2, 0, 1))
          %1: f32[3, 2, 4] = permute(%0, dims=(2, 1, 0))
          %2: f32[2, 3, 4] = permute(%0, dims=(1, 2, 0))
          %3: f32[2, 3, 4] = permute(%x, dims=(0, 1, 2))
          %4: f32[2, 3, 4] = add(%2, %3)
          return (%1, %4)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[2, 3, 4]):
          %5: f32[3, 2, 4] = permute(%x, dims=(1, 0, 2))
          %4: f32[2, 3, 4] = add(%x, %x)
          return (%5, %4)
    """)


def test_a_permute_of_equal_sizes_is_no_identity(run_pass, dedent):
    text = """
        graph(%x: f32[4, 4]):
          %0: f32[4, 4] = permute(%x, dims=(1, 0))
          return (%0)
    """
    changed, out = run_pass(simplify_algebra, text)
    assert not changed and out == dedent(text)


def test_reshapes_collapse(run_pass, dedent):
    changed, out = run_pass(
        simplify_and_clean,
        """
        graph(%x: f32[B, 16]):
          %0: f32[B*16] = reshape(%x, shape=(-1,))
          %1: f32[B*4, 4] = reshape(%0, shape=(-1, 4))
          %2: f32[B, 16] = reshape(%1, shape=(B, 16))
          %3: f32[B, 4, 4] = view(%x, shape=(B, 4, 4))
          %4: f32[B, 2, 8] = view(%3, shape=(B, 2, 8))
          %5: f32[B, 2, 8] = view(%1, shape=(B, 2, 8))
          %6: f32[B, 16] = view(%x, shape=(B, 16))
          return (%2, %4, %5, %6)
    """,
    )
    assert changed
    # a view of a reshape may not be viewable: it becomes a reshape
    assert out == dedent("""
        graph(%x: f32[B, 16]):
          %8: f32[B, 2, 8] = view(%x, shape=(B, 2, 8))
          %9: f32[B, 2, 8] = reshape(%x, shape=(B, 2, 8))
          return (%x, %8, %9, %x)
    """)


@pytest.mark.parametrize(
    ("src", "mid", "dst"),
    [("i32", "i64", "f64"), ("f16", "f32", "f64"), ("u8", "i16", "f32"), ("bool", "i8", "f16")],
)
def test_lossless_double_casts_merge(run_pass, dedent, src, mid, dst):
    long = {
        "i8": "int8",
        "i16": "int16",
        "i32": "int32",
        "i64": "int64",
        "u8": "uint8",
        "f16": "float16",
        "f32": "float32",
        "f64": "float64",
        "bool": "bool",
    }
    changed, out = run_pass(
        simplify_and_clean,
        f"""
        graph(%x: {src}[3]):
          %0: {mid}[3] = cast(%x, dtype="{long[mid]}")
          %1: {dst}[3] = cast(%0, dtype="{long[dst]}")
          %2: {src}[3] = cast(%0, dtype="{long[src]}")
          return (%1, %2)
    """,
    )
    assert changed
    assert out == dedent(f"""
        graph(%x: {src}[3]):
          %3: {dst}[3] = cast(%x, dtype="{long[dst]}")
          return (%3, %x)
    """)


def test_lossy_double_casts_stay(run_pass, dedent):
    text = """
        graph(%x: f32[3], %i: i64[3]):
          %0: i32[3] = cast(%x, dtype="int32")
          %1: f32[3] = cast(%0, dtype="float32")
          %2: f16[3] = cast(%x, dtype="float16")
          %3: f32[3] = cast(%2, dtype="float32")
          %4: f64[3] = cast(%i, dtype="float64")
          %5: i64[3] = cast(%4, dtype="int64")
          return (%1, %3, %5)
    """
    changed, out = run_pass(simplify_algebra, text)
    assert not changed and out == dedent(text)


def test_identity_shape_ops_and_casts_vanish(run_pass, dedent):
    changed, out = run_pass(
        simplify_and_clean,
        """
        graph(%x: f32[B, 4]):
          %0: f32[B, 4] = cast(%x, dtype="float32")
          %1: f32[B, 4] = expand(%0, shape=(B, 4))
          %2: f32[B, 4] = expand(%1, shape=(-1, 4))
          %3: f32[B, 4] = slice(%2, starts=(0, 0), stops=(B, 4), steps=(1, 1))
          %4: f32[B, 4] = reshape(%3, shape=(B, 4))
          %5: f32[B, 4] = permute(%4, dims=(0, 1))
          return (%5)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B, 4]):
          return (%x)
    """)


def test_a_strided_slice_of_a_unit_dim_is_kept(run_pass, dedent):
    text = """
        graph(%x: f32[4, 4]):
          %0: f32[2, 4] = slice(%x, starts=(0, 0), stops=(4, 4), steps=(2, 1))
          return (%0)
    """
    changed, out = run_pass(simplify_algebra, text)
    assert not changed and out == dedent(text)


def test_an_expanded_scalar_feeds_the_elementwise_op_directly(run_pass, dedent):
    changed, out = run_pass(
        simplify_and_clean,
        """
        graph(%x: f32[B, 4], %m: bool[B, 4]):
          %c0: f32[] = constant(0.5)
          %0: f32[B, 4] = expand(%c0, shape=(B, 4))
          %1: f32[B, 4] = mul(%x, %0)
          %2: f32[B, 4] = where(%m, %0, %1)
          return (%2)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B, 4], %m: bool[B, 4]):
          %c0: f32[] = constant(0.5)
          %1: f32[B, 4] = mul(%x, %c0)
          %2: f32[B, 4] = where(%m, %c0, %1)
          return (%2)
    """)


def test_an_expand_that_sets_the_shape_or_the_dtype_stays(run_pass, dedent):
    text = """
        graph(%x: f16[4], %s: f32[]):
          %0: f32[B, 4] = expand(%s, shape=(B, 4))
          %1: f32[B, 4] = relu(%0)
          %2: f32[4] = expand(%s, shape=(4,))
          %3: f32[4] = add(%x, %2)
          return (%1, %3)
    """
    changed, out = run_pass(simplify_algebra, text)
    assert not changed and out == dedent(text)


def test_lossless_cast_table():
    assert lossless_cast(int8, int16) and lossless_cast(uint8, int16)
    assert not lossless_cast(uint8, int8) and not lossless_cast(int8, uint8)
    assert lossless_cast(int16, float32) and not lossless_cast(int16, float16)
    assert lossless_cast(int8, float16) and lossless_cast(int32, float64)
    assert not lossless_cast(int32, float32) and not lossless_cast(int64, float64)
    assert lossless_cast(float16, float64) and not lossless_cast(float64, float32)
    assert not lossless_cast(float32, int64)
    for d in ALL:
        assert lossless_cast(d, d)


@pytest.mark.parametrize("src", ALL, ids=lambda d: d.name)
@pytest.mark.parametrize("dst", ALL, ids=lambda d: d.name)
def test_lossless_casts_really_lose_nothing(src, dst):
    import numpy as np

    if src.category == 0:
        values = np.array([False, True])
    elif src.is_floating_point:
        info = np.finfo(src.np)
        values = np.array(
            [info.min, -1.5, -0.0, info.tiny, 1 / 3, info.max, np.inf, np.nan], dtype=src.np
        )
    else:
        info = np.iinfo(src.np)
        values = np.array(
            [v for v in (info.min, -1, 0, 1, info.max) if v >= info.min], dtype=src.np
        )
    with np.errstate(all="ignore"):
        back = values.astype(dst.np).astype(src.np)
    exact = np.array_equal(back, values, equal_nan=src.is_floating_point)
    if lossless_cast(src, dst):
        assert exact


def test_types_in_use_cover_every_dtype():
    assert {float16, float32, float64, int8, int16, int32, int64, uint8} <= set(ALL)
