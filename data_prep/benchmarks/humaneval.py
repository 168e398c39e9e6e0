"""HumanEval: ``check(candidate)`` split into one assert per test, or ``check(ENTRY)`` when it cannot be."""
from __future__ import annotations

import ast
import logging
import os

from common.schema import AceCodeRecord

from .files import _parse, read_jsonl, data_file

log = logging.getLogger(__name__)


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            return ast.copy_location(ast.Name(id=self.new, ctx=node.ctx), node)
        return node


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _assigned(node: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} | {
        (a.asname or a.name).split(".")[0] for a in getattr(node, "names", [])
        if isinstance(node, (ast.Import, ast.ImportFrom))}


def split_check(test_src: str, entry_point: str) -> tuple[str | None, list[str]] | None:
    """Split HumanEval's ``def check(candidate)`` into (setup, one assert per test), or None.

    Asserts that mention the candidate become tests with ``candidate`` renamed to ``entry_point``;
    constant asserts (``assert True``) are dropped; imports and assignments that do not involve the
    candidate move to the setup, after the module-level code (minus the unused ``METADATA``). Any
    other statement (loops, statements using the candidate, ...) makes the check unsplittable: None.
    """
    module = _parse(test_src)
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or len(checks[0].args.args) != 1:
        return None
    check = checks[0]
    cand = check.args.args[0].arg
    setup_stmts: list[ast.stmt] = []
    for node in module.body:
        if node is check:
            continue
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["METADATA"]
                and "METADATA" not in _names(check)):
            continue
        setup_stmts.append(node)
    tests: list[str] = []
    read_by_tests: set[str] = set()
    for stmt in check.body:
        uses_cand = cand in _names(stmt)
        if isinstance(stmt, ast.Assert):
            if not uses_cand:
                if isinstance(stmt.test, ast.Constant) and stmt.test.value:
                    continue  # assert True: tests nothing
                return None
            renamed = _Rename(cand, entry_point).visit(stmt)
            tests.append(ast.unparse(ast.fix_missing_locations(renamed)))
            read_by_tests |= _names(stmt)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Name, ast.Constant)) and not uses_cand:
            continue  # a bare name or docstring: no effect
        elif (isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign))
              and not uses_cand and not (_assigned(stmt) & read_by_tests)):
            setup_stmts.append(stmt)
        else:
            return None
    if not tests:
        return None
    setup = "\n".join(ast.unparse(s) for s in setup_stmts).strip()
    return (setup or None), tests


def load_humaneval(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """HumanEval (164 tasks). ``extra['test_conversion']`` says ``split`` or ``check_fallback``."""
    recs = []
    for row in read_jsonl(data_file("HumanEval.jsonl.gz", data_dir)):
        ep = row["entry_point"]
        split = split_check(row["test"], ep)
        if split is not None:
            setup, tests = split
            how = "split"
        else:
            setup, tests, how = row["test"].strip(), [f"check({ep})"], "check_fallback"
        recs.append(AceCodeRecord(
            id=f"humaneval_{row['task_id'].split('/')[1]}", source="humaneval", question=row["prompt"],
            test_cases=tests, test_setup=setup, entry_point=ep,
            canonical_solution=row["prompt"] + row["canonical_solution"], extra={"test_conversion": how}))
    n_fallback = sum(r.extra["test_conversion"] == "check_fallback" for r in recs)
    log.info("humaneval: %d tasks, %d split into asserts, %d fall back to check(ENTRY)",
             len(recs), len(recs) - n_fallback, n_fallback)
    return recs
