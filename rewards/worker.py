"""The reward actor: a plain class owning the configured rewards (Ray wraps it at the edge).

Each reward is called on the whole batch; a reward that raises, or returns the wrong number of
results, gives every sample 0 with status "error" for that reward, and the others still count.
Deadlines and restarts of a hung or dead actor belong to the caller (``RewardPool`` in trainer/actors.py).
"""
from __future__ import annotations

import importlib
import traceback
from typing import Any, Sequence

from .base import Reward, RewardResult, Sample, as_result, combine, failed


def load_reward_class(spec: str) -> type[Reward]:
    """'tests', 'rm' or 'package.module:ClassName'. The registry lives here, beside its one user, so that
    rewards/base.py (what every reward subclasses) imports none of its subclasses."""
    if spec == "tests":
        from .test_reward import TestReward

        return TestReward
    if spec == "rm":
        from .rm_reward import RMReward

        return RMReward
    module, _, cls_name = spec.partition(":")
    if not module or not cls_name:
        raise ValueError(f"reward {spec!r}: expected tests, rm or module:Class")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"reward {spec!r}: cannot import it ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Reward)):
        raise ValueError(f"reward {spec!r}: {cls_name} is not a subclass of rewards.base.Reward")
    return cls


class RewardWorker:
    def __init__(self, specs: Sequence[str], weights: Sequence[float] | None = None,
                 kwargs: dict[str, dict[str, Any]] | None = None):
        kwargs = kwargs or {}
        self.names = list(specs)
        self.weights = list(weights) if weights else [1.0] * len(self.names)
        self.rewards = [load_reward_class(spec)(**kwargs.get(spec, {})) for spec in self.names]

    def score(self, samples: Sequence[Sample]) -> list[RewardResult]:
        per_reward = []
        for name, reward in zip(self.names, self.rewards):
            try:
                raw = reward.score(samples)
                if len(raw) != len(samples):
                    raise ValueError(f"returned {len(raw)} results for {len(samples)} samples")
                per_reward.append([as_result(x) for x in raw])
            except Exception as e:  # noqa: BLE001 - a reward's bug must not stop training
                why = f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
                per_reward.append(failed(len(samples), "error", why))
        return combine(per_reward, self.weights, self.names)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        for r in self.rewards:
            r.close()
