"""Host side: split each test into what runs inside the sandbox and what is decided outside.

An ``assert`` test is parsed on the host. The parts that need the program (a call of the program's
function, any name, any comprehension: "holes") are sent into the sandbox and evaluated there; the
rest of the assertion (literals, comparison operators, a short list of builtins such as ``sorted``,
``round``, ``set``, ``math.isclose``) stays on the host and is applied to the hole values after they
are decoded into plain Python objects. So for ``assert f(3) == [1, 2]`` only ``f(3)`` enters the
sandbox: the expected value never does, and no object the program made takes part in the
comparison. docs/sandbox.md lists exactly which shapes are checked where.

Holes that need only the test's setup and imports (``math.sqrt(25)``, ``ref_func(3)``) are "clean":
they are evaluated in a child that never runs the program (sandbox/rewrite.py decides which).
``all(...)``/``any(...)`` over a comprehension send the comparison operands of every item, and the
host applies all/any. Tests that are not a single ``assert`` run inside the sandbox, with each
``assert`` statement in them (and in the setup's functions) rewritten so that its operands are sent
out and compared here (sandbox/rewrite.py).
"""
from __future__ import annotations

import ast
import decimal
import fractions
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from common.pyparse import parse

from . import oracles
from .codec import (DecodeError, HoleRaised, IteratorValue, RaisedValue, check_hashes,  # noqa: F401
                    decode_value)

_HOLE = "__hole_"
_SUB = "__sub_"  # a hole inside an all()/any() item: one value per item
_MAX_INT_BITS = 1 << 20  # results of host arithmetic are capped at 1,048,576 bits
_MAX_SEQ = 1 << 20  # and sequences at a million items
_MAX_SUM_WORK = 50_000_000  # bits of all partial sums of one sum(): well under a second
TRY_SENTINEL = "\x00sandbox-try"  # sandbox/harness.py replaces this constant by its own function


