"""SymInt: symbolic sizes in one canonical form, with exact arithmetic and honest comparisons."""

import copy
import pickle

import pytest
from ember.errors import IRError
from ember.ir.parser import parse_size
from ember.ir.symbolic import SymInt, definitely_less, lower_bound, symbol, symbols
from hypothesis import given, settings
from hypothesis import strategies as st

B, C, H, W = symbols("B C H W")


def value_of(expr, **sizes):
    return expr.subs(sizes) if isinstance(expr, SymInt) else expr


def test_a_symbol_prints_as_its_name_and_is_no_number():
    assert str(B) == "B"
    assert B.is_symbol and not (B * 2).is_symbol
    assert B != 1 and B != 0 and (B == 2) is False  # a symbol is never a number
    assert symbol("B") == B and hash(symbol("B")) == hash(B)


@pytest.mark.parametrize("name", ["", "2B", "a-b", "None", "inf", "nan", "True", 3])
def test_symbol_names_are_identifiers_other_than_literals(name):
    with pytest.raises(IRError, match="symbol"):
        SymInt(name)


def test_equality_is_structural_and_order_free():
    assert B * 16 == 16 * B
    assert B + H == H + B
    assert B * H * W == W * (H * B)
    assert (B + 1) * (B - 1) == B * B - 1
    assert len({B * 4, 4 * B, B + B + B + B}) == 1
    assert B * 4 != B * 5 and B * H != B * W


def test_constant_results_are_plain_ints():
    assert B - B == 0 and type(B - B) is int
    assert (B * 16) // (B * 4) == 4 and type((B * 16) // (B * 4)) is int
    assert (B + 1) * (B - 1) - B * B == -1
    assert B * 0 == 0


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (B * 16, "B*16"),
        ((B * 16) // 4, "B*4"),
        ((B * H * W) // (H * W), "B"),
        ((B * 16) % 4, "0"),
        ((B * 4 + 6) // 4, "B + 1"),
        ((B * 3 + H - 4) // 3, "B + (H + 2)//3 - 2"),
        ((W - 2) // 2 + 1, "W//2"),
        ((H - 1) // 2 + 1, "(H + 1)//2"),
        (B - (H - 1) // 2, "B - ((H + 1)//2) + 1"),
        (((H - 1) // 2) * 2, "((H + 1)//2)*2 - 2"),
        ((2 * B + 2) // (B + 1), "2"),
        (B // C, "B//C"),
        (4 // B, "4//B"),
        (B * B * 3 + B - 7, "B*B*3 + B - 7"),
        (-B + 4, "-B + 4"),
    ],
)
def test_simplification_and_printing(expr, text):
    assert str(expr) == text
    assert parse_size(text) == expr


def test_nested_floor_divisions_combine():
    assert (H // 2) // 3 == H // 6


def test_ordering_answers_only_what_holds_for_every_size():
    # symbols stand for sizes of at least 2 (0 and 1 are specialized)
    assert not B < 0 and B >= 2 and B > 1 and B * 2 > B and B + 1 > B
    assert (B - 2 >= 0) and not (B - 2 < 0)
    with pytest.raises(IRError, match="cannot decide whether B < C"):
        _ = B < C
    with pytest.raises(IRError, match="cannot decide"):
        _ = H - 3 > 0
    with pytest.raises(IRError, match="cannot decide"):
        bool(H - 2)
    assert bool(B + 1)
    assert definitely_less(B, B + 1) and not definitely_less(B, C)
    assert not definitely_less(H - 4, 0)  # unknown: never 'definitely'
    assert lower_bound(B * H + 3) == 7 and lower_bound(H - 4) == -2
    assert lower_bound(4 - H) is None  # a negative multiple of a symbol is unbounded below
    assert lower_bound((H + 1) // 2) == 1


def test_a_symbolic_size_has_no_concrete_value():
    with pytest.raises(IRError, match="no concrete value"):
        range(B)
    with pytest.raises(IRError, match="no concrete value"):
        int(B)


def test_arithmetic_with_non_integers_is_refused():
    for bad in (1.5, True, "B", None):
        with pytest.raises(TypeError):
            B + bad
    with pytest.raises(ZeroDivisionError):
        B // 0


def test_substitution_and_free_symbols():
    expr = (B * H) // 2 + W
    assert expr.free_symbols == {"B", "H", "W"}
    assert expr.subs({"B": 3, "H": 4, "W": 5}) == 11
    assert expr.subs({"H": 2 * C}) == B * C + W
    assert (B * 16).subs({"B": C}) == C * 16


def test_symints_survive_pickle_and_copy():
    expr = B * 4 + (H - 1) // 2
    assert pickle.loads(pickle.dumps(expr)) == expr
    assert copy.deepcopy(expr) is expr


# -- properties: every simplification is exact ---------------------------------------------


def expressions():
    """(expression, its value as a function of the sizes), built side by side: the SymInt by
    symbolic arithmetic, the value by integer arithmetic."""
    symbol_leaves = st.sampled_from([(s, lambda v, n=str(s): v[n]) for s in (B, C, H)])
    int_leaves = st.integers(-6, 6).map(lambda k: (k, lambda v, k=k: k))

    def combine(children):
        divisors = st.one_of(symbol_leaves, st.integers(1, 5).map(lambda k: (k, lambda v, k=k: k)))

        def build(args):
            op, (a, fa), (b, fb) = args
            if op == "+":
                return a + b, lambda v: fa(v) + fb(v)
            if op == "-":
                return a - b, lambda v: fa(v) - fb(v)
            if op == "*":
                return a * b, lambda v: fa(v) * fb(v)
            if op == "//":
                return a // b, lambda v: fa(v) // fb(v)
            return a % b, lambda v: fa(v) % fb(v)

        arithmetic = st.tuples(st.sampled_from(["+", "-", "*"]), children, children)
        division = st.tuples(st.sampled_from(["//", "%"]), children, divisors)
        return st.one_of(arithmetic, division).map(build)

    return st.recursive(st.one_of(symbol_leaves, int_leaves), combine, max_leaves=7)


SIZES = st.fixed_dictionaries({n: st.integers(2, 9) for n in "BCH"})


@settings(max_examples=400, deadline=None)
@given(expressions(), SIZES)
def test_simplified_expressions_keep_their_integer_value(built, sizes):
    expr, value = built
    assert value_of(expr, **sizes) == value(sizes)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("+-*/%"), st.integers(-5, 5)), max_size=5),
    st.fixed_dictionaries({n: st.integers(2, 12) for n in "BH"}),
)
def test_operations_commute_with_substitution(steps, sizes):
    expr, value = B * 2 + H, sizes["B"] * 2 + sizes["H"]
    for op, k in steps:
        if op == "+":
            expr, value = expr + k, value + k
        elif op == "-":
            expr, value = expr - H, value - sizes["H"]
        elif op == "*":
            expr, value = expr * k, value * k
        elif k > 0:
            expr, value = (expr // k, value // k) if op == "/" else (expr % k, value % k)
    assert value_of(expr, **sizes) == value


@settings(max_examples=300, deadline=None)
@given(expressions(), SIZES)
def test_printed_expressions_parse_back_equal(built, sizes):
    expr, value = built
    parsed = parse_size(str(expr))
    assert parsed == expr
    assert value_of(parsed, **sizes) == value(sizes)
