"""The AceCode record: one coding question with its assert tests, as every data stage reads and writes it.

Fields (AceCode-87K, TIGER-Lab/AceCode-87K, plus a few optional extensions):

- ``id`` (str), ``source`` (str), ``question`` (str, the natural-language task)
- ``test_cases`` (non-empty list of str: standalone statements, normally ``assert ...``). Their reward
  server read the field ``tests``; that name is accepted on input and normalised to ``test_cases``.
- ``inferences`` (optional list of ``{model_name, completion_id, completion, pass_rate}``)
- ``context_messages`` (optional list of ``{role, content}``; default: one user turn with the question)
- extensions: ``test_setup`` (trusted code run after the program and before the tests: imports and
  helpers the tests need), ``entry_point`` (the function under test), ``program`` (a program the
  question was made from, e.g. the seed), ``canonical_solution`` (a complete program that passes the
  tests), ``challenge_test_cases`` (MBPP's harder extra tests, not counted in ``test_cases``).

Any other non-null field is kept, untouched, in ``AceCodeRecord.extra``. Errors are ``RecordError`` naming the
file, the line (JSONL) or row (Parquet) and the field; list positions in messages count from 0.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from common.io import RecordError, iter_records

__all__ = ["AceCodeRecord", "Inference", "RecordError", "load_acecode", "task_tests", "validate_record"]

_OPTIONAL_STR = ("test_setup", "entry_point", "program", "canonical_solution")
_KNOWN = {"id", "source", "question", "test_cases", "tests", "inferences", "context_messages",
          "challenge_test_cases", *_OPTIONAL_STR}


@dataclass(frozen=True)
class Inference:
    """One sampled answer to a question and the fraction of the question's tests it passes."""

    model_name: str
    completion_id: int | str
    completion: str
    pass_rate: float

    def to_dict(self) -> dict:
        return {"model_name": self.model_name, "completion_id": self.completion_id,
                "completion": self.completion, "pass_rate": self.pass_rate}


@dataclass(frozen=True)
class AceCodeRecord:
    """One validated question; build it with ``validate_record`` or ``AceCodeRecord(...)``."""

    id: str
    source: str
    question: str
    test_cases: list[str]
    inferences: list[Inference] | None = None
    context_messages: list[dict[str, str]] | None = None
    test_setup: str | None = None
    entry_point: str | None = None
    program: str | None = None
    canonical_solution: str | None = None
    challenge_test_cases: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.context_messages is None:
            object.__setattr__(self, "context_messages", [{"role": "user", "content": self.question}])

    def to_dict(self) -> dict:
        """A JSON/Parquet-ready dict. Every schema field is present (None when absent), so a list of
        records has one column set; ``extra`` fields follow."""
        d = {
            "id": self.id, "source": self.source, "question": self.question,
            "test_cases": list(self.test_cases),
            "inferences": None if self.inferences is None else [i.to_dict() for i in self.inferences],
            "context_messages": [dict(m) for m in self.context_messages or []],
            "test_setup": self.test_setup, "entry_point": self.entry_point, "program": self.program,
            "canonical_solution": self.canonical_solution,
            "challenge_test_cases": None if self.challenge_test_cases is None else list(self.challenge_test_cases),
        }
        d.update(self.extra)
        return d


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _str_list(v: Any, fail: Callable[[str], RecordError], allow_empty: bool) -> list[str]:
    if not isinstance(v, list):
        raise fail(f"expected a list of strings, got {_type_name(v)}")
    if not v and not allow_empty:
        raise fail("expected a non-empty list of strings, got an empty list")
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise fail(f"expected a list of strings, item {i} is {_type_name(item)}")
        if not item.strip():
            raise fail(f"item {i} is an empty string")
    return list(v)


def task_tests(raw: dict, path: str | os.PathLike, line: int | None) -> list[str]:
    """What RL prompts and evaluation tasks need of a record, checked: string ``id`` and ``question``;
    returns its non-empty ``test_cases`` (or ``tests``). The rest of the schema is not required."""
    for key in ("id", "question"):
        if not isinstance(raw.get(key), str):
            raise RecordError(str(path), line, key, "must be a string")
    tests = raw.get("test_cases", raw.get("tests"))
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise RecordError(str(path), line, "test_cases", "must be a non-empty list of strings")
    return tests


