"""MBPP and sanitized MBPP: the dataset's own asserts are the tests."""
from __future__ import annotations

import ast
import json
import os

from common.schema import AceCodeRecord

from .files import _nl, _parse, read_jsonl, data_file


def _entry_point(code: str, tests: list[str]) -> str | None:
    """The function the tests call: the first called name that the program defines at top level."""
    try:
        defined = {n.name for n in _parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    except SyntaxError:
        defined = set()
    called: list[str] = []
    for t in tests:
        for node in ast.walk(_parse(t)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in called:
                called.append(node.func.id)
    for name in called:
        if name in defined:
            return name
    return None


def load_mbpp(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """MBPP, full (974 tasks): ``text``, ``code``, ``test_list``; ``challenge_test_list`` kept apart."""
    recs = []
    for row in read_jsonl(data_file("mbpp.jsonl", data_dir)):
        code = _nl(row["code"])
        tests = [_nl(t).strip() for t in row["test_list"]]
        challenge = [_nl(t).strip() for t in row["challenge_test_list"]]
        setup = _nl(row["test_setup_code"]).strip()
        recs.append(AceCodeRecord(
            id=f"mbpp_{row['task_id']}", source="mbpp", question=_nl(row["text"]).strip(),
            test_cases=tests, challenge_test_cases=challenge or None, test_setup=setup or None,
            entry_point=_entry_point(code, tests), canonical_solution=code))
    return recs


def load_mbpp_sanitized(data_dir: str | os.PathLike | None = None) -> list[AceCodeRecord]:
    """Sanitized MBPP (427 tasks): ``prompt``, ``code``, ``test_list``, ``test_imports`` as setup."""
    with open(data_file("sanitized-mbpp.json", data_dir), encoding="utf-8") as f:
        rows = json.load(f)
    recs = []
    for row in rows:
        code = _nl(row["code"])
        tests = [_nl(t).strip() for t in row["test_list"]]
        setup = "\n".join(row["test_imports"])
        recs.append(AceCodeRecord(
            id=f"mbpp_sanitized_{row['task_id']}", source="mbpp_sanitized", question=_nl(row["prompt"]).strip(),
            test_cases=tests, test_setup=setup or None, entry_point=_entry_point(code, tests),
            canonical_solution=code))
    return recs
