"""The host side of the sandbox: a pool of long-lived sandboxed workers.

Each worker is one bwrap sandbox whose pid 1 is the warm interpreter (sandbox/harness.py). The pool
sends it one job at a time, reads the frames it relays, decides every test on the host (see
sandbox/checks.py) and returns a typed Result. A worker that breaks is killed and restarted; the
tests it had not reported are failed with a status that says why.

This module holds the pool: starting the slots' limits (uids, cgroups), handing jobs to idle workers,
stop-at-first-failure chunking and ``imap``'s ordered window. One worker process, its spawning,
restarts and wire framing, is sandbox/worker.py's.
"""
from __future__ import annotations

import dataclasses
import os
import queue
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

from . import cgroups as cg
from .checks import TestPlan, plan_test
from .expected_cache import ExpectedValueCache
from .isolation import SandboxUnavailable, UidLease, check_host
from .types import Job, Result, SandboxConfig, TestResult
from .verdicts import skip_after_failure
from .worker import Spawner, Worker, slot_memory_bytes


class SandboxPool:
    """A pool of sandboxed workers. Use as a context manager::

        with SandboxPool(workers=2) as pool:
            result = pool.run(Job("a", "def f(x): return x", ["assert f(1) == 1"]))
            results = pool.run_many(jobs)
    """

    def __init__(self, config: SandboxConfig | None = None, **overrides: object):
        cfg = dataclasses.replace(config) if config is not None else SandboxConfig()  # overrides stay ours
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise TypeError(f"unknown sandbox option {k!r}")
            setattr(cfg, k, v)
        if cfg.workers < 1:
            raise ValueError("sandbox workers must be >= 1")
        self.cfg = cfg
        if cfg.unsafe_no_isolation:
            import warnings

            warnings.warn("SANDBOX ISOLATION IS OFF (unsafe_no_isolation=True): programs run as this user, "
                          "with no bwrap, seccomp or cgroups. Debugging only; never for model output.",
                          stacklevel=2)
        check_host(cfg)
        self._uids: UidLease | None = None
        self.cgroups: cg.SlotCgroups | None = None
        self._spawner = Spawner()
        self.workers: list[Worker] = []
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        try:
            self._setup_limits()
            uids = self._uids.uids if self._uids else [None] * cfg.workers
            self.expected = ExpectedValueCache()  # for jobs with reuse_expected, shared by the workers
            self.workers = [Worker(i, cfg, self._spawner, uids[i], self.cgroups, self.expected)
                            for i in range(cfg.workers)]
            with ThreadPoolExecutor(cfg.workers) as ex:
                list(ex.map(lambda w: w.start(), self.workers))
        except BaseException:
            self.close()
            raise
        for w in self.workers:
            self._idle.put(w)

    def _setup_limits(self) -> None:
        cfg = self.cfg
        if cfg.unsafe_no_isolation:
            return
        if os.getuid() == 0:
            self._uids = UidLease(cfg.uid_base, cfg.workers)
        version = cg.detect() if cfg.cgroups != "off" else None
        if version is None and cfg.cgroups == "required":
            raise SandboxUnavailable(
                "cgroups are required (sandbox cgroups='required') but this process cannot create any. Fix: "
                "run the pool as root, or start it inside a delegated cgroup v2 subtree, e.g. "
                "`systemd-run --user --scope -p Delegate=yes <command>`; or set cgroups='off' to rely on "
                "rlimits alone (a fork bomb that also allocates is then bounded only per process).")
        if version is None and os.getuid() != 0:
            import warnings

            warnings.warn("sandbox: no cgroups available: process counts and total memory of a program are "
                          "not bounded beyond per-process rlimits (set cgroups='required' to refuse instead)",
                          stacklevel=3)
        if version is None:
            return
        slot = slot_memory_bytes(cfg, cfg.memory_mb)
        pool_cap = cfg.pool_memory_mb << 20 if cfg.pool_memory_mb else None
        avail = _mem_available()
        if avail is not None:
            ceiling = avail - (cfg.memory_floor_mb << 20)
            if ceiling <= 64 << 20:
                raise SandboxUnavailable(f"only {avail >> 20} MiB of memory is available and the sandbox "
                                         f"memory floor is {cfg.memory_floor_mb} MiB: lower memory_floor_mb")
            pool_cap = min(pool_cap, ceiling) if pool_cap else ceiling
        self.cgroups = cg.SlotCgroups(version, cfg.workers, slot, pool_cap, cfg.max_processes + 4)

    # -- running
    def run(self, job: Job) -> Result:
        """Run one program against its tests on the first idle worker (thread-safe)."""
        if self._closed:
            raise RuntimeError("sandbox pool is closed")
        plans = [plan_test(t) for t in job.tests]
        w = self._idle.get()
        try:
            if job.stop_at_first_failure:
                return self._run_stopping(w, job, plans)
            return self._run_on(w, job, plans)
        finally:
            self._idle.put(w)

    @staticmethod
    def _run_on(w: Worker, job: Job, plans: list[TestPlan], early_stop: bool = False) -> Result:
        try:
            result = w.run(job, plans, early_stop)
        except BaseException:
            # Anything unexpected while a job runs: the worker dies with the job's unread frames,
            # so the next program on it gets a fresh worker and only its own verdicts.
            w.kill()
            raise
        if any(t.reason == "sandbox_worker" for t in result.tests):
            # The worker itself died (killed from outside, or the node's OOM killer): that says
            # nothing about the program, so run it once more on the restarted worker.
            result = w.run(job, plans, early_stop)
        return result

    def _run_stopping(self, w: Worker, job: Job, plans: list[TestPlan]) -> Result:
        """Stop-at-first-failure: a wrong value is only known here, so the tests go in chunks (the program
        runs afresh for each) and no chunk starts after one with a failure. When every test left compares
        its one hole with a literal, one chunk holds them all and the harness ends it after the first value
        that is not the literal's encoding; if that test passes here after all (1 == 1.0), the rest go on in
        chunks of 1, 4, 16, ..., the only size while a test without a literal is left."""
        tests: list[TestResult] = []
        output, cpu, expected_cpu, wall, start, size = "", 0.0, 0.0, 0.0, 0, 1
        early = all(p.equal_payload is not None for p in plans)
        while start < len(plans):
            end = len(plans) if early else min(len(plans), start + size)
            budgets = job.test_timeouts_s[start:end] if job.test_timeouts_s is not None else None
            part = dataclasses.replace(job, tests=job.tests[start:end], test_timeouts_s=budgets)
            r = self._run_on(w, part, plans[start:end], early_stop=early)
            first = next((i for i, t in enumerate(r.tests) if t.status != "passed"), len(r.tests))
            output, cpu, wall = output or r.output, cpu + r.cpu_s, wall + r.wall_s
            expected_cpu += r.expected_cpu_s
            if early and 0 < first < len(r.tests) and r.tests[first].reason == "not_run":
                tests += r.tests[:first]  # the harness stopped after a test that passed here
                start, early = start + first, False
                continue
            tests += r.tests
            if first < len(r.tests):
                break
            start, size = end, size * 4
        tests += [TestResult("failed")] * (len(plans) - len(tests))  # replaced by `skipped` below
        return Result(job.id, tuple(skip_after_failure(tests)), output=output, cpu_s=cpu,
                      expected_cpu_s=expected_cpu, wall_s=wall)

    def imap(self, jobs: Iterable[Job], lookahead: int | None = None) -> Iterator[Result]:
        """Results in input order, while up to ``lookahead`` later jobs run or wait (default 2048 per
        worker). The window bounds memory on a stream; while a slow program holds the head, the other
        workers go on only through the window: with 256 per worker, MBPP's 2.4 CPU-second program left
        the other worker idle for 1.6 s of a 3.2 s run. Jobs are read lazily."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.cfg.workers, thread_name_prefix="sandbox-job")
        window = lookahead or 2048 * self.cfg.workers
        pending: deque[Future] = deque()
        for job in jobs:
            pending.append(self._executor.submit(self.run, job))
            while pending and pending[0].done():
                yield pending.popleft().result()
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def run_many(self, jobs: Iterable[Job]) -> list[Result]:
        """All results, in input order (every job is queued at once: no window to stall on)."""
        jobs = list(jobs)
        return list(self.imap(jobs, lookahead=max(1, len(jobs))))

    # -- life cycle
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for w in self.workers:
            w.kill()
        if self.cgroups is not None:
            self.cgroups.close()
        if self._uids is not None:
            self._uids.close()
        self._spawner.close()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
