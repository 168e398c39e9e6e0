"""AceCoder step 0: seed programs from the paper's three sources, or from a benchmark.

Out: ``{id, source, instruction?, program}`` per seed, appended and keyed by id (a re-run skips the
ids already written, so several sources can be appended to one file). Per-source rules (the AceCoder paper's):

- ``evol``  Magicoder-Evol-Instruct-110K (columns ``instruction``, ``response``): answers with a
  python code block whose program contains ``def `` or ``class ``; id ``evol_ROW``.
- ``oss``   Magicoder-OSS-Instruct-75K (``problem``, ``solution``, ``lang``; ``instruction`` and
  ``response`` are accepted too): ``lang == "python"`` and a python code block; id ``oss_ROW``.
- ``stack`` bigcode/stack-dedup-python-fns (``content``): the first ``--limit`` (50,000) rows whose
  content is longer than 100 characters; source ``bigcode_python_fns``, id ``bigcode_python_fns_ROW``.
- ``benchmark`` a benchmark name from ``data_prep.benchmarks`` (mbpp, humaneval, ...) or an AceCode
  file: the canonical solution is the program, the question the instruction, the record id the id.

ROW is the 0-based row (JSONL line) of the input file, so ids stay stable across re-runs. Programs end
with one newline. Bad rows are listed in ``OUTPUT.bad.jsonl`` (rewritten by each run). The code
of an evol/oss answer is ``common.extract.extract_code`` of it. Print statements are then removed:
the paper drops every line starting with ``print``; we drop the same lines, but as whole statements
(a multi-line ``print(...)`` goes entirely; a block left empty gets ``pass``), so a program that
parsed still parses. Programs that do not parse get the paper's plain line rule.
"""
from __future__ import annotations

import ast
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from common.io import AppendWriter, RecordError, iter_records
from common.pyparse import parse
from common.schema import load_acecode
from data_prep.common import BadRecords, extract_program, quiet_parse, require_input

SOURCES = ("evol", "oss", "stack", "benchmark")
STACK_LIMIT = 50_000
STACK_MIN_CHARS = 100
_PY_FENCE = re.compile(r"```[ \t]*(?:python3?|py)\b", re.I)
_PRINT_LINE = re.compile(r"^\s*print\b")


def _is_print_stmt(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "print")


