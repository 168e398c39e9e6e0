"""Host side: split each test into what runs inside the sandbox and what is decided outside.

An ``assert`` test is parsed on the host. The parts that need the program (a call of the program's
function, any name, any comprehension: "holes") are sent into the sandbox and evaluated there; the
rest of the assertion (literals, comparison operators, a short list of builtins such as ``sorted``,
``round``, ``set``, ``math.isclose``) stays on the host and is applied to the hole values after they
are decoded into plain Python objects. So for ``assert f(3) == [1, 2]`` only ``f(3)`` enters the
sandbox: the expected value never does, and no object the program made takes part in the
comparison. docs/sandbox.md lists exactly which shapes are checked where.

Tests that are not a single ``assert`` (loops, helper statements) run whole inside the sandbox and
pass when they raise nothing: that check is only as strong as the interpreter the program shares.
"""
from __future__ import annotations

import ast
import collections
import decimal
import fractions
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from .pyparse import parse

_HOLE = "__hole_"
_MAX_INT_BITS = 1 << 17  # results of host arithmetic are capped at 131,072 bits
_MAX_SEQ = 1 << 20  # and sequences at a million items
_MAX_RANGE = 1 << 20
_MAX_DEPTH = 200


def _isclose(a: Any, b: Any, *, rel_tol: float = 1e-9, abs_tol: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


# Functions the host applies itself. Each is cheap and bounded on values of bounded size; none takes
# a callable argument. A test that passes other arguments (sorted(key=...)) keeps the call inside.
_HOST_FUNCS: dict[str, tuple[Any, int, int, frozenset[str]]] = {  # name: (fn, min args, max args, kwargs)
    "abs": (abs, 1, 1, frozenset()), "round": (round, 1, 2, frozenset()), "len": (len, 1, 1, frozenset()),
    "sorted": (sorted, 1, 1, frozenset({"reverse"})), "set": (set, 0, 1, frozenset()),
    "frozenset": (frozenset, 0, 1, frozenset()), "tuple": (tuple, 0, 1, frozenset()),
    "list": (list, 0, 1, frozenset()), "sum": (sum, 1, 1, frozenset()), "min": (min, 1, 64, frozenset()),
    "max": (max, 1, 64, frozenset()), "any": (any, 1, 1, frozenset()), "all": (all, 1, 1, frozenset()),
    "bool": (bool, 0, 1, frozenset()), "int": (int, 0, 1, frozenset()), "float": (float, 0, 1, frozenset()),
    "str": (str, 0, 1, frozenset()), "isinstance": (isinstance, 2, 2, frozenset()), "type": (type, 1, 1, frozenset()),
    "isclose": (_isclose, 2, 2, frozenset({"rel_tol", "abs_tol"})),
    "math.isclose": (_isclose, 2, 2, frozenset({"rel_tol", "abs_tol"})),
    "math.fabs": (math.fabs, 1, 1, frozenset()), "math.floor": (math.floor, 1, 1, frozenset()),
    "math.ceil": (math.ceil, 1, 1, frozenset()),
}
_HOST_NAMES: dict[str, Any] = {
    "int": int, "float": float, "str": str, "list": list, "tuple": tuple, "dict": dict, "set": set,
    "frozenset": frozenset, "bool": bool, "bytes": bytes, "complex": complex,
    "math.pi": math.pi, "math.e": math.e, "math.inf": math.inf, "math.nan": math.nan, "math.tau": math.tau,
}


@dataclass(frozen=True)
class TestPlan:
    """How one test string is checked."""

    mode: Literal["eval", "exec", "invalid"]
    exprs: tuple[str, ...] = ()  # evaluated inside the sandbox, in order
    truth: tuple[int, ...] = ()  # holes sent as bool(value)
    prelude: str = ""  # import statements run inside before the expressions
    tree: ast.expr | None = None  # evaluated on the host with the holes' values
    src: str = ""  # exec mode: the whole test
    error: str = ""

    def to_wire(self, k: int) -> dict:
        if self.mode == "eval":
            return {"k": k, "mode": "eval", "pre": self.prelude, "exprs": list(self.exprs), "truth": list(self.truth)}
        return {"k": k, "mode": "exec", "src": self.src}


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


class _Splitter(ast.NodeTransformer):
    """Replaces every maximal sub-expression the host cannot evaluate by a hole.

    A hole whose value only matters for its truth (``assert f(x)``, ``assert not f(x)``, operands of
    ``and``/``or`` there) is sent as a bool: Python's own semantics, and values such as a re.Match
    that cannot be sent need not be."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.holes: list[str] = []
        self.truth: list[int] = []

    def hole(self, node: ast.expr, truth: bool = False) -> ast.expr:
        name = f"{_HOLE}{len(self.holes)}"
        if truth:
            self.truth.append(len(self.holes))
        # the hole's own text (cheaper than unparsing); a multi-line one is parenthesised to stand alone
        segment = ast.get_source_segment(self.source, node)
        if segment is None:
            segment = ast.unparse(node)
        self.holes.append(f"({segment})" if "\n" in segment else segment)
        return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    def split_truth(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            node.operand = self.split_truth(node.operand)
            return node
        if isinstance(node, ast.BoolOp):
            node.values = [self.split_truth(v) for v in node.values]
            return node
        out = self.split(node)
        if isinstance(out, ast.Name) and out.id == f"{_HOLE}{len(self.holes) - 1}" and out is not node:
            self.truth.append(len(self.holes) - 1)
        return out

    def split(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant):
            return node
        if isinstance(node, (ast.Name, ast.Attribute)) and _dotted(node) in _HOST_NAMES:
            return node
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            if any(isinstance(e, ast.Starred) for e in node.elts):
                return self.hole(node)
            node.elts = [self.split(e) for e in node.elts]
            return node
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                return self.hole(node)
            node.keys = [self.split(k) for k in node.keys]  # type: ignore[misc]
            node.values = [self.split(v) for v in node.values]
            return node
        if isinstance(node, ast.UnaryOp):
            node.operand = self.split(node.operand)
            return node
        if isinstance(node, ast.BinOp) and isinstance(node.op, _BINOPS):
            node.left, node.right = self.split(node.left), self.split(node.right)
            return node
        if isinstance(node, ast.BoolOp):
            node.values = [self.split(v) for v in node.values]
            return node
        if isinstance(node, ast.Compare):
            node.left = self.split(node.left)
            node.comparators = [self.split(c) for c in node.comparators]
            return node
        if isinstance(node, ast.Call):
            spec = _HOST_FUNCS.get(_dotted(node.func) or "")
            # A generator expression or lambda is no value: the call that consumes it stays inside.
            inner = (ast.Starred, ast.GeneratorExp, ast.Lambda)
            if (spec and spec[1] <= len(node.args) <= spec[2] and not any(isinstance(a, inner) for a in node.args)
                    and all(kw.arg in spec[3] and not isinstance(kw.value, inner) for kw in node.keywords)):
                node.args = [self.split(a) for a in node.args]
                for kw in node.keywords:
                    kw.value = self.split(kw.value)
                return node
        return self.hole(node)


_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


@lru_cache(maxsize=1 << 16)
def plan_test(src: str) -> TestPlan:
    """Decide how a test string is checked. Cached: the same tests come back every epoch."""
    try:
        mod = parse(src)
    except (SyntaxError, ValueError) as e:
        return TestPlan("invalid", error=f"test does not parse: {e}")
    body = mod.body
    imports = [s for s in body[:-1] if isinstance(s, (ast.Import, ast.ImportFrom))]
    if body and isinstance(body[-1], ast.Assert) and len(imports) == len(body) - 1:
        splitter = _Splitter(src)
        tree = splitter.split_truth(body[-1].test)
        prelude = "\n".join(ast.get_source_segment(src, s) or ast.unparse(s) for s in imports)
        return TestPlan("eval", exprs=tuple(splitter.holes), truth=tuple(sorted(set(splitter.truth))),
                        prelude=prelude, tree=tree)
    return TestPlan("exec", src=src)


# ----------------------------------------------------------------------------- host evaluation
class HostEvalError(Exception):
    pass


def _check_int(v: Any) -> Any:
    if isinstance(v, int) and v.bit_length() > _MAX_INT_BITS:
        raise HostEvalError("integer result too large to compare")
    return v


def _binop(op: ast.operator, a: Any, b: Any) -> Any:
    num = (int, float, complex, decimal.Decimal, fractions.Fraction)
    if isinstance(op, ast.Pow):
        if not (isinstance(a, num) and isinstance(b, num)):
            raise HostEvalError("** on non-numbers")
        if isinstance(a, int) and isinstance(b, int) and b > 0 and a not in (0, 1, -1) \
                and b * max(a.bit_length(), 1) > _MAX_INT_BITS:
            raise HostEvalError("power too large to compare")
        return _check_int(a ** b)
    if isinstance(op, ast.Mult):
        for seq, n in ((a, b), (b, a)):
            if isinstance(n, int) and isinstance(seq, (str, bytes, list, tuple)):
                if len(seq) * max(n, 0) > _MAX_SEQ:
                    raise HostEvalError("repeated sequence too long")
                return seq * n
        if not (isinstance(a, num) and isinstance(b, num)):
            raise HostEvalError("* on non-numbers")
        return _check_int(a * b)
    if isinstance(op, ast.Mod) and not (isinstance(a, num) and isinstance(b, num)):
        raise HostEvalError("% is only applied to numbers on the host")
    fn = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Div: lambda: a / b,
          ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b}[type(op)]
    return _check_int(fn())


_CMP = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
        ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


def host_eval(node: ast.expr, values: list[Any]) -> Any:
    """Evaluate a split assertion on decoded values, with Python's semantics for builtin types."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id.startswith(_HOLE):
        return values[int(node.id[len(_HOLE):])]
    dotted = _dotted(node)
    if dotted in _HOST_NAMES:
        return _HOST_NAMES[dotted]
    if isinstance(node, ast.Tuple):
        return tuple(host_eval(e, values) for e in node.elts)
    if isinstance(node, ast.List):
        return [host_eval(e, values) for e in node.elts]
    if isinstance(node, ast.Set):
        return {host_eval(e, values) for e in node.elts}
    if isinstance(node, ast.Dict):
        return {host_eval(k, values): host_eval(v, values) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp):
        v = host_eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not v
        if isinstance(node.op, ast.USub):
            return -v
        if isinstance(node.op, ast.UAdd):
            return +v
        return ~v
    if isinstance(node, ast.BinOp):
        return _binop(node.op, host_eval(node.left, values), host_eval(node.right, values))
    if isinstance(node, ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        v: Any = None
        for sub in node.values:
            v = host_eval(sub, values)
            if bool(v) != is_and:
                return v
        return v
    if isinstance(node, ast.Compare):
        left = host_eval(node.left, values)
        for op, comp in zip(node.ops, node.comparators):
            right = host_eval(comp, values)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        fn = _HOST_FUNCS[_dotted(node.func)][0]  # type: ignore[index]
        args = [host_eval(a, values) for a in node.args]
        kwargs = {kw.arg: host_eval(kw.value, values) for kw in node.keywords}
        return fn(*args, **kwargs)  # type: ignore[arg-type]
    raise HostEvalError(f"cannot evaluate {type(node).__name__} on the host")


# ----------------------------------------------------------------------------- value decoding
class DecodeError(Exception):
    pass


class IteratorValue:
    """An iterator the program returned, materialised inside the sandbox. Like the iterator it
    stands for, it equals only itself, but list(), sorted(), sum() etc. consume its items."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)

    def __repr__(self) -> str:
        return f"<iterator over {self.items!r}>"


def decode_value(payload: bytes) -> Any:
    """Rebuild a value sent by the sandbox as plain Python objects; anything unexpected is refused."""
    try:
        raw = json.loads(payload)
        return _dec(raw, 0)
    except DecodeError:
        raise
    except (ValueError, TypeError, RecursionError, OverflowError) as e:
        raise DecodeError(f"malformed value: {type(e).__name__}: {str(e)[:100]}") from None


def _dec(o: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise DecodeError("value nested too deeply")
    t = type(o)
    if o is None or t in (bool, int, str, float):
        return o
    if t is list:
        return [_dec(x, depth + 1) for x in o]
    if t is not dict or len(o) != 1:
        raise DecodeError("unknown value encoding")
    (tag, v), = o.items()
    if tag == "i":
        if not isinstance(v, str) or len(v) > _MAX_INT_BITS // 4 + 4:
            raise DecodeError("bad integer")
        return int(v, 16)
    if tag == "f":
        return float.fromhex(v)
    if tag == "c":
        return complex(float.fromhex(v[0]), float.fromhex(v[1]))
    if tag == "b":
        return bytes.fromhex(v)
    if tag == "ba":
        return bytearray.fromhex(v)
    if tag == "dec":
        return decimal.Decimal(v)
    if tag == "fr":
        return fractions.Fraction(int(v[0], 16), int(v[1], 16))
    if tag == "r":
        r = range(*(int(x) for x in v))
        if len(r) > _MAX_RANGE:
            raise DecodeError("range too long to compare")
        return r
    if not isinstance(v, list):
        raise DecodeError("bad container")
    if tag == "t":
        return tuple(_dec(x, depth + 1) for x in v)
    if tag == "s":
        return {_dec(x, depth + 1) for x in v}
    if tag == "fs":
        return frozenset(_dec(x, depth + 1) for x in v)
    if tag == "it":
        return IteratorValue([_dec(x, depth + 1) for x in v])
    if tag == "dq":
        return collections.deque(_dec(x, depth + 1) for x in v)
    if tag in ("d", "od", "ctr"):
        pairs = [(_dec(kv[0], depth + 1), _dec(kv[1], depth + 1)) for kv in v]
        if tag == "ctr":
            return collections.Counter(dict(pairs))
        return collections.OrderedDict(pairs) if tag == "od" else dict(pairs)
    raise DecodeError(f"unknown value tag {tag!r}")
