"""The reward model's values in the driver: running normalisation (--normalize_reward), then clipping.

With ``--normalize_reward`` each training batch's reward-model scores are z-scored with the mean and
population std of every training score seen so far, this batch's included (std 1 until two scores
are seen, or while it is ~0), then clipped to [-reward_clip_range, reward_clip_range]; without it
they are only clipped. Only scored samples (status ok) count: no-code answers, errors and timeouts
keep their default value and stay out of the statistics. ``--reward_kwargs '{"rm": {"normalize":
..., "clip": ...}}'`` overrides both settings.

This runs here rather than in the reward actors so that the statistics are one stream in a fixed
order (each actor used to keep its own, fed in whatever order chunks arrived), are saved with every
checkpoint (an exact resume continues them), and survive a reward actor replaced after a timeout or
a crash. The actors return raw scores; the weighted sum of the rewards is recomputed here from each
result's per-reward parts.
"""
from __future__ import annotations

from typing import Sequence

from rewards.base import RewardResult
from rewards.rm_scorer import RunningStats

from .config import ConfigError, RLConfig

RM = "rm"  # the reward these settings apply to


class RewardNormalizer:
    def __init__(self, names: Sequence[str], weights: Sequence[float] | None, running: bool,
                 clip: float | None):
        if clip is not None and not clip > 0:
            raise ConfigError(f"--reward_kwargs rm.clip: must be None or > 0, got {clip!r}")
        self.names = list(names)
        self.weights = list(weights) if weights else [1.0] * len(self.names)
        self.running, self.clip = running, clip
        self.stats = RunningStats()

    @classmethod
    def from_config(cls, cfg: RLConfig) -> "RewardNormalizer":
        w = cfg.reward
        rm = w.reward_kwargs.get(RM, {})
        normalize = rm.get("normalize", "running" if w.normalize_reward else None)
        if normalize not in (None, "running"):
            raise ConfigError(f"--reward_kwargs rm.normalize: None or 'running', got {normalize!r} "
                              "(--normalize_reward turns it on)")
        return cls(w.reward, w.reward_weights, normalize == "running", rm.get("clip", cfg.train.reward_clip_range))

    @property
    def active(self) -> bool:
        return RM in self.names and (self.running or self.clip is not None)

    def __call__(self, results: Sequence[RewardResult], update: bool = True) -> list[RewardResult]:
        """One batch of combined results with the rm part normalised and clipped and each value
        recombined. ``update``: add the batch to the statistics (training batches; an evaluation
        is scored with them but must not move them)."""
        results = list(results)
        if not self.active:
            return results
        ok = [i for i, r in enumerate(results)
              if isinstance(r.info.get(RM), dict) and r.info[RM].get("status") == "ok"]
        raw = [float(results[i].info[RM]["value"]) for i in ok]
        values = raw
        if self.running:
            if update:
                self.stats.update(raw)
            values = self.stats.zscore(raw)
        if self.clip is not None:
            values = [min(max(v, -self.clip), self.clip) for v in values]
        for i, score, v in zip(ok, raw, values):
            r = results[i]
            info = {**r.info, RM: {**r.info[RM], "value": v, "raw": score}}
            total = sum(wt * info[n]["value"] for n, wt in zip(self.names, self.weights))
            results[i] = RewardResult(total, r.status, info)
        return results

    def state_dict(self) -> dict:
        return {"stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state["stats"])