def strip_prints(program: str) -> str:
    """Remove print statements (lines starting with ``print``), keeping the program parseable."""
    try:
        tree = quiet_parse(parse, program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        kept = [line for line in program.splitlines() if not _PRINT_LINE.match(line)]
        return "\n".join(kept) + ("\n" if kept and program.endswith("\n") else "")
    lines = program.splitlines()
    drop: set[int] = set()  # 1-based line numbers
    pass_at: dict[int, str] = {}  # line -> indentation of a `pass` that replaces it
    for node in ast.walk(tree):
        for attr in ("body", "orelse", "finalbody"):
            block = getattr(node, attr, None)
            if not isinstance(block, list) or not block or not isinstance(block[0], ast.stmt):
                continue
            prints = [s for s in block if _is_print_stmt(s) and _alone_on_its_lines(s, lines)]
            for s in prints:
                drop.update(range(s.lineno, (s.end_lineno or s.lineno) + 1))
            if prints and len(prints) == len(block) and not isinstance(node, ast.Module):
                first = lines[prints[0].lineno - 1]
                pass_at[prints[0].lineno] = first[: len(first) - len(first.lstrip())]
    out = []
    for i, line in enumerate(lines, start=1):
        if i in pass_at:
            out.append(pass_at[i] + "pass")
        elif i not in drop:
            out.append(line)
    return "\n".join(out) + ("\n" if program.endswith("\n") else "")


def _alone_on_its_lines(s: ast.stmt, lines: list[str]) -> bool:
    """The statement starts its first line and nothing but a comment follows it on its last one."""
    first, last = lines[s.lineno - 1], lines[(s.end_lineno or s.lineno) - 1]
    tail = last.encode()[s.end_col_offset or 0:].decode(errors="replace").strip()
    return _PRINT_LINE.match(first) is not None and (not tail or tail.startswith("#"))


@dataclass
class SeedsSummary:
    source: str
    written: int = 0
    skipped: int = 0  # written by an earlier run
    filtered: Counter = field(default_factory=Counter)  # reason -> count (the paper's rules, not errors)
    bad: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        filt = ", ".join(f"{r} {n}" for r, n in sorted(self.filtered.items())) or "none"
        return (f"seeds ({self.source}): {self.written} written, {self.skipped} already done; "
                f"filtered out: {filt}; bad records: {self.bad}")


def _text(raw: dict, path: str, line: int, *names: str) -> str:
    """The first of ``names`` present in the row, which must be a string."""
    for name in names:
        if raw.get(name) is not None:
            if not isinstance(raw[name], str):
                raise RecordError(path, line, name, f"expected a string, got {type(raw[name]).__name__}")
            return raw[name]
    alias = f" (or {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else ""
    raise RecordError(path, line, names[0], f"missing{alias}")


def _code_of_answer(answer: str) -> str | None:
    """The program of an instruction-tuning answer, or None when it has no python code block."""
    if not _PY_FENCE.search(answer):
        return None
    return extract_program(answer).strip("\n") or None


def _from_rows(source: str, path: str, bad: BadRecords) -> Iterator[tuple[dict | None, str | None]]:
    """(seed, None) for a seed, (None, reason) for a row a per-source rule filters out."""
    for line, raw in iter_records(path, on_error=bad):
        row = line - 1
        try:
            if source == "evol":
                instruction, answer = _text(raw, path, line, "instruction"), _text(raw, path, line, "response")
                program = _code_of_answer(answer)
                if program is None:
                    yield None, "no python code block"
                elif "def " not in program and "class " not in program:
                    yield None, "no def or class"
                else:
                    yield {"id": f"evol_{row}", "source": "evol", "instruction": instruction, "program": program}, None
            elif source == "oss":
                lang = _text(raw, path, line, "lang")
                instruction = _text(raw, path, line, "problem", "instruction")
                answer = _text(raw, path, line, "solution", "response")
                program = _code_of_answer(answer) if lang == "python" else None
                if lang != "python":
                    yield None, "not python"
                elif program is None:
                    yield None, "no python code block"
                else:
                    yield {"id": f"oss_{row}", "source": "oss", "instruction": instruction, "program": program}, None
            else:
                content = _text(raw, path, line, "content")
                if len(content) <= STACK_MIN_CHARS:
                    yield None, f"content <= {STACK_MIN_CHARS} chars"
                else:
                    yield {"id": f"bigcode_python_fns_{row}", "source": "bigcode_python_fns", "program": content}, None
        except RecordError as e:
            bad(e)


def _from_benchmark(name_or_path: str, data_dir: str | None,
                    bad: BadRecords) -> Iterator[tuple[dict | None, str | None]]:
    from data_prep import benchmarks

    if name_or_path in benchmarks.BENCHMARKS and not os.path.exists(name_or_path):
        records = iter(benchmarks.load_benchmark(name_or_path, data_dir))
    else:
        records = load_acecode(name_or_path, on_error=bad)
    for rec in records:
        program = rec.canonical_solution or rec.program
        if not program:
            bad(RecordError(name_or_path, None, "canonical_solution",
                            f"record {rec.id!r} has neither a canonical_solution nor a program"))
            continue
        yield {"id": rec.id, "source": rec.source, "instruction": rec.question, "program": program}, None


def run_seeds(input_path: str, output_path: str | os.PathLike, source: str, *, limit: int | None = None,
              data_dir: str | None = None) -> SeedsSummary:
    """Normalise one seed source into ``output_path`` (appended to); returns and prints the summary.

    ``limit``: most seeds to keep (counting those written by an earlier run); None: 50,000 for
    ``stack``, all for the others; 0: all.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown seed source {source!r}; choose one of {', '.join(SOURCES)}")
    if limit is None:
        limit = STACK_LIMIT if source == "stack" else 0
    start = time.perf_counter()
    summary = SeedsSummary(source)
    bad = BadRecords(f"seeds ({source})", output_path)
    if source != "benchmark":
        require_input(input_path)
    rows = (_from_benchmark(input_path, data_dir, bad) if source == "benchmark"
            else _from_rows(source, str(input_path), bad))
    kept = 0
    with AppendWriter(str(output_path)) as out:
        for seed, reason in rows:
            if seed is None:
                summary.filtered[reason] += 1
                continue
            program = strip_prints(seed["program"]).rstrip()
            if not program.strip():
                summary.filtered["empty after removing prints"] += 1
                continue
            program += "\n"
            kept += 1
            if seed["id"] in out:
                summary.skipped += 1
            else:
                out.write({**seed, "program": program})
                summary.written += 1
            if limit and kept >= limit:
                break
    bad.close()
    summary.bad, summary.seconds = bad.count, time.perf_counter() - start
    print(summary, flush=True)
    if bad.count:
        print(f"seeds ({source}): {bad.line()}", flush=True)
    return summary
