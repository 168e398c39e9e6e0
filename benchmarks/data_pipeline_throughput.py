"""Throughput of the data pipeline's sandbox stages, ``filter`` and ``score``, on MBPP.

filter  974 questions, the oracle answer = MBPP's canonical solution, its 3 tests (all kept).
score   the same questions with --samples answers each: the canonical solution and mutants of it
        (tests/data_prep/mbpp_fake.py: wrappers that break chosen calls, return None, an operator
        swap, an off-by-one; some mutants loop until the per-test CPU budget runs out).

Each stage runs as a user runs it (``data_prep.execute.run_filter`` / ``run_score``: one sandbox pool,
records read from and appended to JSONL files); the times include starting the pool. Prints
records/s, programs/s and tests/s per stage, and the load average (the machine may be shared).

    python benchmarks/data_pipeline_throughput.py [--workers N] [--limit N] [--samples 8]
        [--sandbox_timeout_s 5] [--lookahead 1024] [--data_dir ../shared/data]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.io import write_records  # noqa: E402
from common.options import add_deprecated_spellings  # noqa: E402
from data_prep.benchmarks import load_benchmark  # noqa: E402
from data_prep.execute import run_filter, run_score  # noqa: E402
from data_prep.prompts import SOLVE, load_chat_template  # noqa: E402
from sandbox import SandboxConfig  # noqa: E402
from tests.data_prep.mbpp_fake import variants  # noqa: E402


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--limit", type=int, default=0, help="first N MBPP tasks (0: all 974)")
    p.add_argument("--samples", type=int, default=8, help="answers per question for score (at most 8)")
    p.add_argument("--sandbox_timeout_s", type=float, default=5.0, help="per-test CPU budget")
    p.add_argument("--lookahead", type=int, default=1024, help="jobs per worker ahead (4 = pool.imap's window)")
    p.add_argument("--data_dir", default=None,
                   help="folder with mbpp.jsonl (default: $ACECODER_DATA_DIR or ../shared/data)")
    add_deprecated_spellings(p, {"--timeout-s": "--sandbox_timeout_s", "--data-dir": "--data_dir"})
    args = p.parse_args()

    records = load_benchmark("mbpp", args.data_dir)
    records = records[: args.limit] if args.limit else records
    prefill = load_chat_template(SOLVE).messages[-1][1]
    oracle, samples = [], []
    for r in records:
        d = r.to_dict()
        oracle.append({**d, "inferences": [{"model_name": "oracle", "completion_id": 0,
                                            "completion": f"{prefill}{r.canonical_solution.rstrip()}\n```"}]})
        texts = list(variants(r.canonical_solution, r.entry_point).values())[: args.samples]
        samples.append({**d, "inferences": [{"model_name": "policy", "completion_id": i, "completion": prefill + t}
                                            for i, t in enumerate(texts)]})
    cfg = dict(workers=args.workers, timeout_s=args.sandbox_timeout_s)
    lookahead = args.lookahead * args.workers
    print(f"MBPP: {len(records)} questions, {args.workers} workers, per-test CPU budget {args.sandbox_timeout_s} s, "
          f"look-ahead {lookahead} jobs; load average before: {load()}")
    with tempfile.TemporaryDirectory() as d:
        write_records(f"{d}/oracle.jsonl", oracle)
        write_records(f"{d}/samples.jsonl", samples)
        t = time.perf_counter()
        f, _ = run_filter(f"{d}/oracle.jsonl", f"{d}/filtered.jsonl", min_tests=1, sandbox=SandboxConfig(**cfg),
                          progress=False, lookahead=lookahead)
        filter_s = time.perf_counter() - t
        t = time.perf_counter()
        s = run_score(f"{d}/samples.jsonl", f"{d}/scored.jsonl", sandbox=SandboxConfig(**cfg), progress=False,
                      lookahead=lookahead)
        score_s = time.perf_counter() - t
    print()
    print(f"filter: {f.records / filter_s:8.1f} records/s  {f.programs / filter_s:8.1f} programs/s  "
          f"{f.tests / filter_s:8.1f} tests/s   ({f.records} records, {f.tests} tests, {filter_s:.1f} s)")
    print(f"score:  {s.records / score_s:8.1f} records/s  {s.programs / score_s:8.1f} programs/s  "
          f"{s.tests / score_s:8.1f} tests/s   ({s.records} records, {s.answers} answers = "
          f"{s.answers / score_s:.1f} answers/s, {s.programs} distinct programs, {s.tests} tests, "
          f"{s.statuses.get('timeout', 0)} timed-out tests, {score_s:.1f} s)")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
