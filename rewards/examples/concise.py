"""An example custom reward: prefer answers whose program is short.

Use it beside the test reward with, for example::

    --reward tests,rewards.examples.concise:ConciseCode --reward_weights 1.0,0.1 \
    --reward_kwargs '{"rewards.examples.concise:ConciseCode": {"max_lines": 30}}'
"""
from __future__ import annotations

from typing import Sequence

from common.extract import extract_code
from rewards.base import Reward, RewardResult, Sample


class ConciseCode(Reward):
    """1.0 for a program of at most ``max_lines`` lines, falling linearly to 0 at twice that."""

    name = "concise"

    def __init__(self, max_lines: int = 30, **kwargs):
        super().__init__(**kwargs)
        self.max_lines = max_lines

    def score(self, samples: Sequence[Sample]) -> list[RewardResult]:
        out = []
        for s in samples:
            code = extract_code(s.response)
            if not code.strip():
                out.append(RewardResult(0.0, "no_code"))
                continue
            n = len([line for line in code.splitlines() if line.strip()])
            value = 1.0 if n <= self.max_lines else max(0.0, 2.0 - n / self.max_lines)
            out.append(RewardResult(value, "ok", {"lines": n}))
        return out