def _isclose(a: Any, b: Any, *, rel_tol: float = 1e-9, abs_tol: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def _round(x: Any, ndigits: Any = None) -> Any:
    if isinstance(ndigits, int) and abs(ndigits) > 10_000:
        raise HostEvalError("round() to more than 10,000 digits")
    return round(x) if ndigits is None else round(x, ndigits)


def _set(x: Any = ()) -> set:
    return set(check_hashes(x))


def _frozenset(x: Any = ()) -> frozenset:
    return frozenset(check_hashes(x))


def _sum(items: Any) -> Any:
    """sum(), with every partial result and the total work bounded (a sum of Fractions grows)."""
    total: Any = 0
    work = 0
    for x in items:
        total = _check_int(total + x)
        work += _bits(total)
        if work > _MAX_SUM_WORK:
            raise HostEvalError("sum too costly to compute on the host")
    return total


def _evalplus_check(out: Any, exp: Any, atol: Any, as_sets: bool = False) -> bool:
    if as_sets:
        check_hashes(out), check_hashes(exp)
    return oracles._evalplus_check(out, exp, atol, as_sets=as_sets)


# Functions the host applies itself. Each is cheap and bounded on values of bounded size; none takes
# a callable argument. A test that passes other arguments (sorted(key=...)) keeps the call inside.
_HOST_FUNCS: dict[str, tuple[Any, int, int, frozenset[str]]] = {  # name: (fn, min args, max args, kwargs)
    "abs": (abs, 1, 1, frozenset()), "round": (_round, 1, 2, frozenset()), "len": (len, 1, 1, frozenset()),
    "sorted": (sorted, 1, 1, frozenset({"reverse"})), "set": (_set, 0, 1, frozenset()),
    "frozenset": (_frozenset, 0, 1, frozenset()), "tuple": (tuple, 0, 1, frozenset()),
    "list": (list, 0, 1, frozenset()), "sum": (_sum, 1, 1, frozenset()), "min": (min, 1, 64, frozenset()),
    "max": (max, 1, 64, frozenset()), "any": (any, 1, 1, frozenset()), "all": (all, 1, 1, frozenset()),
    "bool": (bool, 0, 1, frozenset()), "int": (int, 0, 1, frozenset()), "float": (float, 0, 1, frozenset()),
    "str": (str, 0, 1, frozenset()), "isinstance": (isinstance, 2, 2, frozenset()), "type": (type, 1, 1, frozenset()),
    "isclose": (_isclose, 2, 2, frozenset({"rel_tol", "abs_tol"})),
    "math.isclose": (_isclose, 2, 2, frozenset({"rel_tol", "abs_tol"})),
    "math.fabs": (math.fabs, 1, 1, frozenset()), "math.floor": (math.floor, 1, 1, frozenset()),
    "math.ceil": (math.ceil, 1, 1, frozenset()),
    # EvalPlus' oracles as data_prep/benchmarks/plus.py writes them, and numpy's tolerance checks
    "_evalplus_check": (_evalplus_check, 3, 4, frozenset({"as_sets"})),
    "_evalplus_found": (oracles._evalplus_found, 1, 1, frozenset()),
    "_evalplus_poly": (oracles._evalplus_poly, 2, 2, frozenset()),
    "_evalplus_surface_area": (oracles._evalplus_surface_area, 2, 2, frozenset()),
    "_evalplus_digit_distance": (oracles._evalplus_digit_distance, 2, 2, frozenset()),
}
for _np in ("np", "numpy"):
    for _name, _fn in (("allclose", oracles.allclose), ("isclose", oracles.isclose)):
        _HOST_FUNCS[f"{_np}.{_name}"] = (_fn, 2, 2, frozenset({"rtol", "atol", "equal_nan"}))
_TYPE_TESTS = ("isinstance", "issubclass")  # their second argument must be a type the host knows
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
    size: tuple[int, ...] = ()  # holes sent as len(value) (only their length is used)
    found: tuple[int, ...] = ()  # holes sent as _evalplus_found(value): a bool stays, else `is not None`
    names: tuple[frozenset[str], ...] = ()  # the free names of each hole
    prelude: str = ""  # import statements run inside before the expressions
    prelude_names: frozenset[str] = frozenset()  # what they bind
    tree: ast.expr | None = None  # evaluated on the host with the holes' values
    src: str = ""  # exec mode: the test, its assert statements rewritten (sandbox/rewrite.py)
    checks: tuple[ast.expr, ...] = ()  # exec mode: the host side of each rewritten assert ("t<i>")
    error: str = ""
    # (hole, bytes) for `assert HOLE == LITERAL` and `_evalplus_check(HOLE, LITERAL, atol)`: a value sent
    # as exactly the literal's encoding passes without being decoded (see ``equal_payload``)
    equal_payload: tuple[int, bytes] | None = None
    # (a, b) for `assert HOLE_a == HOLE_b` and `_evalplus_check(HOLE_a, HOLE_b, atol)` (a reference function's
    # value as the expected one): two equal payloads of plain JSON pass undecoded (see ``equal_holes``)
    equal_holes: tuple[int, int] | None = None

    def to_wire(self, k: int, clean: tuple[int, ...] = ()) -> dict:
        if self.mode == "eval":
            return {"k": k, "mode": "eval", "pre": self.prelude, "exprs": list(self.exprs), "truth": list(self.truth),
                    "size": list(self.size), "found": list(self.found), "clean": list(clean)}
        return {"k": k, "mode": "exec", "src": self.src}


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def free_names(node: ast.AST) -> frozenset[str]:
    """Names an expression reads from outside itself (comprehension targets and lambda arguments
    are its own). An over-estimate is safe: it only keeps a hole in the program's child."""
    loads, own = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else own).add(n.id)
        elif isinstance(n, ast.arg):
            own.add(n.arg)
    return frozenset(loads - own)


