"""Best-of-N arithmetic: pick by reward-model score, and the paper's four columns.

Pure functions over per-task lists; ``apps/bon_eval.py`` produces the lists. For a task, ``passes[k]``
says whether sample k passes ALL the task's tests, ``scores[k]`` is its raw RM score (None when the
sample had no code or was not scored). Best-of-N uses the first N samples, so one sampling run at
max(N) serves every N.

- greedy:  share of tasks whose greedy answer passes;
- average: mean over tasks of the share of the N samples that pass (the expected pass@1 of a sample);
- oracle:  share of tasks where at least one of the N samples passes (the ceiling of any selector);
- rm:      share of tasks where the sample with the highest RM score passes (ties: lowest index;
           None or NaN scores rank below every number).
"""
from __future__ import annotations

import math
from typing import Sequence


def select_best(scores: Sequence[float | None]) -> int:
    """Index of the highest score; the first one on ties; None/NaN never win over a number."""
    if not scores:
        raise ValueError("select_best: no candidates")
    best, best_key = 0, -math.inf
    for k, s in enumerate(scores):
        key = s if s is not None and not math.isnan(s) else -math.inf
        if key > best_key:
            best, best_key = k, key
    return best


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def bon_columns(passes: Sequence[Sequence[bool]], scores: Sequence[Sequence[float | None]] | None,
                n: int) -> dict[str, float]:
    """average, oracle and (with scores) rm over tasks, for the first ``n`` samples of each task."""
    for t, p in enumerate(passes):
        if len(p) < n:
            raise ValueError(f"task {t} has {len(p)} samples, best-of-{n} needs {n}")
    out = {"average": _mean([_mean([float(x) for x in p[:n]]) for p in passes]),
           "oracle": _mean([float(any(p[:n])) for p in passes])}
    if scores is not None:
        out["rm"] = _mean([float(p[select_best(s[:n])]) for p, s in zip(passes, scores)])
    return out


def summarize(greedy: Sequence[bool], passes: Sequence[Sequence[bool]],
              scores: Sequence[Sequence[float | None]] | None, n_list: Sequence[int]) -> dict:
    """One benchmark's results: tasks, greedy, and the best-of-N columns for every N."""
    return {"tasks": len(passes), "greedy": _mean([float(g) for g in greedy]),
            "best_of": {str(n): bon_columns(passes, scores, n) for n in n_list}}


def format_table(results: dict[str, dict]) -> str:
    """benchmark x N rows, the paper's columns, in percent."""
    head = f"{'benchmark':<16}{'tasks':>6}{'N':>5}{'greedy':>9}{'average':>9}{'oracle':>9}{'RM':>9}"
    lines = [head, "-" * len(head)]
    pct = lambda x: f"{100 * x:9.1f}" if x is not None and not math.isnan(x) else f"{'-':>9}"  # noqa: E731
    for name, r in results.items():
        for n, cols in r["best_of"].items():
            lines.append(f"{name:<16}{r['tasks']:>6}{n:>5}{pct(r['greedy'])}{pct(cols['average'])}"
                         f"{pct(cols['oracle'])}{pct(cols.get('rm'))}")
    return "\n".join(lines)
