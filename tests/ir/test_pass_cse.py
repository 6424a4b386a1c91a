"""Common-subexpression elimination, as IR text in and IR text out."""

from ember.ir.passes import eliminate_common_subexpressions as cse


def test_equal_computations_merge_and_their_users_follow(run_pass, dedent):
    changed, out = run_pass(
        cse,
        """
        graph(%x: f32[B, 4], %y: f32[B, 4]):
          %0: f32[B, 4] = relu(%x)
          %1: f32[B, 4] = relu(%x)
          %2: f32[B, 4] = exp(%0)
          %3: f32[B, 4] = exp(%1)
          %4: f32[B, 4] = add(%x, %y)
          %5: f32[B, 4] = add(%y, %x)
          %6: f32[B, 4] = mul(%2, %3)
          return (%6, %4, %5)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B, 4], %y: f32[B, 4]):
          %0: f32[B, 4] = relu(%x)
          %2: f32[B, 4] = exp(%0)
          %4: f32[B, 4] = add(%x, %y)
          %6: f32[B, 4] = mul(%2, %2)
          return (%6, %4, %4)
    """)


def test_different_attrs_inputs_or_order_do_not_merge(run_pass, dedent):
    text = """
        graph(%x: f32[3, 4], %i: i32[4]):
          %0: f32[3] = sum(%x, dims=(1,), keepdim=False)
          %1: f32[4] = sum(%x, dims=(0,), keepdim=False)
          %2: f32[3, 1] = sum(%x, dims=(1,), keepdim=True)
          %3: f32[3, 4] = sub(%x, 1.0)
          %4: f32[3, 4] = sub(1.0, %x)
          %5: i32[4] = mul(%i, 2)
          %6: f32[4] = mul(%i, 2.0)
          %7: i32[4] = mul(%i, True)
          return (%0, %1, %2, %3, %4, %5, %6, %7)
    """
    changed, out = run_pass(cse, text)
    assert not changed and out == dedent(text)


def test_random_ops_never_merge(run_pass, dedent):
    text = """
        graph(%p: f32[B, 4]):
          %0: f32[B, 4] = bernoulli(%p)
          %1: f32[B, 4] = bernoulli(%p)
          %2: f32[B, 4] = add(%0, %1)
          return (%2)
    """
    changed, out = run_pass(cse, text)
    assert not changed and out == dedent(text)


def test_multi_output_nodes_merge_whole(run_pass, dedent):
    changed, out = run_pass(
        cse,
        """
        graph(%x: f32[B, 4]):
          %0: f32[B], %1: i64[B] = max_dim(%x, dim=1, keepdim=False)
          %2: f32[B], %3: i64[B] = max_dim(%x, dim=1, keepdim=False)
          return (%0, %3)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[B, 4]):
          %0: f32[B], %1: i64[B] = max_dim(%x, dim=1, keepdim=False)
          return (%0, %1)
    """)


def test_equal_constants_merge_but_not_by_value_alone(run_pass, dedent):
    changed, out = run_pass(
        cse,
        """
        graph(%x: f32[2]):
          %c0: f32[2] = constant([1.0, 2.0])
          %c1: f32[2] = constant([1.0, 2.0])
          %c2: f64[2] = constant([1.0, 2.0])
          %c3: f32[] = constant(0.0)
          %c4: f32[] = constant(-0.0)
          %0: f32[2] = add(%x, %c0)
          %1: f32[2] = add(%x, %c1)
          %2: f32[2] = mul(%x, %c3)
          %3: f32[2] = mul(%x, %c4)
          return (%0, %1, %c2, %2, %3)
    """,
    )
    assert changed
    assert out == dedent("""
        graph(%x: f32[2]):
          %c0: f32[2] = constant([1.0, 2.0])
          %c2: f64[2] = constant([1.0, 2.0])
          %c3: f32[] = constant(0.0)
          %c4: f32[] = constant(-0.0)
          %0: f32[2] = add(%x, %c0)
          %2: f32[2] = mul(%x, %c3)
          %3: f32[2] = mul(%x, %c4)
          return (%0, %0, %c2, %2, %3)
    """)
