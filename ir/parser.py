"""Read IR text (the form ir.printer writes) back into a Graph; errors give line and column.

The parser reads the text directly, character by character, and builds the graph through the
Graph API as it goes, so a parsed graph is typed by the op's type rules: a node line may leave
out its types (`%1 = relu(%0)`), and where it gives them they must be the ones the rule infers.
Values are literals, never evaluated Python: sizes may use + - * // % over ints and symbols.
"""

from __future__ import annotations

import json
import math
import re

from ..errors import EmberError, IRError
from .dtypes import ALL as ALL_DTYPES
from .graph import Graph, constant_array
from .printer import SHORT_DTYPE_NAMES
from .symbolic import RESERVED, SymInt
from .types import TensorType

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_VALUE = re.compile(r"%([A-Za-z0-9_][A-Za-z0-9_.]*)")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_DTYPES = {short: d for d in ALL_DTYPES for short in (SHORT_DTYPE_NAMES[d.name], d.name)}
_KEYWORDS = {"None": None, "True": True, "False": False, "inf": math.inf, "nan": math.nan}
assert set(_KEYWORDS) == RESERVED


class IRParseError(IRError):
    """IR text that does not parse, or does not describe a valid graph; says where."""

    def __init__(self, message: str, text: str, pos: int):
        pos = min(pos, len(text))
        start = text.rfind("\n", 0, pos) + 1
        end = text.find("\n", pos)
        self.line = text.count("\n", 0, pos) + 1
        self.column = pos - start + 1
        self.reason = message
        source_line = text[start : len(text) if end < 0 else end]
        super().__init__(
            f"line {self.line}, column {self.column}: {message}\n"
            f"  {source_line}\n  {' ' * (self.column - 1)}^"
        )


def _is_size(value) -> bool:
    return isinstance(value, SymInt) or (isinstance(value, int) and not isinstance(value, bool))


