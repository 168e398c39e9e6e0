"""What the record stages (seeds, filter, score, pairs, hard-subset) share: bad-record reporting,
sidecar file names, input validation and the sandbox options.

A bad input record is never dropped silently: each is printed (the first ``PRINT_LIMIT``) with its
file, line and field, all of them are written to ``OUTPUT.bad.jsonl`` (rewritten by each run), and
the stage's summary counts them, so the command line can exit non-zero after finishing the good ones.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from typing import Any, Callable, Iterator

from common.io import RecordError, atomic_write_text, iter_records
from common.schema import AceCodeRecord, validate_record

PRINT_LIMIT = 20


def sidecar_path(output_path: str | os.PathLike, kind: str) -> str:
    """``out.jsonl`` -> ``out.KIND.jsonl`` (likewise for .parquet, .pq, .jsonl.gz, .json)."""
    stem = re.sub(r"\.(jsonl|jsonl\.gz|json|parquet|pq)$", "", str(output_path))
    return f"{stem}.{kind}.jsonl"


class BadRecords:
    """Collects bad input records of one stage run: prints the first few, keeps them all."""

    def __init__(self, stage: str, output_path: str | os.PathLike | None = None):
        self.stage = stage
        self.path = sidecar_path(output_path, "bad") if output_path is not None else None
        self.errors: list[RecordError] = []

    def __call__(self, err: RecordError) -> None:
        self.errors.append(err)
        if len(self.errors) <= PRINT_LIMIT:
            print(f"{self.stage}: skipped bad record: {err}", file=sys.stderr, flush=True)
        elif len(self.errors) == PRINT_LIMIT + 1:
            print(f"{self.stage}: more bad records; all are listed in {self.path}", file=sys.stderr, flush=True)

    @property
    def count(self) -> int:
        return len(self.errors)

    def close(self) -> None:
        """Write ``OUTPUT.bad.jsonl`` (every bad record of this run), or remove a stale one."""
        if self.path is None:
            return
        if not self.errors:
            if os.path.exists(self.path):
                os.unlink(self.path)
            return
        rows = [{"path": e.path, "line": e.line, "field": e.field, "message": e.message} for e in self.errors]
        atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def line(self) -> str:
        if not self.errors:
            return "bad records: 0"
        return f"bad records: {self.count} skipped (listed in {self.path})"


def quiet_parse(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` without the warnings ``ast.parse`` gives for old code (invalid escapes such as
    '\\d'): seed and model programs are full of them, and they say nothing about the data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args)


def extract_program(answer: str) -> str:
    """``common.extract.extract_code``: the program of a model's answer, parse warnings silenced."""
    from common.extract import extract_code

    return quiet_parse(extract_code, answer)


def require_input(path: str | os.PathLike) -> str:
    """The input path, checked before a stage opens its outputs."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path} not found (--input)")
    return str(path)


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def check_answers(raw: dict, path: str, line: int, need_pass_rate: bool) -> list[dict]:
    """The ``inferences`` of a record whose answers are to be run: a non-empty list of objects with
    string ``model_name`` and ``completion`` (``pass_rate`` may be absent: the stage computes it)."""
    inf = raw.get("inferences")
    if inf is None:
        raise RecordError(path, line, "inferences", "missing; run `solve` first")
    if not isinstance(inf, list) or not inf:
        raise RecordError(path, line, "inferences", f"expected a non-empty list of answers, got "
                          f"{'an empty list' if isinstance(inf, list) else _type_name(inf)}")
    for i, item in enumerate(inf):
        where = f"inferences[{i}]"
        if not isinstance(item, dict):
            raise RecordError(path, line, where, f"expected an object, got {_type_name(item)}")
        if not isinstance(item.get("completion"), str):
            raise RecordError(path, line, f"{where}.completion",
                              f"expected a string, got {_type_name(item.get('completion'))}")
        if not isinstance(item.get("model_name"), str):
            raise RecordError(path, line, f"{where}.model_name", f"expected a string, got "
                              f"{_type_name(item.get('model_name'))}")
    if need_pass_rate:
        validate_record(raw, path, line)  # the full schema check, pass rates included
    return inf


def iter_stage_input(path: str | os.PathLike, bad: BadRecords,
                     check: Callable[[dict, str, int], Any] | None = None
                     ) -> Iterator[tuple[int, dict, AceCodeRecord, Any]]:
    """Yield ``(line, raw, record, extra)`` for every good AceCode record of ``path``, streaming.

    ``record`` is the record validated WITHOUT its inferences (stages that run answers read them
    from ``raw``); ``extra`` is what ``check(raw, path, line)`` returns. Bad lines, bad fields and
    repeated ids go to ``bad`` and are skipped.
    """
    path = str(path)
    seen: dict[str, int] = {}
    for line, raw in iter_records(path, on_error=bad):
        try:
            extra = check(raw, path, line) if check is not None else None
            rec = validate_record({**raw, "inferences": None}, path, line)
        except RecordError as e:
            bad(e)
            continue
        if rec.id in seen:
            bad(RecordError(path, line, "id", f"duplicate id {rec.id!r} (first seen at line/row {seen[rec.id]})"))
            continue
        seen[rec.id] = line
        yield line, raw, rec, extra


# ---- sandbox options shared by filter and score -----------------------------------------------

def add_sandbox_args(p: argparse.ArgumentParser) -> None:
    """The ``--sandbox_*`` options every command has (sandbox/options.py), plus ``--lookahead``."""
    from sandbox import options

    options.add_sandbox_options(p, old_spellings=options.OLD_SPELLINGS, workers=os.cpu_count() or 1)
    p.add_argument("--lookahead", type=int, default=1024,
                   help="jobs per worker queued or finished ahead of the oldest unfinished one (output "
                        "stays in input order; more absorbs slow programs better, costs memory)")


def sandbox_config(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> Any:
    from sandbox import options

    return options.sandbox_config_from_args(args, parser)
