"""AceCoder steps that run code in the sandbox: ``filter`` (oracle answers prune the tests) and
``score`` (pass rates of sampled answers).

filter  In:  question records with the oracle's answer in ``inferences`` (``solve`` with the oracle;
             ``--oracle_field canonical_solution`` or ``program`` takes a program field instead).
        Out: AceCode records whose ``test_cases`` are the tests the oracle's extracted program passes,
             ``inferences`` null, and ``filter: {oracle_model, tests_before, tests_kept}``. A question
             keeping fewer than ``min_tests`` (5) tests goes to ``OUTPUT.dropped.jsonl`` with the reason.
             At the end the paper's Table 1 figures are printed over the output and the dropped file.
score   In:  filtered records with sampled answers in ``inferences`` (``solve -n 16``).
        Out: the records with every inference's ``pass_rate``: the share of the record's (kept)
             ``test_cases`` that the answer's extracted program passes. Identical programs of one
             record run once. An answer with no code scores 0 without running.

Both run one sandbox pool per stage run and feed it in input order (``pool.imap`` with a long
look-ahead, so one slow program does not idle the other workers): jobs of many records are in flight
together, and records are appended in input order as their results arrive. Outputs are keyed by id,
so a re-run skips finished (and dropped) records; delete ``OUTPUT.dropped.jsonl`` to give the
dropped ones another try.
"""
from __future__ import annotations

import os
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

from common.io import AppendWriter, RecordError, iter_records
from data_prep.common import (BadRecords, check_answers, extract_program, iter_stage_input, require_input,
                              sidecar_path)

T = TypeVar("T")
ORACLE_FIELDS = ("inferences", "canonical_solution", "program")


@dataclass
class ExecSummary:
    stage: str
    written: int = 0
    dropped: int = 0
    skipped: int = 0  # settled by an earlier run
    bad: int = 0
    answers: int = 0  # inferences scored (score)
    programs: int = 0  # programs run in the sandbox
    tests: int = 0  # tests run in the sandbox
    pass_rate_sum: float = 0.0  # over the answers scored (score)
    all_pass: int = 0  # answers passing every test (score)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return self.written + self.dropped

    def rates(self) -> str:
        s = max(self.seconds, 1e-9)
        return (f"{self.records / s:.1f} records/s, {self.programs / s:.1f} programs/s, "
                f"{self.tests / s:.1f} tests/s ({self.seconds:.1f} s)")

    def __str__(self) -> str:
        head = f"{self.stage}: {self.written} written"
        if self.stage == "filter":
            head += f", {self.dropped} dropped"
        else:
            mean = self.pass_rate_sum / self.answers if self.answers else 0.0
            head += f" ({self.answers} answers, mean pass rate {mean:.3f}, {self.all_pass} pass every test)"
        tests = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (f"{head}, {self.skipped} already done, {self.bad} bad; {self.programs} programs and "
                f"{self.tests} tests run ({tests or 'none'}); {self.rates()}")


LOOKAHEAD_PER_WORKER = 1024


def run_in_order(pool: Any, items: Iterable[T], jobs_of: Callable[[T], list],
                 lookahead: int | None = None) -> Iterator[tuple[T, list]]:
    """``(item, results of its jobs)`` in input order, while the jobs of later items run.

    ``jobs_of(item)`` may return no jobs; such an item comes out in its place. Items are read lazily
    (the pool looks ``lookahead`` jobs ahead, default 1024 per worker), so the input can be a stream."""
    pending: deque = deque()  # [item, job ids, results]

    def jobs() -> Iterator:
        for item in items:
            js = jobs_of(item)
            pending.append([item, [j.id for j in js], []])
            yield from js

    def finished() -> Iterator[tuple[T, list]]:
        while pending and len(pending[0][2]) == len(pending[0][1]):
            item, _, results = pending.popleft()
            yield item, results

    for res in pool.imap(jobs(), lookahead or LOOKAHEAD_PER_WORKER * pool.cfg.workers):
        yield from finished()
        head = pending[0]
        expected = head[1][len(head[2])]
        if res.id != expected:
            raise RuntimeError(f"sandbox results out of order: got {res.id!r}, expected {expected!r}")
        head[2].append(res)
        yield from finished()
    yield from finished()
    if pending:
        raise RuntimeError("sandbox returned fewer results than jobs")