class _Parser:
    def __init__(self, text: str):
        if not isinstance(text, str):
            raise IRError(f"IR text must be a str, got {type(text).__name__}")
        self.text = text
        self.pos = 0

    # -- characters ------------------------------------------------------------------------

    def error(self, message: str, pos: int | None = None) -> IRParseError:
        return IRParseError(message, self.text, self.pos if pos is None else pos)

    def skip(self, newlines: bool = True) -> None:
        """Skip blanks; with newlines, also line breaks and # comments."""
        text, pos = self.text, self.pos
        while pos < len(text):
            c = text[pos]
            if c in " \t\r" or (newlines and c == "\n"):
                pos += 1
            elif c == "#" and newlines:
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end
            else:
                break
        self.pos = pos

    def at(self, token: str) -> bool:
        self.skip()
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        if self.at(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, context: str) -> None:
        if not self.take(token):
            raise self.error(f"expected '{token}' {context}, found {self.found()}")

    def found(self) -> str:
        if self.pos >= len(self.text):
            return "the end of the text"
        if self.text[self.pos] == "\n":
            return "the end of the line"
        match = re.compile(r"\S+").match(self.text, self.pos)
        return repr(match.group()[:20])

    def match(self, pattern: re.Pattern):
        self.skip()
        m = pattern.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m

    def at_word(self, word: str) -> bool:
        self.skip()
        end = self.pos + len(word)
        return self.text.startswith(word, self.pos) and not (
            end < len(self.text) and (self.text[end].isalnum() or self.text[end] == "_")
        )

    # -- types -----------------------------------------------------------------------------

    def type_(self) -> TensorType:
        self.skip()
        start = self.pos
        m = self.match(_IDENT)
        if not m or m.group() not in _DTYPES:
            found = repr(m.group()) if m else self.found()
            shorts = ", ".join(SHORT_DTYPE_NAMES.values())
            raise self.error(
                f"expected a type like f32[B, 16] (dtypes: {shorts}), found {found}", start
            )
        self.expect("[", "after the dtype")
        sizes = []
        while not self.take("]"):
            pos = self.pos
            size = self.expr()
            if not _is_size(size):
                raise self.error(f"a size is an int or a symbolic expression, got {size!r}", pos)
            sizes.append(size)
            if not self.take(","):
                self.expect("]", "after the sizes")
                break
        return TensorType(tuple(sizes), _DTYPES[m.group()])

    # -- literals: the attr values, scalar inputs and constants ----------------------------

    def expr(self):
        left = self.term()
        while True:
            self.skip()
            pos = self.pos
            if self.take("+"):
                left = self.arith("+", left, self.term(), pos)
            elif self.take("-"):
                left = self.arith("-", left, self.term(), pos)
            else:
                return left

    def term(self):
        left = self.unary()
        while True:
            self.skip()
            pos = self.pos
            if self.take("//"):
                left = self.arith("//", left, self.unary(), pos)
            elif self.take("*"):
                left = self.arith("*", left, self.unary(), pos)
            elif self.take("%"):
                left = self.arith("%", left, self.unary(), pos)
            elif self.at("/"):
                raise self.error("sizes divide with //, not /")
            else:
                return left

    def arith(self, op: str, left, right, pos: int):
        if not (_is_size(left) and _is_size(right)):
            raise self.error(
                f"arithmetic ({op}) is only for sizes (ints and symbols), not "
                f"{type(left).__name__} and {type(right).__name__}",
                pos,
            )
        try:
            if op == "+":
                return left + right
            if op == "-":
                return left - right
            if op == "*":
                return left * right
            return left // right if op == "//" else left % right
        except ZeroDivisionError:
            raise self.error(f"{op} by zero", pos) from None

    def unary(self):
        self.skip()
        pos = self.pos
        if self.take("-"):
            value = self.unary()
            if isinstance(value, bool) or not isinstance(value, (int, float, SymInt)):
                raise self.error(f"'-' applies to numbers and sizes, not {value!r}", pos)
            return -value
        return self.atom()

    def atom(self):
        self.skip()
        pos = self.pos
        if self.take("("):
            if self.take(")"):
                return ()
            first = self.expr()
            if self.take(")"):
                return first  # parentheses around one value, as in Python: (1) is 1
            self.expect(",", "or ')' in a tuple")
            return tuple([first] + self.items(")", "tuple"))
        if self.take("["):
            return self.items("]", "list")
        if self.take("{"):
            return self.dict_()
        m = self.match(_STRING)
        if m:
            try:
                return json.loads(m.group())
            except json.JSONDecodeError as exc:
                raise self.error(f"bad string literal: {exc.msg}", pos) from None
        m = self.match(_NUMBER)
        if m:
            token = m.group()
            if "." in token or "e" in token or "E" in token:
                return float(token)
            return int(token)
        m = self.match(_IDENT)
        if m:
            word = m.group()
            return _KEYWORDS[word] if word in _KEYWORDS else SymInt(word)
        raise self.error(
            f"expected a value (a number, string, size, tuple, list, dict, None, "
            f"True or False), found {self.found()}"
        )

    def items(self, close: str, what: str) -> list:
        out = []
        while not self.take(close):
            out.append(self.expr())
            if not self.take(","):
                self.expect(close, f"or ',' in a {what}")
                break
        return out

    def dict_(self) -> dict:
        out = {}
        while not self.take("}"):
            pos = self.pos
            key = self.expr()
            if not isinstance(key, str):
                raise self.error(f"dict keys are strings, got {key!r}", pos)
            self.expect(":", "after a dict key")
            out[key] = self.expr()
            if not self.take(","):
                self.expect("}", "or ',' in a dict")
                break
        return out

    # -- the graph -------------------------------------------------------------------------

    def graph(self) -> Graph:
        self.built = graph = Graph()
        self.skip()
        if not self.at_word("graph"):
            raise self.error(f"expected 'graph(...)' at the start, found {self.found()}")
        self.pos += len("graph")
        self.expect("(", "after 'graph'")
        while not self.take(")"):
            pos = self.pos
            name = self.value_name("an input like %x: f32[4]")
            self.expect(":", f"and a type after the input %{name}")
            value_type = self.type_()
            self.define(name, pos)
            graph.add_input(value_type, name)
            if not self.take(","):
                self.expect(")", "or ',' after an input")
                break
        self.expect(":", "after the graph's inputs")
        while True:
            self.skip()
            if self.at_word("return"):
                break
            if not self.at("%"):
                raise self.error(
                    f"expected a line '%name = op(...)' or 'return (...)', found {self.found()}"
                )
            self.statement()
        self.pos += len("return")
        self.expect("(", "after 'return'")
        outputs = []
        while not self.take(")"):
            outputs.append(self.use())
            if not self.take(","):
                self.expect(")", "or ',' after an output")
                break
        graph.set_outputs(outputs)
        self.skip()
        if self.pos < len(self.text):
            raise self.error(f"expected the end of the graph after 'return', found {self.found()}")
        return graph

    def value_name(self, what: str) -> str:
        m = self.match(_VALUE)
        if not m:
            raise self.error(f"expected {what}, found {self.found()}")
        return m.group(1)

    def define(self, name: str, pos: int) -> None:
        if name in self.built._names:
            raise self.error(f"%{name} is defined twice", pos)

    def use(self):
        self.skip()
        pos = self.pos
        name = self.value_name("a value like %x")
        value = self.built._names.get(name)
        if value is None:
            raise self.error(f"%{name} is not defined before this use", pos)
        return value

    def statement(self) -> None:
        defs = []  # (name, position, declared type or None, position of the type)
        while True:
            self.skip()
            pos = self.pos
            name = self.value_name("a value name like %0")
            self.define(name, pos)
            if any(d[0] == name for d in defs):
                raise self.error(f"%{name} is defined twice", pos)
            declared, type_pos = None, None
            if self.take(":"):
                self.skip()
                type_pos = self.pos
                declared = self.type_()
            defs.append((name, pos, declared, type_pos))
            if not self.take(","):
                break
        self.expect("=", "after the defined values")
        self.skip()
        op_pos = self.pos
        m = self.match(_OP_NAME)
        if not m:
            raise self.error(f"expected an op name, found {self.found()}")
        op = m.group()
        self.expect("(", f"after the op name {op}")
        if op == "constant":
            self.constant(defs, op_pos)
        else:
            self.node(op, defs, op_pos)

    def end_of_line(self) -> str | None:
        """The source comment ending a node line, if any; then the line must end."""
        self.skip(newlines=False)
        source = None
        if self.text.startswith("#", self.pos):
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            source = self.text[self.pos + 1 : end].strip() or None
            self.pos = end
        if self.pos < len(self.text) and self.text[self.pos] != "\n":
            raise self.error(f"expected the end of the line, found {self.found()}")
        return source

    def constant(self, defs: list, op_pos: int) -> None:
        if len(defs) != 1 or defs[0][2] is None:
            raise self.error(
                "a constant defines one value and gives its type: "
                "%c0: f32[2] = constant([1.0, 2.0])",
                defs[0][1],
            )
        name, _, declared, type_pos = defs[0]
        if not all(isinstance(d, int) for d in declared.shape):
            raise self.error(f"a constant's shape is concrete, got {declared.shape}", type_pos)
        self.skip()
        value_pos = self.pos
        value = self.expr()
        self.expect(")", "after the constant's value")
        self.end_of_line()
        try:
            array = constant_array(value, declared.dtype)
        except IRError as exc:
            raise self.error(str(exc), value_pos) from None
        if array.shape != declared.shape:
            if array.size == 0 and math.prod(declared.shape) == 0:
                array = array.reshape(declared.shape)
                array.setflags(write=False)
            else:
                raise self.error(
                    f"the value has shape {list(array.shape)}, the type says "
                    f"{list(declared.shape)}",
                    value_pos,
                )
        self.built.add_constant(array, declared.dtype, name)

    def node(self, op: str, defs: list, op_pos: int) -> None:
        inputs, attrs = [], {}
        while not self.take(")"):
            self.skip()
            pos = self.pos
            keyword = _IDENT.match(self.text, pos)
            after = keyword.end() if keyword else pos
            while after < len(self.text) and self.text[after] in " \t":
                after += 1
            if (
                keyword
                and self.text.startswith("=", after)
                and not (self.text.startswith("==", after))
            ):
                name = keyword.group()
                if name in attrs:
                    raise self.error(f"attr {name} is given twice", pos)
                self.pos = after + 1
                attrs[name] = self.expr()
            elif attrs:
                raise self.error("inputs come before the attrs (name=value)", pos)
            elif self.at("%"):
                inputs.append(self.use())
            else:
                value = self.expr()
                if isinstance(value, SymInt) or not isinstance(value, (bool, int, float)):
                    raise self.error(f"an input is a %value or a number, got {value!r}", pos)
                inputs.append(value)
            if not self.take(","):
                self.expect(")", f"or ',' in the arguments of {op}")
                break
        source = self.end_of_line()
        try:
            node = self.built.add_node(op, inputs, attrs, source, names=[d[0] for d in defs])
        except (EmberError, IRError) as exc:
            raise self.error(str(exc), op_pos) from None
        for (name, _, declared, type_pos), value in zip(defs, node.outputs):
            if declared is not None and declared != value.type:
                from .printer import format_type

                raise self.error(
                    f"%{name} is declared {format_type(declared)} but {op} gives "
                    f"{format_type(value.type)}",
                    type_pos,
                )


def _parse_whole(text: str, rule: str):
    parser = _Parser(text)
    value = getattr(parser, rule)()
    parser.skip()
    if parser.pos < len(text):
        raise parser.error(f"unexpected {parser.found()} after the {rule.rstrip('_')}")
    return value


def parse_graph(text: str) -> Graph:
    """The Graph that IR text describes (see ir.printer); IRParseError says where it is wrong."""
    return _Parser(text).graph()


def parse_type(text: str) -> TensorType:
    """'f32[B, 16]' -> TensorType((B, 16), float32)."""
    return _parse_whole(text, "type_")


def parse_literal(text: str):
    """An attr value written as the printer writes it: '(1, [2, 3], None)', 'B*4'."""
    return _parse_whole(text, "expr")


def parse_size(text: str):
    """'B*16' -> an int or a SymInt."""
    value = _parse_whole(text, "expr")
    if not _is_size(value):
        raise IRParseError(f"a size is an int or a symbolic expression, got {value!r}", text, 0)
    return value
