"""EvalPlus-compatible evaluation: per-test time limits from the reference solution, stop at the first failure.

EvalPlus 0.3.1 (``evalplus/eval/__init__.py`` ``untrusted_check``) gives every input the limit
``max(min_time_limit, gt_time_limit_factor * t)`` with ``min_time_limit = 1.0`` s and
``gt_time_limit_factor = 4.0`` (``evalplus/config.py``), where ``t`` is the time the canonical solution
took on that input (``evalplus/evaluate.py`` ``get_groundtruth``), and by default stops a sample at its
first failing input. EvalPlus measures wall-clock time, so on a loaded machine its verdicts change
between runs; here both the reference time and the candidate's budget are CPU time inside the sandbox,
so a verdict repeats. The RL reward does not use this: it keeps fixed budgets and full pass rates.

Reference times are measured once per machine and cached in one JSON file per machine/interpreter
identity (``evalplus-reference-<tag>.json`` under the cache dir), with one entry per dataset, task and
task content; the file is rewritten atomically under a lock, merged with what other processes wrote.

Measuring: the canonical solution runs on groups of its tests in the sandbox (the job's CPU time minus
that of the same program with an empty test, and minus the CPU of the children that computed expected
values without the program, such as MBPP+/HumanEval+'s ``ref_func(x)``: EvalPlus times the call alone,
and counting the reference function too made such tasks' limits twice EvalPlus'); a group that used
less than ``min_time_limit / factor`` needs no finer look (each of its tests gets the floor), a slower
one is split in eight until single tests are timed. So a task whose reference is fast everywhere costs
two sandbox runs. Times below that resolution are stored as the group's time: an upper bound, enough for the formula.

Where this differs from EvalPlus: a budget covers the test as the program's child runs it (the call and
the encoding of its value; for the tests that still compare inside the sandbox, that work too), and
so does the reference time it comes from; EvalPlus times the call alone. EvalPlus' per-task wall cap
(60 s for all inputs together) is not copied: the pool's ``program_timeout_s`` bounds a program.

Use from Python (``apps.bon_eval --evalplus_mode`` does this)::

    budgets = evalplus_time_limits(records, pool)  # {record id: one CPU budget per test}
    Job(rid, program, tests, setup=setup, test_timeouts_s=budgets[rid], stop_at_first_failure=True,
        reuse_expected=True)  # expected values (ref_func) computed once, as EvalPlus' ground truth
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from common.io import atomic_write_text

MIN_TIME_LIMIT_S = 1.0  # evalplus/config.py DEFAULT_MIN_TIME_LIMIT
TIME_LIMIT_FACTOR = 4.0  # evalplus/config.py DEFAULT_GT_TIME_LIMIT_FACTOR
CACHE_ENV = "ACECODER_CACHE_DIR"
_EMPTY_TEST = "pass"
_METHOD = 2  # how reference times are measured; 2: expected values' CPU not counted (older caches re-measure)
_SPLIT = 8  # a slow group is split in this many parts: few levels, each slow test re-timed rarely


@dataclass(frozen=True)
class EvalPlusLimits:
    """How per-test budgets are derived from the reference solution's CPU time."""

    min_time_limit_s: float = MIN_TIME_LIMIT_S
    time_limit_factor: float = TIME_LIMIT_FACTOR

    def __post_init__(self) -> None:
        if not (self.min_time_limit_s > 0 and self.time_limit_factor > 0):
            raise ValueError(f"EvalPlus limits: min_time_limit_s ({self.min_time_limit_s}) and "
                             f"time_limit_factor ({self.time_limit_factor}) must be > 0")

    def limit(self, reference_s: float) -> float:
        """EvalPlus' formula: max(min_time_limit, factor * reference time)."""
        return max(self.min_time_limit_s, self.time_limit_factor * reference_s)

    @property
    def resolution_s(self) -> float:
        """Reference times below this all give the floor, so they need not be measured exactly."""
        return self.min_time_limit_s / self.time_limit_factor


