"""Host side: what of a test's code may run where, decided before a job is sent.

Two decisions:

- Assert statements that must run inside the sandbox (in multi-statement tests, and in the functions
  of a test's setup, such as HumanEval's ``check(candidate)``) are rewritten: ``assert EXPR`` becomes
  a call of the harness's checker with EXPR's holes as thunks (sandbox/checks.py splits it). The
  checker sends the holes' values out, strictly encoded, and never raises; the host evaluates the
  rest of EXPR on them. So an always-equal object fails there too, and the expected values of those
  asserts never enter the sandbox. The checker is a constant in the compiled code (the harness puts
  its own function where the host wrote ``CHECK_SENTINEL``), not a name the program could rebind.
  An assert inside a ``try`` that catches AssertionError keeps Python's behaviour (it is not
  rewritten: the test relies on the exception); so do asserts directly in a class body and asserts
  with ``:=``.
- Which holes of a host-compared test are "clean": every name they read is bound by the job's setup
  or the test's imports, or is a builtin the program does not rebind at its top level. Those are
  evaluated in a child that runs the setup but never the program, so a program that patches
  ``math``, ``collections`` or the setup's reference function cannot choose the expected value.
"""
from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field
from functools import lru_cache

from common.pyparse import parse

from .checks import TestPlan, _Splitter

CHECK_SENTINEL = "\x00sandbox-check"  # sandbox/harness.py: _CHECK_SENTINEL
BUILTIN_NAMES = frozenset(dir(builtins))
_CATCHES_ASSERT = {"AssertionError", "Exception", "BaseException"}


@dataclass(frozen=True)
class SetupPlan:
    src: str = ""  # the setup with the asserts in its functions rewritten
    names: frozenset[str] | None = frozenset()  # names it binds at top level; None: unknown (star import)
    checks: tuple[ast.expr, ...] = field(default=())  # host side of each rewritten assert ("s<i>")


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self, prefix: str, top_level: bool, shadowed: frozenset[str]) -> None:
        self.prefix, self.checks, self.shadowed = prefix, [], shadowed
        self.depth = 0 if top_level else -1  # asserts are rewritten at depth >= 0 (inside a function)
        self.guarded = 0  # inside a try body that catches AssertionError

    def _function(self, node: ast.AST) -> ast.AST:
        self.depth += 1
        guarded, self.guarded = self.guarded, 0
        self.generic_visit(node)
        self.depth, self.guarded = self.depth - 1, guarded
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.guarded += 1  # a thunk in a class body cannot see the class's names: keep its asserts
        self.generic_visit(node)
        self.guarded -= 1
        return node

    def visit_Try(self, node: ast.Try) -> ast.AST:
        catches = any(h.type is None or any(isinstance(n, ast.Name) and n.id in _CATCHES_ASSERT
                                            for n in ast.walk(h.type)) for h in node.handlers)
        self.guarded += catches
        node.body = [self.visit(s) for s in node.body]
        self.guarded -= catches
        for part in (node.handlers, node.orelse, node.finalbody):
            part[:] = [self.visit(s) for s in part]
        return node

    visit_TryStar = visit_Try

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        if self.depth < 0 or self.guarded or any(isinstance(n, ast.NamedExpr) for n in ast.walk(node)):
            return node  # (a := ...) in a thunk would bind inside the thunk, not for later statements
        splitter = _Splitter("", shadowed=self.shadowed)
        tree = splitter.split_truth(node.test)
        cid = f"{self.prefix}{len(self.checks)}"
        self.checks.append(tree)
        no_args = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])
        truth = ast.Tuple(elts=[ast.Constant(j) for j in sorted(set(splitter.truth))], ctx=ast.Load())
        size, found = (ast.Tuple(elts=[ast.Constant(j) for j in js], ctx=ast.Load())
                       for js in (splitter.size, splitter.found))
        thunks = [ast.Lambda(args=no_args, body=n) for n in splitter.nodes]
        call = ast.Call(func=ast.Constant(CHECK_SENTINEL), args=[ast.Constant(cid), truth, size, found, *thunks],
                        keywords=[])
        return ast.copy_location(ast.Expr(value=call), node)


def rewrite_asserts(src: str, mod: ast.Module, prefix: str, top_level: bool) -> tuple[str, tuple[ast.expr, ...]]:
    """(source with the asserts rewritten, host side of each). ``top_level``: also the module's own
    asserts (a test's body); otherwise only those inside functions (a setup's)."""
    rw = _AssertRewriter(prefix, top_level, _all_bound(mod))
    new = rw.visit(mod)
    if not rw.checks:
        return src, ()
    return ast.unparse(ast.fix_missing_locations(new)), tuple(rw.checks)


@lru_cache(maxsize=1 << 12)
def plan_setup(setup: str) -> SetupPlan:
    """Rewrite a job's setup and name what it binds. Cached: a benchmark's setups repeat."""
    if not setup:
        return SetupPlan()
    try:
        mod = parse(setup)
    except (SyntaxError, ValueError):
        return SetupPlan(src=setup, names=None)  # the child reports the error where it always has
    names = _bound_names(mod.body)
    src, checks = rewrite_asserts(setup, mod, "s", top_level=False)
    return SetupPlan(src=src, names=names, checks=checks)


def _all_bound(mod: ast.Module) -> frozenset[str]:
    """Every name the code binds anywhere (a local ``str`` in a test function is not the builtin)."""
    out = set()
    for n in ast.walk(mod):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
    return frozenset(out)


def _bound_names(body: list[ast.stmt]) -> frozenset[str] | None:
    """Names a module binds at its top level (not inside its functions or classes)."""
    out: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            stack.extend(node.decorator_list)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.name == "*":
                    return None
                out.add((a.asname or a.name).split(".")[0])
            continue
        if isinstance(node, (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)):
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            out.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(out)


class ProgramNames:
    """The builtins' names a program rebinds at top level (``def sum(a, b)``): in its tests those
    names mean the program's. Parsed only when a job has a hole that would otherwise be clean."""

    def __init__(self, program: str) -> None:
        self.program = program
        self._names: frozenset[str] | None = None

    def builtins(self) -> frozenset[str]:
        if self._names is None:
            try:
                mod = parse(self.program)
                bound = _bound_names(mod.body)
                declared = {name for n in ast.walk(mod) if isinstance(n, ast.Global) for name in n.names}
                self._names = BUILTIN_NAMES - (BUILTIN_NAMES if bound is None else bound | declared)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                self._names = frozenset()  # it will not run anyway
        return self._names


def clean_holes(plan: TestPlan, setup: SetupPlan, program: ProgramNames) -> tuple[int, ...]:
    """The holes of a host-compared test that are evaluated without the program (see above)."""
    if plan.mode != "eval" or setup.names is None:
        return ()
    own = setup.names | plan.prelude_names
    out = []
    for j, names in enumerate(plan.names):
        rest = names - own
        if rest <= BUILTIN_NAMES and (not rest or rest <= program.builtins()):
            out.append(j)
    return tuple(out)
