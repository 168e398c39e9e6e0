"""Sandbox throughput on MBPP's canonical solutions, three ways in one run:

  naive    a fresh bwrap + python per test (same isolation flags as ours, no warm interpreter)
  mp       a multiprocessing.Process per program, as the common evaluation harnesses do
           (human-eval style: fork, exec program + tests, report through a Manager list; NO isolation)
  ours     sandbox.SandboxPool: long-lived bwrap+seccomp workers with a warm forking interpreter

Prints programs/s and tests/s for each and the ratios against naive and mp.

    python benchmarks/sandbox_throughput.py [--workers 2] [--limit N] [--naive_limit N] [--data ../shared/data]
                                            [--python /usr/bin/python3.11]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.options import add_deprecated  # noqa: E402
from sandbox import Job, SandboxPool  # noqa: E402
from sandbox.isolation import (SCRATCH, bwrap_argv, data_fd, discover_interpreter,  # noqa: E402
                               seccomp_filter_fd)
from sandbox.types import SandboxConfig  # noqa: E402


def load_mbpp(data_dir: Path) -> list[Job]:
    jobs = []
    with open(data_dir / "mbpp.jsonl") as f:
        for line in f:
            r = json.loads(line)
            jobs.append(Job(f"mbpp_{r['task_id']}", r["code"].replace("\r\n", "\n"), tuple(r["test_list"]),
                            setup=r["test_setup_code"].replace("\r\n", "\n")))
    return jobs


# ----------------------------------------------------------------------------- naive
def naive_one_test(cfg: SandboxConfig, job: Job, test: str) -> bool:
    """One fresh sandbox per test: the program, its setup and one assert, as a script."""
    interp = discover_interpreter(cfg.python)
    script = f"{job.program}\n{job.setup}\n{test}\n".encode()
    fds = [seccomp_filter_fd(), data_fd(script, "naive-script")]
    argv = bwrap_argv(cfg, interp, None, fds[0], fds[1])
    # same isolation; the command runs the test script instead of the warm harness
    cut = argv.index(interp.executable, argv.index("--seccomp"))
    argv = argv[:cut] + [interp.executable, "-I", "-S", "-B", "/.sandbox/harness.py"]
    try:
        p = subprocess.run(argv, pass_fds=fds, env={}, capture_output=True, timeout=10, cwd=SCRATCH)
        return p.returncode == 0
    except subprocess.TimeoutExpired:
        return False
    finally:
        for fd in fds:
            os.close(fd)


CONFIG = SandboxConfig()  # --python sets the interpreter of naive and ours


def run_naive(jobs: list[Job], workers: int) -> tuple[float, int, int]:
    cfg = CONFIG
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        per_job = list(ex.map(lambda j: all(naive_one_test(cfg, j, t) for t in j.tests), jobs))
    return time.perf_counter() - t0, sum(per_job), sum(len(j.tests) for j in jobs)


# ----------------------------------------------------------------------------- multiprocessing per program
def _mp_target(program: str, setup: str, tests: tuple[str, ...], out) -> None:
    g: dict = {}
    try:
        exec(program, g)
        exec(setup, g)
        for t in tests:
            exec(t, g)
        out.append("passed")
    except BaseException:  # noqa: BLE001
        out.append("failed")


def mp_one_program(manager, job: Job) -> bool:
    out = manager.list()
    p = mp.Process(target=_mp_target, args=(job.program, job.setup, job.tests, out))
    p.start()
    p.join(timeout=10)
    if p.is_alive():
        p.kill()
        p.join()
    return len(out) == 1 and out[0] == "passed"


def run_mp(jobs: list[Job], workers: int) -> tuple[float, int, int]:
    with mp.Manager() as manager:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            ok = list(ex.map(lambda j: mp_one_program(manager, j), jobs))
        return time.perf_counter() - t0, sum(ok), sum(len(j.tests) for j in jobs)


# ----------------------------------------------------------------------------- ours
LAST_RESULTS: list = []


def run_ours(jobs: list[Job], workers: int) -> tuple[float, int, int]:
    with SandboxPool(CONFIG, workers=workers) as pool:
        pool.run_many(jobs[:20])  # warm-up: the pool's own start-up is not throughput
        t0 = time.perf_counter()
        results = pool.run_many(jobs)
        dt = time.perf_counter() - t0
    LAST_RESULTS[:] = results
    return dt, sum(r.all_passed for r in results), sum(len(j.tests) for j in jobs)


def schedule_floor(jobs: list[Job], results: list, workers: int) -> None:
    """What no scheduler can beat: a program's tests run in order, so the slowest program alone bounds
    the run from below (MBPP 123 sums amicable numbers below 9999: ~2.4 s of pure-Python CPU)."""
    slow = max(results, key=lambda r: r.wall_s)
    position = [j.id for j in jobs].index(slow.id)
    print(f"slowest  {slow.id}: {slow.wall_s:.2f} s wall, {slow.cpu_s:.2f} s CPU; no schedule of these "
          f"{len(jobs)} programs ends before it: at most {len(jobs) / slow.wall_s:.0f} programs/s "
          f"(it is job {position} of {len(jobs)} in input order)")
    rest = [j for j in jobs if j.id != slow.id]
    dt, ok, n_tests = run_ours(rest, workers)
    print(f"ours without {slow.id}: {len(rest)} programs in {dt:.2f} s: {len(rest) / dt:.1f} programs/s "
          f"{n_tests / dt:.1f} tests/s ({ok} all passed)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--python", help="interpreter inside the sandbox (default: this one's base interpreter)")
    ap.add_argument("--limit", type=int, default=0, help="programs for ours and mp (0: all 974)")
    ap.add_argument("--naive_limit", type=int, default=200, help="programs for the naive executor (it is slow)")
    ap.add_argument("--json", help="also write the figures here")
    add_deprecated(ap, "--naive-limit", "--naive_limit")
    args = ap.parse_args()
    CONFIG.python = args.python
    jobs = load_mbpp(Path(os.environ.get("ACECODER_DATA_DIR", args.data)))
    jobs = jobs[: args.limit] if args.limit else jobs
    # the naive executor gets an evenly spread subset of the same programs
    step = max(1, len(jobs) // max(1, args.naive_limit))
    naive_jobs = jobs[::step][: args.naive_limit]
    rows = {}
    for name, fn, js in (("naive", run_naive, naive_jobs), ("mp", run_mp, jobs), ("ours", run_ours, jobs)):
        dt, ok, n_tests = fn(js, args.workers)
        rows[name] = {"programs": len(js), "seconds": dt, "programs_per_s": len(js) / dt,
                      "tests_per_s": n_tests / dt, "all_passed": ok}
        print(f"{name:6s} {len(js):5d} programs in {dt:7.2f} s: {len(js) / dt:8.1f} programs/s "
              f"{n_tests / dt:9.1f} tests/s  ({ok} all passed)", flush=True)
    ours = rows["ours"]["programs_per_s"]
    print(f"ours / naive = {ours / rows['naive']['programs_per_s']:.1f}x   "
          f"ours / mp = {ours / rows['mp']['programs_per_s']:.1f}x   (workers={args.workers}, cpus={os.cpu_count()})")
    schedule_floor(jobs, LAST_RESULTS, args.workers)
    if args.json:
        Path(args.json).write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