def _open_pool(sandbox: Any) -> Any:
    from sandbox import SandboxConfig, SandboxPool

    return SandboxPool(sandbox or SandboxConfig())


# ---- filter ---------------------------------------------------------------------------------

def _oracle_of(oracle_field: str, oracle_model: str | None) -> Callable[[dict, str, int], tuple[str, str, bool]]:
    """A check returning (oracle text, oracle model name, is an answer to extract code from)."""
    def check(raw: dict, path: str, line: int) -> tuple[str, str, bool]:
        if oracle_field != "inferences":
            text = raw.get(oracle_field)
            if not isinstance(text, str) or not text.strip():
                raise RecordError(path, line, oracle_field,
                                  "missing or empty; it is the oracle program (--oracle_field)")
            return text, oracle_field, False
        answers = check_answers(raw, path, line, need_pass_rate=False)
        if oracle_model is None:
            return answers[0]["completion"], answers[0]["model_name"], True
        for a in answers:
            if a["model_name"] == oracle_model:
                return a["completion"], oracle_model, True
        raise RecordError(path, line, "inferences",
                          f"no answer from the oracle model {oracle_model!r} (--oracle_model)")
    return check


@dataclass(frozen=True)
class Table1:
    """The paper's Table 1 figures: examples and average tests per question, before and after."""

    examples_before: int
    examples_after: int
    avg_tests_before: float
    avg_tests_after: float

    def __str__(self) -> str:
        return ("filter (Table 1):        examples   avg tests\n"
                f"  before the filter  {self.examples_before:>12,}   {self.avg_tests_before:>9.2f}\n"
                f"  after the filter   {self.examples_after:>12,}   {self.avg_tests_after:>9.2f}")


def table1(output_path: str, dropped_path: str) -> Table1:
    """Table 1 over everything a filter output holds (earlier runs included) and its dropped file."""
    before, after = [], []
    for path, kept in ((output_path, True), (dropped_path, False)):
        if not os.path.exists(path):
            continue
        for _, r in iter_records(path):
            n = (r.get("filter") or {}).get("tests_before") if kept else r.get("tests_before")
            before.append(n if isinstance(n, int) else len(r.get("test_cases") or []))
            if kept:
                after.append(len(r.get("test_cases") or []))
    mean = lambda xs: statistics.fmean(xs) if xs else 0.0  # noqa: E731
    return Table1(len(before), len(after), mean(before), mean(after))