def _is_host_type(node: ast.expr) -> bool:
    if isinstance(node, ast.Tuple):
        return all(_is_host_type(e) for e in node.elts)
    return isinstance(node, (ast.Name, ast.Attribute)) and _dotted(node) in _HOST_NAMES


class _Splitter(ast.NodeTransformer):
    """Replaces every maximal sub-expression the host cannot evaluate by a hole.

    A hole whose value only matters for its truth (``assert f(x)``, ``assert not f(x)``, operands of
    ``and``/``or`` there) is sent as a bool: Python's own semantics, and values such as a re.Match
    that cannot be sent need not be. ``len(hole)`` sends only the length. ``all``/``any`` of a
    comprehension become one hole that sends the operands of each item (``comprehensions=False``
    inside such an item)."""

    def __init__(self, source: str, prefix: str = _HOLE, comprehensions: bool = True,
                 shadowed: frozenset[str] = frozenset()) -> None:
        self.source, self.prefix, self.comprehensions = source, prefix, comprehensions
        self.shadowed = shadowed  # names the surrounding code binds: there they are not the builtins
        self.holes: list[str] = []
        self.nodes: list[ast.expr] = []  # each hole's node, before any rewriting
        self.truth: list[int] = []
        self.size: list[int] = []
        self.found: list[int] = []

    def _text(self, node: ast.expr) -> str:
        segment = ast.get_source_segment(self.source, node) if self.source else None
        if segment is None:
            segment = ast.unparse(node)
        # a multi-line one is parenthesised to stand alone
        return f"({segment})" if "\n" in segment else segment

    def hole(self, node: ast.expr, truth: bool = False, text: str | None = None) -> ast.expr:
        name = f"{self.prefix}{len(self.holes)}"
        if truth:
            self.truth.append(len(self.holes))
        self.holes.append(text if text is not None else self._text(node))
        self.nodes.append(node)
        return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    def _is_new_hole(self, out: ast.expr, node: ast.expr) -> bool:
        return isinstance(out, ast.Name) and out.id == f"{self.prefix}{len(self.holes) - 1}" and out is not node

    def split_truth(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            node.operand = self.split_truth(node.operand)
            return node
        if isinstance(node, ast.BoolOp):
            node.values = [self.split_truth(v) for v in node.values]
            return node
        out = self.split(node)
        if self._is_new_hole(out, node) and len(self.holes) - 1 not in self.size + self.found:
            self.truth.append(len(self.holes) - 1)
        return out

    def split(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant):
            return node
        if isinstance(node, (ast.Name, ast.Attribute)) and self._host(node, _HOST_NAMES):
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
            name = (_dotted(node.func) or "") if self._host(node.func, _HOST_FUNCS) else ""
            if (self.comprehensions and name in ("all", "any") and len(node.args) == 1 and not node.keywords
                    and isinstance(node.args[0], (ast.GeneratorExp, ast.ListComp))):
                return self.comprehension(node, name)
            spec = _HOST_FUNCS.get(name)
            # A generator expression or lambda is no value: the call that consumes it stays inside.
            inner = (ast.Starred, ast.GeneratorExp, ast.Lambda)
            if name in _TYPE_TESTS and len(node.args) == 2 and not (
                    _is_host_type(node.args[1]) and not free_names(node.args[1]) & self.shadowed):
                spec = None  # isinstance(x, ProgramClass): a question only the program's process can answer
            if (spec and spec[1] <= len(node.args) <= spec[2] and not any(isinstance(a, inner) for a in node.args)
                    and all(kw.arg in spec[3] and not isinstance(kw.value, inner) for kw in node.keywords)):
                if name in ("len", "_evalplus_found") and not node.keywords:
                    arg = node.args[0]
                    out = self.split(arg)
                    if self._is_new_hole(out, arg):  # len(hole): the hole sends its length
                        (self.size if name == "len" else self.found).append(len(self.holes) - 1)
                        return out
                    node.args = [out]
                    return node
                node.args = [self.split(a) for a in node.args]
                for kw in node.keywords:
                    kw.value = self.split(kw.value)
                return node
        return self.hole(node)

    def _host(self, node: ast.expr, table: dict) -> bool:
        name = _dotted(node)
        if name is None or name.split(".")[0] in self.shadowed:
            return False
        return name in table

    def comprehension(self, node: ast.Call, name: str) -> ast.expr:
        """``all(ELT for T in IT if C)``: one hole evaluates, for every item, the holes of ELT (each
        as its value or the exception it raised); the host applies ELT and all/any to them."""
        comp = node.args[0]
        sub = _Splitter("", prefix=_SUB, comprehensions=False, shadowed=self.shadowed
                        | {n.id for g in comp.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)})
        elt = sub.split_truth(comp.elt)
        thunks = [ast.Call(func=ast.Constant(TRY_SENTINEL), keywords=[], args=[
            ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
                       body=n), ast.Constant(int(j in sub.truth))]) for j, n in enumerate(sub.nodes)]
        items = ast.ListComp(elt=ast.Tuple(elts=thunks, ctx=ast.Load()), generators=comp.generators)
        text = ast.unparse(ast.fix_missing_locations(items))
        ref = self.hole(node, text=text)
        self.nodes[-1] = items  # what the hole reads (for sandbox/rewrite.py's clean test)
        return ast.copy_location(ast.Call(func=ast.Name(id=f"__comp_{name}", ctx=ast.Load()), args=[ref, elt],
                                          keywords=[]), node)


