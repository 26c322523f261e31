"""Evaluate arithmetic written by a model without ever executing it.

Only numbers, + - * / (and the signs × ÷), unary minus and parentheses are
allowed. Anything else (names, calls, attributes, powers, huge inputs) is
refused with :class:`UnsafeExpression`; Python's ``eval`` is never used.
"""

from __future__ import annotations

import ast
import operator

MAX_LENGTH = 200

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class UnsafeExpression(ValueError):
    """The text is not plain arithmetic."""


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    raise UnsafeExpression(f"not allowed in arithmetic: {ast.dump(node)[:60]}")


def evaluate_arithmetic(text: str) -> float:
    """``"( 84.0 / 2.0 )"`` -> 42.0. Raises UnsafeExpression or ZeroDivisionError."""
    if len(text) > MAX_LENGTH:
        raise UnsafeExpression(f"expression longer than {MAX_LENGTH} characters")
    cleaned = text.replace("×", "*").replace("÷", "/").replace(",", "").strip()
    try:
        tree = ast.parse(cleaned, mode="eval")
    except SyntaxError as error:
        raise UnsafeExpression(f"not an arithmetic expression: {text!r}") from error
    return _value(tree.body)


def try_evaluate(text: str) -> float | None:
    """The value of ``text``, or None when it is not safe, valid arithmetic."""
    try:
        return evaluate_arithmetic(text)
    except (UnsafeExpression, ZeroDivisionError, OverflowError, RecursionError):
        return None