def run_filter(input_path: str, output_path: str, *, min_tests: int = 5, oracle_model: str | None = None,
               oracle_field: str = "inferences", sandbox: Any = None, progress: bool = True,
               lookahead: int | None = None) -> tuple[ExecSummary, Table1]:
    """Keep the tests the oracle passes; drop questions left with fewer than ``min_tests``."""
    from sandbox import Job

    if oracle_field not in ORACLE_FIELDS:
        raise ValueError(f"--oracle_field must be one of {', '.join(ORACLE_FIELDS)}, not {oracle_field!r}")
    input_path = require_input(input_path)
    start = time.perf_counter()
    summary = ExecSummary("filter")
    bad = BadRecords("filter", output_path)
    dropped_path = sidecar_path(output_path, "dropped")
    out, dropped = AppendWriter(output_path), AppendWriter(dropped_path)
    settled = out.done | dropped.done

    def todo() -> Iterator[tuple[Any, str, str]]:
        check = _oracle_of(oracle_field, oracle_model)
        for _, _, rec, (text, model, is_answer) in iter_stage_input(input_path, bad, check):
            if rec.id in settled:
                summary.skipped += 1
                continue
            yield rec, (extract_program(text) if is_answer else text), model

    def jobs_of(item: tuple[Any, str, str]) -> list:
        rec, code, _ = item
        if not code.strip():
            return []
        return [Job(rec.id, code, tuple(rec.test_cases), setup=rec.test_setup or "")]

    def drop(rec: Any, model: str, reason: str, kept: int, statuses: Counter) -> None:
        summary.dropped += 1
        dropped.write({"id": rec.id, "source": rec.source, "reason": reason, "oracle_model": model,
                       "tests_before": len(rec.test_cases), "tests_kept": kept, "test_statuses": dict(statuses)})

    try:
        with _open_pool(sandbox) as pool, tqdm(desc="filter", unit="rec", disable=not progress) as bar:
            for (rec, _, model), results in run_in_order(pool, todo(), jobs_of, lookahead):
                bar.update()
                if not results:
                    drop(rec, model, "no code in the oracle answer", 0, Counter())
                    continue
                [res] = results
                statuses = Counter(t.status for t in res.tests)
                summary.programs += 1
                summary.tests += len(res.tests)
                summary.statuses.update(statuses)
                kept = [t for t, r in zip(rec.test_cases, res.tests) if r.status == "passed"]
                if len(kept) < min_tests:
                    drop(rec, model, f"fewer than {min_tests} tests kept ({len(kept)} of {len(rec.test_cases)})",
                         len(kept), statuses)
                    continue
                d = rec.to_dict()
                d.update(test_cases=kept, inferences=None,
                         filter={"oracle_model": model, "tests_before": len(rec.test_cases), "tests_kept": len(kept)})
                out.write(d)
                summary.written += 1
    finally:
        out.close()
        dropped.close()
        bad.close()
    summary.bad, summary.seconds = bad.count, time.perf_counter() - start
    stats = table1(output_path, dropped_path)
    print(summary, flush=True)
    print(stats, flush=True)
    if bad.count:
        print(f"filter: {bad.line()}", flush=True)
    return summary, stats


# ---- score ----------------------------------------------------------------------------------

def run_score(input_path: str, output_path: str, *, sandbox: Any = None, progress: bool = True,
              lookahead: int | None = None) -> ExecSummary:
    """Fill every inference's ``pass_rate`` over the record's kept tests."""
    from sandbox import Job

    input_path = require_input(input_path)
    start = time.perf_counter()
    summary = ExecSummary("score")
    bad = BadRecords("score", output_path)
    out = AppendWriter(output_path)

    def todo() -> Iterator[tuple[Any, list[dict], list[str], list[str]]]:
        check = lambda raw, path, line: check_answers(raw, path, line, need_pass_rate=False)  # noqa: E731
        for _, _, rec, answers in iter_stage_input(input_path, bad, check):
            if rec.id in out:
                summary.skipped += 1
                continue
            programs = [extract_program(a["completion"]) for a in answers]
            unique = list(dict.fromkeys(p for p in programs if p.strip()))
            yield rec, answers, programs, unique

    def jobs_of(item: tuple[Any, list[dict], list[str], list[str]]) -> list:
        rec, _, _, unique = item
        return [Job(f"{rec.id}#{j}", p, tuple(rec.test_cases), setup=rec.test_setup or "")
                for j, p in enumerate(unique)]

    try:
        with _open_pool(sandbox) as pool, tqdm(desc="score", unit="rec", disable=not progress) as bar:
            for (rec, answers, programs, unique), results in run_in_order(pool, todo(), jobs_of, lookahead):
                bar.update()
                rate = {p: r.pass_rate for p, r in zip(unique, results)}
                for r in results:
                    summary.statuses.update(t.status for t in r.tests)
                    summary.tests += len(r.tests)
                summary.programs += len(results)
                inferences = []
                for i, (a, p) in enumerate(zip(answers, programs)):
                    pr = rate.get(p, 0.0)
                    inferences.append({**a, "completion_id": a.get("completion_id", i), "pass_rate": pr})
                    summary.pass_rate_sum += pr
                    summary.all_pass += pr == 1.0
                summary.answers += len(answers)
                d = rec.to_dict()
                d["inferences"] = inferences
                out.write(d)
                summary.written += 1
    finally:
        out.close()
        bad.close()
    summary.bad, summary.seconds = bad.count, time.perf_counter() - start
    print(summary, flush=True)
    if bad.count:
        print(f"score: {bad.line()}", flush=True)
    return summary