_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


def _import_names(stmts: list[ast.stmt]) -> frozenset[str]:
    return frozenset((a.asname or a.name).split(".")[0] for s in stmts for a in s.names  # type: ignore[attr-defined]
                     if a.name != "*")


@lru_cache(maxsize=1 << 16)
def plan_test(src: str) -> TestPlan:
    """Decide how a test string is checked. Cached: the same tests come back every epoch."""
    from .rewrite import rewrite_asserts

    try:
        mod = parse(src)
    except (SyntaxError, ValueError) as e:
        return TestPlan("invalid", error=f"test does not parse: {e}")
    body = mod.body
    imports = [s for s in body[:-1] if isinstance(s, (ast.Import, ast.ImportFrom))]
    if body and isinstance(body[-1], ast.Assert) and len(imports) == len(body) - 1:
        splitter = _Splitter(src)
        tree = splitter.split_truth(body[-1].test)
        star = any(a.name == "*" for s in imports for a in s.names)
        names = tuple(free_names(n) | ({"*"} if star else set()) for n in splitter.nodes)
        used = frozenset().union(*names)
        # imports only the host side uses (``import numpy as np`` for np.allclose) do not run inside
        imports = [s for s in imports if star or _import_names([s]) & used]
        prelude = "\n".join(ast.get_source_segment(src, s) or ast.unparse(s) for s in imports)
        return TestPlan("eval", exprs=tuple(splitter.holes), truth=tuple(sorted(set(splitter.truth))),
                        size=tuple(splitter.size), found=tuple(splitter.found), names=names, prelude=prelude,
                        prelude_names=_import_names(imports), tree=tree,
                        equal_payload=equal_payload(tree) if len(splitter.holes) == 1 else None,
                        equal_holes=equal_holes(tree) if len(splitter.holes) == 2 else None)
    rewritten, checks = rewrite_asserts(src, mod, "t", top_level=True)
    return TestPlan("exec", src=rewritten, checks=checks)