def default_cache_dir() -> Path:
    """``$ACECODER_CACHE_DIR``, else ``$XDG_CACHE_HOME/acecoder`` or ``~/.cache/acecoder``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "acecoder"


def machine_identity(pool) -> dict[str, Any]:
    """What makes CPU times comparable: the host, its CPU model and count, and the sandbox's interpreter."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    python = pool.cfg.python or getattr(sys, "_base_executable", None) or sys.executable
    return {"method": _METHOD, "host": platform.node(),  # how, where and with what the times were taken
            "machine": platform.machine(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": os.path.realpath(python), "python_version": pool.workers[0].info.get("python", "")}


def task_key(rec: dict) -> str:
    """A task as a cache key: dataset, id and a hash of what runs (solution, setup, tests)."""
    content = json.dumps([rec.get("canonical_solution"), rec.get("test_setup") or "", list(rec["test_cases"])])
    return f"{rec.get('source', '')}/{rec['id']}/{hashlib.sha1(content.encode()).hexdigest()[:16]}"


class ReferenceTimeCache:
    """Reference CPU times per test, one JSON file per machine identity."""

    def __init__(self, cache_dir: str | os.PathLike, identity: dict[str, Any]):
        tag = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"evalplus-reference-{tag}.json"
        self.identity = identity
        self.entries: dict[str, dict] = self._load()

    def _load(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{self.path}: not a reference-time cache ({e}); delete it to measure again") from None
        if not isinstance(data, dict) or data.get("identity") != self.identity:
            raise ValueError(f"{self.path}: made for {data.get('identity') if isinstance(data, dict) else '?'}, "
                             f"not this machine ({self.identity}); delete it to measure again")
        return dict(data.get("tasks", {}))

    def get(self, key: str, resolution_s: float) -> list[float] | None:
        e = self.entries.get(key)
        return list(e["ref_cpu_s"]) if e and e["resolution_s"] <= resolution_s else None

    def put(self, key: str, ref_cpu_s: list[float], resolution_s: float) -> None:
        self.entries[key] = {"resolution_s": resolution_s, "ref_cpu_s": [round(t, 6) for t in ref_cpu_s]}

    def save(self) -> None:
        """Merge with the file as it is now (another process may have added tasks) and replace it atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mine, self.entries = self.entries, self._load()
            self.entries.update(mine)
            atomic_write_text(self.path, json.dumps({"identity": self.identity, "tasks": self.entries},
                                                    sort_keys=True))


def _job(rec: dict, tests: list[str], job_id: str, timeout_s: float, memory_mb: int | None):
    from sandbox import Job

    # reuse_expected: the expected values (ref_func) computed here are the ones candidates reuse, as EvalPlus
    # computes its ground truth in the same pass that times the reference
    return Job(job_id, rec["canonical_solution"], tuple(tests), setup=rec.get("test_setup") or "",
               timeout_s=timeout_s, memory_mb=memory_mb, reuse_expected=True)


def measure_reference_times(recs: list[dict], pool, limits: EvalPlusLimits, timeout_s: float,
                            memory_mb: int | None = None) -> dict[str, list[float]]:
    """CPU seconds of each record's canonical solution on each of its tests (see the module docstring).

    ``timeout_s`` bounds every measuring run's tests; a reference that runs out of it is recorded as
    ``timeout_s``. Runs one round of sandbox jobs per split level, all tasks together."""
    for rec in recs:
        if not rec.get("canonical_solution"):
            raise ValueError(f"record {rec['id']!r}: no canonical_solution, so no reference times for the "
                             f"EvalPlus mode (it needs the reference solution of every task)")
    base = pool.run_many(_job(r, [_EMPTY_TEST], f"{r['id']}#base", timeout_s, memory_mb) for r in recs)
    overhead = {r["id"]: b.cpu_s for r, b in zip(recs, base)}
    times = {r["id"]: [0.0] * len(r["test_cases"]) for r in recs}
    frontier = [(r, list(range(len(r["test_cases"])))) for r in recs]
    while frontier:
        jobs = [_job(r, [r["test_cases"][i] for i in g], f"{r['id']}#{g[0]}", timeout_s, memory_mb)
                for r, g in frontier]
        nxt = []
        for (rec, group), res in zip(frontier, pool.run_many(jobs)):
            spent = max(0.0, res.cpu_s - res.expected_cpu_s - overhead[rec["id"]])
            if len(group) == 1:
                out = res.tests[0]
                times[rec["id"]][group[0]] = timeout_s if out.status == "timeout" else spent
            elif spent < limits.resolution_s and all(t.status != "timeout" for t in res.tests):
                for i in group:
                    times[rec["id"]][i] = spent  # an upper bound for each: all of them gave the floor
            else:  # split into _SPLIT parts (single tests at the end)
                size = -(-len(group) // _SPLIT)
                nxt += [(rec, group[s:s + size]) for s in range(0, len(group), size)]
        frontier = nxt
    return times


def evalplus_time_limits(recs: Iterable[dict], pool, limits: EvalPlusLimits | None = None,
                         cache_dir: str | os.PathLike | None = None, timeout_s: float = 20.0,
                         memory_mb: int | None = None) -> dict[str, tuple[float, ...]]:
    """Per-test CPU budgets (EvalPlus' formula on cached reference times) for each record, by id."""
    limits = limits or EvalPlusLimits()
    recs = list(recs)
    cache = ReferenceTimeCache(cache_dir if cache_dir is not None else default_cache_dir(), machine_identity(pool))
    ref = {r["id"]: cache.get(task_key(r), limits.resolution_s) for r in recs}
    todo = [r for r in recs if ref[r["id"]] is None]
    if todo:
        print(f"[evalplus_mode] measuring reference times of {len(todo)} tasks (cached in {cache.path})",
              file=sys.stderr, flush=True)
        measured = measure_reference_times(todo, pool, limits, timeout_s, memory_mb)
        for r in todo:
            cache.put(task_key(r), measured[r["id"]], limits.resolution_s)
            ref[r["id"]] = measured[r["id"]]
        cache.save()
    return {rid: tuple(limits.limit(t) for t in times) for rid, times in ref.items()}  # type: ignore[union-attr]
