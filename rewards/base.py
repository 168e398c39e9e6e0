"""What a reward sees and returns, the base class for custom rewards, and how rewards are combined.

A custom reward is a subclass of ``Reward`` named in the config as ``module:Class``::

    from rewards.base import Reward, RewardResult

    class ShortAnswers(Reward):
        def score(self, samples):
            return [RewardResult(1.0 if len(s.response) < 500 else 0.0) for s in samples]

``score`` gets a batch and returns one result (or a plain float) per sample. It runs inside a reward
actor with a deadline: if it raises or overruns, every sample of the batch gets 0 with status
"error" or "timeout" and training goes on.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass(frozen=True)
class Sample:
    """One generated answer and the record it answers."""

    sample_id: str
    question: str
    response: str  # the generated text (without the prompt)
    record: dict = field(default_factory=dict)  # the AceCode record: test_cases, test_setup, ...


@dataclass(frozen=True)
class RewardResult:
    value: float
    status: str = "ok"  # ok, or why the value is a default: timeout, error, no_code, ...
    info: dict = field(default_factory=dict)  # small extras for logging (pass_rate, ...)


class Reward(ABC):
    """Base class of every reward. Keyword arguments come from the config's reward_kwargs."""

    name: str = "reward"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    @abstractmethod
    def score(self, samples: Sequence[Sample]) -> list[RewardResult | float]:
        """One result per sample, in order."""

    def close(self) -> None:
        """Release what the reward holds (sandbox workers, a model)."""


def as_result(x: RewardResult | float | int | None) -> RewardResult:
    """A reward's raw output as a RewardResult; None, NaN or junk become 0 with status 'error'."""
    if isinstance(x, RewardResult):
        if isinstance(x.value, (int, float)) and math.isfinite(x.value):
            return x
        return RewardResult(0.0, "error", {"why": f"non-finite value {x.value!r}"})
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return RewardResult(float(x))
    return RewardResult(0.0, "error", {"why": f"reward returned {type(x).__name__}"})


def failed(n: int, status: str, why: str) -> list[RewardResult]:
    return [RewardResult(0.0, status, {"why": why[:300]}) for _ in range(n)]


def combine(per_reward: Sequence[Sequence[RewardResult]], weights: Sequence[float],
            names: Sequence[str]) -> list[RewardResult]:
    """Weighted sum per sample; the status is the first non-ok status, the info keeps each part."""
    out = []
    for parts in zip(*per_reward):
        value = sum(w * p.value for w, p in zip(weights, parts))
        status = next((p.status for p in parts if p.status != "ok"), "ok")
        info = {name: {"value": p.value, "status": p.status, **p.info} for name, p in zip(names, parts)}
        out.append(RewardResult(value, status, info))
    return out