def equal_payload(tree: ast.expr) -> tuple[int, bytes] | None:
    """For a test of one hole that is ``HOLE == LITERAL`` (either side) or ``_evalplus_check(HOLE,
    LITERAL, ATOL)``: the hole and the literal's encoding, as the sandbox would send an equal value.

    Equal bytes decode to the same plain value, and ``==`` holds between the two decodings, because a
    literal holds none of the values that are not equal to themselves (NaN, iterators, dict views,
    raised values): the host can pass the test without decoding, which is most of its work for a correct
    program on HumanEval+. EvalPlus' check returns True when ``out == exp`` before it looks at the
    tolerance. Any other payload is decoded and evaluated in full."""
    hole = lit = None
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and isinstance(tree.ops[0], ast.Eq):
        a, b = tree.left, tree.comparators[0]
        hole, lit = (a, b) if _hole_index(a) is not None else (b, a)
    elif (isinstance(tree, ast.Call) and _dotted(tree.func) == "_evalplus_check" and len(tree.args) == 3
          and not tree.keywords):
        hole, lit = tree.args[0], tree.args[1]
    j = _hole_index(hole) if hole is not None else None
    if j is None:
        return None
    from .harness import UnencodableValue, ValueTooLarge, encode_value

    try:
        value = ast.literal_eval(lit)
        payload = encode_value(value, 1 << 24)
        ok = _reflexive(value) and _same(decode_value(payload), value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, DecodeError, UnencodableValue,
            ValueTooLarge):
        return None
    return (j, payload) if ok else None


def equal_holes(tree: ast.expr) -> tuple[int, int] | None:
    """For ``HOLE_a == HOLE_b`` or ``_evalplus_check(HOLE_a, HOLE_b, LITERAL)`` (HumanEval+/MBPP+ tests whose
    expected value is ``ref_func(x)``): the two holes. ``plain_equal`` says when their payloads decide the test."""
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and isinstance(tree.ops[0], ast.Eq):
        a, b = tree.left, tree.comparators[0]
    elif (isinstance(tree, ast.Call) and _dotted(tree.func) == "_evalplus_check" and len(tree.args) == 3
          and not tree.keywords):
        a, b = tree.args[0], tree.args[1]
        try:
            ast.literal_eval(tree.args[2])
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    else:
        return None
    ia, ib = _hole_index(a), _hole_index(b)
    return (ia, ib) if ia is not None and ib is not None and ia != ib else None


def plain_equal(a: object, b: object) -> bool:
    """Two hole payloads that are the same bytes of plain JSON (lists, strings, numbers, booleans, null: no
    ``{``, so no tagged value): they decode to equal values (no NaN is plain JSON from the sandbox's
    encoder), and decoding them cannot fail."""
    return type(a) is bytes and a == b and b"{" not in a and b"NaN" not in a  # type: ignore[operator]


def _hole_index(node: ast.expr) -> int | None:
    if isinstance(node, ast.Name) and node.id.startswith(_HOLE):
        return int(node.id[len(_HOLE):])
    return None


def _reflexive(v: Any) -> bool:
    if isinstance(v, (float, complex)):
        return v == v
    if isinstance(v, (list, tuple, set, frozenset)):
        return all(_reflexive(x) for x in v)
    if isinstance(v, dict):
        return all(_reflexive(k) and _reflexive(x) for k, x in v.items())
    return v is None or isinstance(v, (bool, int, str, bytes))


