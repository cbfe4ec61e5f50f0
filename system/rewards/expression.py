"""Safe arithmetic: whole numbers, + - * /, unary minus and parentheses, evaluated exactly.

Model answers are hostile input, so they are never given to `eval`. The text is checked
character by character, parsed with `ast.parse(mode="eval")`, and the tree is walked with a
whitelist, computing with `Fraction` (so 8 / 3 * 3 is exactly 8). Everything that could take
unbounded time or memory — powers, names, calls, attributes, huge literals, very long or deeply
nested input — is rejected before any arithmetic happens. Errors say what is wrong in words, so
environments can show them to the model as feedback.
"""

from __future__ import annotations

import ast
import operator
from fractions import Fraction

MAX_CHARS = 300
MAX_DEPTH = 32  # nesting of parentheses; MAX_CHARS also keeps the tree far below the recursion limit
MAX_LITERAL = 10**9

_ALLOWED_CHARS = frozenset("0123456789+-*/() ")
_NORMALIZE = str.maketrans({"×": "*", "÷": "/", "−": "-", "\n": " ", "\t": " ", "\r": " "})
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_SYMBOLS = {ast.Pow: "**", ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.UAdd: "unary +"}


class ExpressionError(ValueError):
    """The text is not an allowed arithmetic expression; the message says why, in words."""


def evaluate_expression(text: str) -> Fraction:
    """The exact value of an arithmetic expression such as `(13 - 7) * (2 + 2)`."""
    try:
        return _evaluate(_parse(text))
    except ZeroDivisionError:
        raise ExpressionError("divides by zero") from None


def numbers_used(text: str) -> list[int]:
    """The numbers an expression uses, in order of appearance: `(5 + 5) * 3` -> [5, 5, 3]."""
    numbers = [node for node in ast.walk(_parse(text)) if isinstance(node, ast.Constant)]
    return [node.value for node in sorted(numbers, key=lambda node: node.col_offset)]


def _parse(text: str) -> ast.expr:
    """The checked syntax tree of `text`; raises ExpressionError before doing any arithmetic."""
    text = text.translate(_NORMALIZE).strip()
    if not text:
        raise ExpressionError("empty")
    if len(text) > MAX_CHARS:
        raise ExpressionError(f"longer than {MAX_CHARS} characters")
    bad = next((char for char in text if char not in _ALLOWED_CHARS), None)
    if bad:
        raise ExpressionError(f"{bad!r} is not allowed; only numbers, + - * / and parentheses")
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} levels deep")
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExpressionError("incomplete or malformed") from None
    _check(tree)
    return tree


def _check(node: ast.AST) -> None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if node.value > MAX_LITERAL:
            raise ExpressionError(f"the number {node.value} is too large (the limit is {MAX_LITERAL})")
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check(node.left)
        _check(node.right)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        _check(node.operand)
    else:
        op = getattr(node, "op", None)
        what = _SYMBOLS.get(type(op), type(node).__name__)
        raise ExpressionError(f"{what} is not allowed; only numbers, + - * / and parentheses")


def _evaluate(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp):
        return -_evaluate(node.operand)
    return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
