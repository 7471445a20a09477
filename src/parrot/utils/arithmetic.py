"""Exact arithmetic on untrusted expressions, without `eval`.

`evaluate("3 * (12 / 3)")` parses the text with Python's own parser (`ast.parse`, which only
builds a tree and runs nothing), then walks the tree allowing numbers, parentheses, the
binary operators + - * / // % ** and unary + -. Everything else (names, calls, attributes,
subscripts, comprehensions) is refused. Values are `Fraction`s, so `1/3 + 2/3` is exactly 1;
powers are bounded so `9**9**9` cannot eat the machine.
"""

from __future__ import annotations

import ast
import operator
from fractions import Fraction

from parrot.errors import ParrotError

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 256
MAX_DIGITS = 1000

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise ParrotError(f"exponents must be whole numbers of at most {MAX_EXPONENT}")
    if base == 0 and exponent < 0:
        raise ParrotError("division by zero")
    return base ** int(exponent)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and (type(node.op) in _BINARY or isinstance(node.op, ast.Pow)):
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow):
            result = _power(left, right)
        elif right == 0 and type(node.op) in (ast.Div, ast.FloorDiv, ast.Mod):
            raise ParrotError("division by zero")
        else:
            result = Fraction(_BINARY[type(node.op)](left, right))
        if max(len(str(result.numerator)), len(str(result.denominator))) > MAX_DIGITS:
            raise ParrotError(f"the result has more than {MAX_DIGITS} digits")
        return result
    raise ParrotError(f"only numbers and + - * / // % ** ( ) are allowed, not {ast.unparse(node)!r}")


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression; a ParrotError names what is not allowed."""
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("^", "**")
    if not text:
        raise ParrotError("the expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ParrotError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        raise ParrotError(f"cannot parse {expression!r} as arithmetic") from None
    return _value(tree)


def format_number(value: Fraction, digits: int = 10) -> str:
    """An integer as itself, anything else as a decimal with up to `digits` significant digits."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.{digits}g}"