def _same(a: Any, b: Any) -> bool:
    """a == b with the same types throughout (1 and True, 1 and 1.0 are equal but not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(x, b[k]) for k, x in a.items())
    return a == b


# ----------------------------------------------------------------------------- host evaluation
class HostEvalError(Exception):
    pass


def _bits(v: Any) -> int:
    if isinstance(v, fractions.Fraction):
        return v.numerator.bit_length() + v.denominator.bit_length()
    return v.bit_length() if isinstance(v, int) else 0


def _check_int(v: Any) -> Any:
    if _bits(v) > _MAX_INT_BITS:
        raise HostEvalError("integer result too large to compare")
    return v



def _bounded_cost(op: ast.operator, a: Any, b: Any) -> None:
    """Refuse exact arithmetic that would cost more than about a second before doing it."""
    ba, bb = _bits(a), _bits(b)
    if isinstance(op, ast.Mult) and ba + bb > _MAX_INT_BITS:
        raise HostEvalError("product too large to compare")
    if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and (ba // 30 + 1) * (bb // 30 + 1) > 10 ** 8:
        raise HostEvalError("division too costly to compute on the host")
    if (isinstance(a, fractions.Fraction) or isinstance(b, fractions.Fraction)) and max(ba, bb) > 1 << 17:
        raise HostEvalError("fraction too large to compute with on the host")


def _binop(op: ast.operator, a: Any, b: Any) -> Any:
    num = (int, float, complex, decimal.Decimal, fractions.Fraction)
    _bounded_cost(op, a, b)
    if isinstance(op, ast.Pow):
        if not (isinstance(a, num) and isinstance(b, num)):
            raise HostEvalError("** on non-numbers")
        if isinstance(a, (int, fractions.Fraction)) and isinstance(b, int) and a not in (0, 1, -1) \
                and (b > 0 or isinstance(a, fractions.Fraction)) and abs(b) * max(_bits(a), 1) > _MAX_INT_BITS:
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


def host_eval(node: ast.expr, values: list[Any], sub: tuple | None = None) -> Any:
    """Evaluate a split assertion on decoded values, with Python's semantics for builtin types. A hole
    that raised inside raises ``HoleRaised`` here, when (and only when) its value is needed."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id.startswith(_HOLE):
        return _needed(values[int(node.id[len(_HOLE):])])
    if isinstance(node, ast.Name) and node.id.startswith(_SUB) and sub is not None:
        return _needed(sub[int(node.id[len(_SUB):])])
    dotted = _dotted(node)
    if dotted in _HOST_NAMES:
        return _HOST_NAMES[dotted]
    if isinstance(node, ast.Tuple):
        return tuple(host_eval(e, values, sub) for e in node.elts)
    if isinstance(node, ast.List):
        return [host_eval(e, values, sub) for e in node.elts]
    if isinstance(node, ast.Set):
        return _set(host_eval(e, values, sub) for e in node.elts)
    if isinstance(node, ast.Dict):
        keys = check_hashes(host_eval(k, values, sub) for k in node.keys)  # type: ignore[arg-type]
        return dict(zip(keys, [host_eval(v, values, sub) for v in node.values]))
    if isinstance(node, ast.UnaryOp):
        v = host_eval(node.operand, values, sub)
        if isinstance(node.op, ast.Not):
            return not v
        if isinstance(node.op, ast.USub):
            return -v
        if isinstance(node.op, ast.UAdd):
            return +v
        return ~v
    if isinstance(node, ast.BinOp):
        return _binop(node.op, host_eval(node.left, values, sub), host_eval(node.right, values, sub))
    if isinstance(node, ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        v: Any = None
        for part in node.values:
            v = host_eval(part, values, sub)
            if bool(v) != is_and:
                return v
        return v
    if isinstance(node, ast.Compare):
        left = host_eval(node.left, values, sub)
        for op, comp in zip(node.ops, node.comparators):
            right = host_eval(comp, values, sub)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("__comp_all", "__comp_any"):
        items, elt = host_eval(node.args[0], values, sub), node.args[1]
        if not isinstance(items, list) or not all(isinstance(t, tuple) for t in items):
            raise HostEvalError("malformed comprehension items")
        truths = (bool(host_eval(elt, values, t)) for t in items)
        return all(truths) if node.func.id == "__comp_all" else any(truths)
    if isinstance(node, ast.Call):
        fn = _HOST_FUNCS[_dotted(node.func)][0]  # type: ignore[index]
        args = [host_eval(a, values, sub) for a in node.args]
        kwargs = {kw.arg: host_eval(kw.value, values, sub) for kw in node.keywords}
        return fn(*args, **kwargs)  # type: ignore[arg-type]
    raise HostEvalError(f"cannot evaluate {type(node).__name__} on the host")


def _needed(v: Any) -> Any:
    if isinstance(v, RaisedValue):
        raise HoleRaised(v)
    return v
