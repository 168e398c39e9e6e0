"""The data that crosses the sandbox API: a job in, a result out, and the pool's settings."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from common.options import opt

Status = Literal["passed", "failed", "error", "timeout", "crashed"]


@dataclass(frozen=True)
class Job:
    """One program and its tests. ``setup`` is trusted code run after the program, before the tests."""

    id: str
    program: str
    tests: tuple[str, ...]
    setup: str = ""
    timeout_s: float | None = None  # per-test CPU budget; None: the pool's default
    memory_mb: int | None = None  # address-space limit; None: the pool's default
    test_timeouts_s: tuple[float, ...] | None = None  # per-test CPU budgets, one per test (overrides timeout_s)
    stop_at_first_failure: bool = False  # tests after the first one that does not pass are skipped
    # expected values computed without the program (``ref_func(x)``) are computed once per pool and
    # reused by later jobs with the same setup and test (sandbox/expected_cache.py)
    reuse_expected: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tests", tuple(self.tests))
        if self.test_timeouts_s is not None:
            budgets = tuple(float(t) for t in self.test_timeouts_s)
            if len(budgets) != len(self.tests) or not all(0 < t < float("inf") for t in budgets):
                raise ValueError(f"job {self.id!r}: test_timeouts_s needs one positive finite budget per test "
                                 f"({len(budgets)} for {len(self.tests)} tests)")
            object.__setattr__(self, "test_timeouts_s", budgets)


@dataclass(frozen=True)
class TestResult:
    status: Status
    reason: str = ""  # why, in a word: assertion, exception type, cpu, wall, memory, processes, ...
    detail: str = ""  # a short message for humans

    def to_dict(self) -> dict:
        d = {"status": self.status}
        if self.reason:
            d["reason"] = self.reason
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True)
class Result:
    id: str
    tests: tuple[TestResult, ...]
    output: str = ""  # the program's first stdout/stderr bytes
    cpu_s: float = 0.0  # every child of the job, the ones in expected_cpu_s included
    wall_s: float = 0.0
    # CPU of the children that computed expected values without the program ("clean" holes such as
    # ``ref_func(x)``): what the program's own tests did not spend
    expected_cpu_s: float = 0.0

    @property
    def passed(self) -> int:
        return sum(t.status == "passed" for t in self.tests)

    @property
    def pass_rate(self) -> float:
        """Passed over ALL tests: the denominator is fixed, whatever happened."""
        return self.passed / len(self.tests) if self.tests else 0.0

    @property
    def all_passed(self) -> bool:
        return bool(self.tests) and self.passed == len(self.tests)

    def to_dict(self) -> dict:
        return {"id": self.id, "pass_rate": self.pass_rate, "all_passed": self.all_passed,
                "tests": [t.to_dict() for t in self.tests], "output": self.output,
                "cpu_s": round(self.cpu_s, 4), "wall_s": round(self.wall_s, 4)}


@dataclass
class SandboxConfig:
    """Settings of a sandbox pool. Limits are per program unless said otherwise."""

    workers: int = opt(2, "sandboxed worker slots (one warm interpreter each)")
    timeout_s: float = opt(5.0, "per-test CPU-time budget, enforced from outside the program")
    wall_factor: float = opt(3.0, "per-test wall-clock backstop = wall_factor * timeout_s + 1 s")
    program_timeout_s: float = opt(60.0, "wall-clock deadline for a whole program and all its tests")
    memory_mb: int = opt(1024, "address-space limit of the program (RLIMIT_AS)")
    tmpfs_mb: int = opt(64, "size of the private /tmp")
    file_size_mb: int = opt(16, "largest file the program may write (RLIMIT_FSIZE)")
    max_open_files: int = opt(64, "RLIMIT_NOFILE")
    max_processes: int = opt(32, "processes per slot (cgroup pids.max and, as root, RLIMIT_NPROC)")
    slot_memory_mb: int | None = opt(None, "cgroup memory limit per slot; None: memory_mb + tmpfs + 256")
    pool_memory_mb: int | None = opt(None, "cgroup memory cap of the whole pool; None: no extra cap")
    memory_floor_mb: int = opt(1024, "the pool's cap never lets the node's available memory go below this")
    output_limit_bytes: int = opt(4096, "program stdout/stderr kept per program; the rest is discarded")
    value_limit_bytes: int = opt(1 << 20, "largest encoded test value accepted from the sandbox")
    cgroups: Literal["auto", "required", "off"] = opt("auto", "auto: use them when the host allows it")
    python: str | None = opt(None, "interpreter run inside the sandbox; None: this one's base interpreter")
    extra_ro_paths: tuple[str, ...] = opt((), "more host paths bound read-only (e.g. a site-packages)")
    uid_base: int = opt(2_100_000_000, "as root, slot i runs as uid uid_base + i (a free one is locked)")
    unsafe_no_isolation: bool = opt(False, "DEBUG ONLY: run programs without bwrap/seccomp/cgroups")

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["Job", "Result", "TestResult", "SandboxConfig", "Status"]
