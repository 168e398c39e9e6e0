"""Held-out evaluation and the pass-rate metrics of training and evaluation alike.

``Evaluation`` is mixed into the controller's ``Trainer`` (trainer/controller.py): it uses ``cfg``,
``engines``, ``pipeline``, ``maker``, ``policy_version`` and the Trainer's ``_drain``.
"""
from __future__ import annotations

import math

import numpy as np

from rewards.base import RewardResult

from .engines.base import SamplingParams
from .experience import PromptItem


class Evaluation:
    """Greedy evaluation through the training engines and rewards."""

    def evaluate(self, items: list[PromptItem]) -> dict:
        """Greedy pass rate on held-out prompts, through the same engines and rewards as training."""
        r = self.cfg.rollout
        size = max(1, math.ceil(len(items) / len(self.engines.engines)))
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=r.generate_max_len, seed=0)
        chunks = [([list(p.prompt_ids) for p in items[s:s + size]], params) for s in range(0, len(items), size)]
        # a pipeline job with the newest weights: in async mode it runs after the rollouts queued before it
        self._drain()
        job = self.pipeline.run(self.policy_version,
                                lambda: self.maker.generate_scored(items, chunks, "-1", {}, training=False))
        results = [res for g in job.result() for res in g.results]
        return {"eval/reward_mean": float(np.mean([res.value for res in results])), **_pass_rates(results, "eval/")}


def _pass_rates(results: list[RewardResult], prefix: str) -> dict:
    """pass_rate: share of samples whose program passes every test (pass@1); test_pass_rate: mean
    share of tests passed. Only when a test reward is among the rewards."""
    rates = [res.info.get("tests", {}).get("pass_rate") for res in results]
    if not rates or any(x is None for x in rates):
        return {}
    return {f"{prefix}pass_rate": float(np.mean([x == 1.0 for x in rates])),
            f"{prefix}test_pass_rate": float(np.mean(rates))}
