"""AceCoder steps on scored records: preference ``pairs`` for the reward model and the ``hard-subset``
of questions for RL.

pairs        In:  scored AceCode records (``score`` output: every inference has a ``pass_rate``).
             Out: ``{id, record_id, question, chosen, rejected, chosen_pass_rate, rejected_pass_rate}``
                  with id ``RECORDID_pairK``, plus the reward-model trainer's format
                  ``{prompt, chosen, rejected}`` in ``--rm_output`` (default ``OUTPUT.rm.jsonl``),
                  rewritten from the whole pairs output at the end of every run.
             chosen/rejected are the answers' extracted programs (the RM scores question + program:
             rewards/reward_model.py). For every two answers i, j of a question (in inference order) with pass rates
             hi = pr_i, lo = pr_j: keep (i, j) when hi >= 0.8, hi - lo >= 0.4 (to 1e-9, so 0.7 - 0.3
             counts) and lo > 0. Skipped: a (chosen, rejected) program pair already taken for the
             question, two identical programs, and every question that is not pure ASCII.
hard-subset  In:  scored AceCode records. Out: the records kept, unchanged: per question the mean and
             population std of its pass rates; keep mean <= median(mean over all records), then,
             among those, std >= median(std over those).
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

from common.io import AppendWriter, iter_records, write_records
from data_prep.common import (BadRecords, check_answers, extract_program, iter_stage_input, require_input,
                              sidecar_path)

HI_MIN, GAP_MIN, EPS = 0.8, 0.4, 1e-9


def pairs_of(record_id: str, question: str, answers: list[dict]) -> tuple[list[dict], Counter]:
    """The preference pairs of one question, in a fixed order, and counts of what was skipped."""
    skipped: Counter = Counter()
    programs = [extract_program(a["completion"]) for a in answers]
    rates = [float(a["pass_rate"]) for a in answers]
    seen: set[tuple[str, str]] = set()
    out: list[dict] = []
    for i, hi in enumerate(rates):
        if hi < HI_MIN:
            continue
        for j, lo in enumerate(rates):
            if i == j or not (lo > 0 and hi - lo >= GAP_MIN - EPS):
                continue
            key = (programs[i], programs[j])
            if programs[i] == programs[j]:
                skipped["same program"] += 1
                continue
            if key in seen:
                skipped["duplicate program pair"] += 1
                continue
            seen.add(key)
            out.append({"id": f"{record_id}_pair{len(out)}", "record_id": record_id, "question": question,
                        "chosen": programs[i], "rejected": programs[j],
                        "chosen_pass_rate": hi, "rejected_pass_rate": lo})
    return out, skipped


@dataclass
class PairsSummary:
    records: int = 0
    with_pairs: int = 0
    written: int = 0
    skipped: int = 0  # pairs written by an earlier run
    total: int = 0  # pairs in the output now
    bad: int = 0
    not_ascii: int = 0
    dropped: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def __str__(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        return (f"pairs: {self.total} pairs from {self.with_pairs} of {self.records} questions "
                f"({self.written} new, {self.skipped} already done); skipped: {self.not_ascii} non-ASCII "
                f"questions, {drops}; bad records: {self.bad}")


def _write_rm_export(pairs_path: str, rm_path: str) -> int:
    """``{prompt, chosen, rejected}`` for every pair in ``pairs_path``, written atomically."""
    rows = ({"prompt": p["question"], "chosen": p["chosen"], "rejected": p["rejected"]}
            for _, p in iter_records(pairs_path))
    if rm_path.endswith((".parquet", ".pq")):
        rows = list(rows)
        write_records(rm_path, rows)
        return len(rows)
    d = os.path.dirname(os.path.abspath(rm_path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(rm_path))
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, rm_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return n


def run_pairs(input_path: str, output_path: str, rm_output: str | None = None) -> PairsSummary:
    """Write the preference pairs of every scored record, then the reward-model export."""
    input_path = require_input(input_path)
    start = time.perf_counter()
    summary = PairsSummary()
    bad = BadRecords("pairs", output_path)
    rm_output = rm_output or sidecar_path(output_path, "rm")
    check = lambda raw, path, line: check_answers(raw, path, line, need_pass_rate=True)  # noqa: E731
    with AppendWriter(output_path) as out:
        for _, _, rec, answers in iter_stage_input(input_path, bad, check):
            summary.records += 1
            if not rec.question.isascii():
                summary.not_ascii += 1
                continue
            pairs, dropped = pairs_of(rec.id, rec.question, answers)
            summary.dropped.update(dropped)
            summary.with_pairs += bool(pairs)
            for p in pairs:
                if p["id"] in out:
                    summary.skipped += 1
                else:
                    out.write(p)
                    summary.written += 1
        summary.total = len(out.done)
    bad.close()
    n = _write_rm_export(output_path, rm_output)
    summary.bad, summary.seconds = bad.count, time.perf_counter() - start
    print(summary, flush=True)
    print(f"pairs: reward-model export ({{prompt, chosen, rejected}}): {n} pairs in {rm_output}", flush=True)
    if bad.count:
        print(f"pairs: {bad.line()}", flush=True)
    return summary


# ---- hard subset ----------------------------------------------------------------------------

@dataclass
class HardSummary:
    records: int = 0
    median_mean: float = 0.0
    below: int = 0  # mean <= median(mean)
    median_std: float = 0.0
    kept: int = 0
    written: int = 0
    skipped: int = 0
    bad: int = 0

    def __str__(self) -> str:
        share = self.kept / self.records if self.records else 0.0
        return (f"hard-subset: {self.records} questions; mean pass rate <= median {self.median_mean:.4f}: "
                f"{self.below}; of those std >= median {self.median_std:.4f}: {self.kept} kept ({share:.1%}); "
                f"{self.written} written, {self.skipped} already done; bad records: {self.bad}")


def hard_subset_ids(stats: dict[str, tuple[float, float]]) -> tuple[set[str], float, float, int]:
    """(kept ids, median of means, median of stds among the low-mean ones, how many had a low mean)."""
    if not stats:
        return set(), 0.0, 0.0, 0
    med_mean = statistics.median(m for m, _ in stats.values())
    low = {k: s for k, (m, s) in stats.items() if m <= med_mean}
    med_std = statistics.median(low.values())
    return {k for k, s in low.items() if s >= med_std}, med_mean, med_std, len(low)


def run_hard_subset(input_path: str, output_path: str) -> HardSummary:
    """Two passes over the input: statistics and medians, then the kept records, unchanged."""
    input_path = require_input(input_path)
    summary = HardSummary()
    bad = BadRecords("hard-subset", output_path)
    check = lambda raw, path, line: check_answers(raw, path, line, need_pass_rate=True)  # noqa: E731
    stats: dict[str, tuple[float, float]] = {}
    good_lines: dict[str, int] = {}
    for line, _, rec, answers in iter_stage_input(input_path, bad, check):
        rates = [float(a["pass_rate"]) for a in answers]
        stats[rec.id] = (statistics.fmean(rates), statistics.pstdev(rates))
        good_lines[rec.id] = line
    keep, summary.median_mean, summary.median_std, summary.below = hard_subset_ids(stats)
    summary.records, summary.kept = len(stats), len(keep)
    keep_lines = {good_lines[k] for k in keep}
    with AppendWriter(output_path) as out:
        for line, raw in iter_records(input_path, on_error=lambda e: None):  # bad ones were reported above
            if line not in keep_lines:
                continue
            if raw["id"] in out:
                summary.skipped += 1
                continue
            out.write(raw)
            summary.written += 1
    bad.close()
    summary.bad = bad.count
    print(summary, flush=True)
    if bad.count:
        print(f"hard-subset: {bad.line()}", flush=True)
    return summary
