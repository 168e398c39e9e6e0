"""Reading and writing the literal values of EvalPlus' inputs and results, with ``ast`` only."""
from __future__ import annotations

import ast
import math
from typing import Any

from common.pyparse import parse



class _Unconvertible(ValueError):
    pass


_SPECIAL_FLOATS = {"inf": math.inf, "nan": math.nan}


class _Specials(ast.NodeTransformer):
    """Turn ``inf``, ``nan``, ``float('inf')`` and ``complex(a, b)`` into constants for literal_eval."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _SPECIAL_FLOATS:
            return ast.Constant(_SPECIAL_FLOATS[node.id])
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        fn = node.func.id if isinstance(node.func, ast.Name) else None
        args = node.args
        if node.keywords or not all(isinstance(a, ast.Constant) for a in args):
            return node
        if fn == "float" and len(args) == 1 and isinstance(args[0].value, str):
            return ast.Constant(float(args[0].value))
        if fn == "complex" and len(args) == 2 and all(type(a.value) in (int, float) for a in args):
            return ast.Constant(complex(args[0].value, args[1].value))
        return node


def literal(node: ast.AST | str) -> Any:
    """``ast.literal_eval`` that also reads ``inf``, ``nan``, ``float('inf')`` and ``complex(a, b)``."""
    if isinstance(node, str):
        node = parse(node, mode="eval").body
    try:
        return ast.literal_eval(node)
    except ValueError:  # a name or call: rewrite the special values, then try again
        return ast.literal_eval(_Specials().visit(node))


def render(v: Any) -> str:
    """Python source for a literal value (``float('inf')`` where repr would give a bare name)."""
    if v is None or isinstance(v, (bool, int, str, bytes)):
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "float('-inf')"
        return repr(v)
    if isinstance(v, complex):
        if math.isfinite(v.real) and math.isfinite(v.imag):
            return repr(v)
        return f"complex({render(v.real)}, {render(v.imag)})"
    if isinstance(v, list):
        return "[" + ", ".join(render(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(render(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, set):
        return "{" + ", ".join(render(x) for x in v) + "}" if v else "set()"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{render(k)}: {render(x)}" for k, x in v.items()) + "}"
    raise _Unconvertible(f"cannot write a {type(v).__name__} as a literal")


def same_value(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return same_value(a.real, b.real) and same_value(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def _render_checked(v: Any) -> str:
    """``render(v)``, checked to read back as the same value. Text equal to ``repr(v)`` of these literal
    types reads back by Python's repr guarantee; other text (inf, nan, ...) is parsed back and compared."""
    text = render(v)
    if text != repr(v) and not same_value(literal(text), v):
        raise _Unconvertible(f"value does not survive a write/read round trip: {text[:80]}")
    return text