def validate_record(raw: dict, path: str | os.PathLike = "<record>", line: int | None = None) -> AceCodeRecord:
    """Check one raw record (a dict from JSONL or Parquet) and return it as an ``AceCodeRecord``.

    Raises ``RecordError(path, line, field, message)`` on the first problem. A None value counts as
    an absent field (Parquet stores absent optional fields as null).
    """
    path = str(path)

    def err(fld: str | None, msg: str) -> RecordError:
        return RecordError(path, line, fld, msg)

    if not isinstance(raw, dict):
        raise err(None, f"expected an object (dict), got {_type_name(raw)}")

    def req_str(name: str) -> str:
        v = raw.get(name)
        if v is None:
            raise err(name, "missing (required)")
        if not isinstance(v, str):
            raise err(name, f"expected a string, got {_type_name(v)}")
        if not v.strip():
            raise err(name, "is empty")
        return v

    rid, source, question = req_str("id"), req_str("source"), req_str("question")

    tc, tests = raw.get("test_cases"), raw.get("tests")
    if tc is None and tests is None:
        raise err("test_cases", "missing (required; the alias 'tests' is accepted too)")
    if tc is not None and tests is not None and tc != tests:
        raise err("tests", "both 'test_cases' and its alias 'tests' are given and they differ; keep one")
    name = "test_cases" if tc is not None else "tests"
    test_cases = _str_list(tc if tc is not None else tests, lambda m: err(name, m), allow_empty=False)

    challenge = raw.get("challenge_test_cases")
    if challenge is not None:
        challenge = _str_list(challenge, lambda m: err("challenge_test_cases", m), allow_empty=True)

    opt: dict[str, str | None] = {}
    for name in _OPTIONAL_STR:
        v = raw.get(name)
        if v is not None and not isinstance(v, str):
            raise err(name, f"expected a string, got {_type_name(v)}")
        opt[name] = v

    inferences = None
    if raw.get("inferences") is not None:
        inferences = _inferences(raw["inferences"], err)

    messages = None
    if raw.get("context_messages") is not None:
        messages = _messages(raw["context_messages"], err)

    extra = {k: v for k, v in raw.items() if k not in _KNOWN and v is not None}
    return AceCodeRecord(id=rid, source=source, question=question, test_cases=test_cases,
                         inferences=inferences, context_messages=messages,
                         challenge_test_cases=challenge, extra=extra, **opt)


def _inferences(v: Any, err: Callable[[str, str], RecordError]) -> list[Inference]:
    if not isinstance(v, list):
        raise err("inferences", f"expected a list of objects, got {_type_name(v)}")
    out = []
    for i, inf in enumerate(v):
        where = f"inferences[{i}]"
        if not isinstance(inf, dict):
            raise err(where, f"expected an object with model_name, completion_id, completion, pass_rate; "
                             f"got {_type_name(inf)}")
        for key in ("model_name", "completion"):
            if not isinstance(inf.get(key), str):
                raise err(f"{where}.{key}", f"expected a string, got {_type_name(inf.get(key))}")
        cid = inf.get("completion_id")
        if isinstance(cid, bool) or not isinstance(cid, (int, str)):
            raise err(f"{where}.completion_id", f"expected an int or a string, got {_type_name(cid)}")
        pr = inf.get("pass_rate")
        if isinstance(pr, bool) or not isinstance(pr, (int, float)):
            raise err(f"{where}.pass_rate", f"expected a number in [0, 1], got {_type_name(pr)}")
        if not (math.isfinite(pr) and 0.0 <= pr <= 1.0):
            raise err(f"{where}.pass_rate", f"expected a number in [0, 1], got {pr!r}")
        out.append(Inference(inf["model_name"], cid, inf["completion"], float(pr)))
    return out


def _messages(v: Any, err: Callable[[str, str], RecordError]) -> list[dict[str, str]]:
    if not isinstance(v, list) or not v:
        raise err("context_messages", f"expected a non-empty list of {{role, content}} objects, "
                                      f"got {_type_name(v) if not isinstance(v, list) else 'an empty list'}")
    out = []
    for i, m in enumerate(v):
        where = f"context_messages[{i}]"
        if not isinstance(m, dict):
            raise err(where, f"expected an object with role and content, got {_type_name(m)}")
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                raise err(f"{where}.{key}", f"expected a string, got {_type_name(m.get(key))}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def load_acecode(path: str | os.PathLike,
                 on_error: Callable[[RecordError], None] | None = None) -> Iterator[AceCodeRecord]:
    """Yield validated records from a JSONL (optionally .gz) or Parquet file.

    A bad record (unparseable line, wrong field, duplicate id) raises ``RecordError`` when
    ``on_error`` is None; otherwise it is passed to ``on_error`` and skipped, so nothing is dropped
    silently. For a duplicate id the later record is the bad one and the message names both lines.
    """
    def bad(e: RecordError) -> None:
        if on_error is None:
            raise e
        on_error(e)

    first_seen: dict[str, int] = {}
    unit = "row" if str(path).endswith((".parquet", ".pq")) else "line"
    for line, raw in iter_records(path, on_error=on_error):
        try:
            rec = validate_record(raw, path, line)
        except RecordError as e:
            bad(e)
            continue
        if rec.id in first_seen:
            bad(RecordError(str(path), line, "id",
                            f"duplicate id {rec.id!r} (first seen at {unit} {first_seen[rec.id]})"))
            continue
        first_seen[rec.id] = line
        yield rec
