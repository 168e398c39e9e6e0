"""Rule reward: run the record's tests against the program in the answer, inside the sandbox."""
from __future__ import annotations

from typing import Any, Sequence

from common.extract import extract_code
from sandbox import Job, SandboxConfig, SandboxPool

from .base import Reward, RewardResult, Sample


def record_tests(record: dict) -> list[str]:
    tests = record.get("test_cases", record.get("tests"))
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise ValueError(f"record {record.get('id')!r}: test_cases must be a list of strings")
    return tests


class TestReward(Reward):
    """1 if every test passes (mode="binary", the paper's rule reward) or the pass rate (mode="pass_rate")."""

    name = "tests"

    def __init__(self, mode: str = "binary", sandbox: SandboxConfig | dict | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if mode not in ("binary", "pass_rate"):
            raise ValueError(f"test reward mode must be binary or pass_rate, not {mode!r}")
        self.mode = mode
        cfg = sandbox if isinstance(sandbox, SandboxConfig) else SandboxConfig(**(sandbox or {}))
        self.pool = SandboxPool(cfg)

    def score(self, samples: Sequence[Sample]) -> list[RewardResult]:
        out: list[RewardResult | None] = [None] * len(samples)
        jobs, where = [], []
        for i, s in enumerate(samples):
            # Completion-style records (the prompt holds the start of the program, as in HumanEval's
            # original format) give that start as program_prefix: the answer continues it verbatim.
            prefix = s.record.get("program_prefix")
            program = prefix + s.response if prefix else extract_code(s.response)
            tests = record_tests(s.record)
            if not program.strip():
                out[i] = RewardResult(0.0, "no_code", {"pass_rate": 0.0})
                continue
            jobs.append(Job(s.sample_id, program, tuple(tests), setup=s.record.get("test_setup") or ""))
            where.append(i)
        for i, res in zip(where, self.pool.run_many(jobs)):
            value = float(res.all_passed) if self.mode == "binary" else res.pass_rate
            statuses = [t.status for t in res.tests]
            status = "ok" if "timeout" not in statuses else "timeout"
            out[i] = RewardResult(value, status, {"pass_rate": res.pass_rate, "tests": len(statuses),
                                                  "timeouts": statuses.count("timeout"),
                                                  "crashes": statuses.count("crashed")})
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.pool.close()
