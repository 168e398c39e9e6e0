"""Command line: run jobs from a JSONL file through the sandbox, results appended as they finish.

    python -m sandbox run --input JOBS.jsonl --output RESULTS.jsonl [--sandbox_workers N] [--sandbox_timeout_s S]
        [--sandbox_memory_mb M] [--sandbox_<field> V ...]

The pool's settings are the ``--sandbox_<field>`` options of every command (one per SandboxConfig
field, sandbox/options.py); the spellings before them (``--workers``, ``--timeout-s``, ``--memory-mb``,
``--program-timeout-s``, ``--cgroups``, ``--UNSAFE-no-isolation``, ``--quiet``) still work this release,
with a warning.

Each input line: {"id": str, "program": str, "tests": [str, ...]} with optional "setup" (str),
"timeout_s", "memory_mb", "test_timeouts_s" (one CPU budget per test, e.g. the EvalPlus mode's, see
data_prep/evalplus_mode.py) and "stop_at_first_failure" (bool). Each output line, in input order:
{"id", "pass_rate", "all_passed", "tests": [{"status": ...}, ...], ...}. A malformed line yields
{"id": ..., "line": N, "error": "..."} and the other jobs go on. Re-running with the same output
resumes: lines already written are kept and their jobs are not run again.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterator

from common.options import add_bool_option, add_deprecated

from . import options
from .isolation import SandboxUnavailable
from .pool import SandboxPool
from .types import Job


def parse_job(line: str, lineno: int, path: str) -> Job:
    """A Job from one JSONL line; ValueError names the line and field at fault."""
    where = f"{path}:{lineno}"
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object")
    if not isinstance(d.get("id"), str):
        raise ValueError(f"{where}: field 'id' must be a string")
    if not isinstance(d.get("program"), str):
        raise ValueError(f"{where}: field 'program' must be a string")
    tests = d.get("tests", d.get("test_cases"))
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise ValueError(f"{where}: field 'tests' must be a list of strings")
    setup = d.get("setup", "")
    if not isinstance(setup, str):
        raise ValueError(f"{where}: field 'setup' must be a string")
    timeout, memory = d.get("timeout_s"), d.get("memory_mb")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not 0 < timeout <= 3600):
        raise ValueError(f"{where}: field 'timeout_s' must be a number in (0, 3600]")
    if memory is not None and (not isinstance(memory, int) or isinstance(memory, bool) or not 16 <= memory <= 1 << 20):
        raise ValueError(f"{where}: field 'memory_mb' must be an integer in [16, 1048576]")
    budgets, stop = d.get("test_timeouts_s"), d.get("stop_at_first_failure", False)
    if budgets is not None and (not isinstance(budgets, list) or len(budgets) != len(tests) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 3600 for t in budgets)):
        raise ValueError(f"{where}: field 'test_timeouts_s' must be a list of numbers in (0, 3600], one per test")
    if not isinstance(stop, bool):
        raise ValueError(f"{where}: field 'stop_at_first_failure' must be true or false")
    return Job(d["id"], d["program"], tuple(tests), setup=setup, timeout_s=timeout, memory_mb=memory,
               test_timeouts_s=budgets, stop_at_first_failure=stop)


def _completed_lines(path: str) -> int:
    """Whole lines already in the output (a torn last line is cut off)."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            data = data[: data.rfind(b"\n") + 1]
    return data.count(b"\n")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    cfg = options.sandbox_config_from_args(args, parser)
    skip = _completed_lines(args.output)
    bad = 0
    with open(args.input, encoding="utf-8") as fin:
        lines = [(i, line) for i, line in enumerate(fin, start=1) if line.strip()]
    todo = lines[skip:]
    if skip:
        print(f"resuming: {skip} of {len(lines)} results already in {args.output}", file=sys.stderr)
    entries: list[Job | dict] = []
    for lineno, line in todo:
        try:
            entries.append(parse_job(line, lineno, args.input))
        except ValueError as e:
            entries.append({"id": _peek_id(line), "line": lineno, "error": str(e)})
            print(f"error: {e}", file=sys.stderr)
            bad += 1
    try:
        pool = SandboxPool(cfg)
    except SandboxUnavailable as e:
        print(f"sandbox unavailable: {e}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    n_pass = 0
    with pool, open(args.output, "a", encoding="utf-8") as fout:
        jobs = [e for e in entries if isinstance(e, Job)]
        results: Iterator = pool.imap(jobs)
        for e in tqdm(entries, desc="sandbox", unit="prog", disable=not args.progress_bar, file=sys.stderr):
            rec = next(results).to_dict() if isinstance(e, Job) else e
            n_pass += bool(rec.get("all_passed"))
            fout.write(json.dumps(rec) + "\n")
            fout.flush()
    print(f"{len(entries)} jobs: {n_pass} all passed, {bad} malformed line(s)", file=sys.stderr)
    return 1 if bad else 0


def _peek_id(line: str) -> object:
    try:
        d = json.loads(line)
        return d.get("id") if isinstance(d, dict) else None
    except ValueError:
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a JSONL file of jobs", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--input", required=True, help="JSONL jobs: {id, program, tests[, setup, timeout_s, memory_mb, "
                                                  "test_timeouts_s, stop_at_first_failure]}")
    r.add_argument("--output", required=True, help="JSONL results, appended; an existing file is resumed")
    add_bool_option(r, "--progress_bar", True, "show a progress bar")
    add_deprecated(r, "--quiet", "--progress_bar", const=False)
    options.add_sandbox_options(r, old_spellings=options.OLD_SPELLINGS, workers=os.cpu_count() or 1)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    return run(args, p)


if __name__ == "__main__":
    sys.exit(main())
