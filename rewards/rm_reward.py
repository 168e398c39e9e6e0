"""The reward-model reward ("rm"): a Bradley-Terry RM scores (question, program) pairs.

Configured by the trainer as ``--reward rm --reward_pretrain PATH``: the controller passes
``model_path``, ``batch_size`` and ``clip=None``, and ``--reward_kwargs '{"rm": {...}}'`` can add or
override any keyword below except ``clip``. That one, with ``normalize``, belongs to the driver: the
trainer normalises (``--normalize_reward``) and clips the raw scores there (trainer/reward_norm.py),
because running statistics kept in this actor would be lost by a checkpoint or a replaced actor.

What is scored, per sample:

- the program, not the raw answer: ``extract_code`` of the whole answer, as the pairs the RM was
  trained on were built (data_prep/pairs.py: chosen and rejected are extracted programs). For
  completion-style records (``program_prefix``) the whole answer is ``program_prefix + response``,
  the program the test reward runs; extraction then only normalises it (trailing newline, trailing
  asserts), so it is scored exactly as a pair built from that record's answers would have shown it to
  the RM in training;
- an answer with no code gets ``no_code_value`` (default 0, the test reward's value) and status
  ``no_code``; it is not scored, and does not enter the trainer's running normalisation statistics.
  We do not fall back to scoring the raw text: the RM never saw prose as an answer, and its score for
  one would be meaningless, possibly high;
- a non-finite score (NaN/inf from a broken checkpoint or an overflow) gives 0 with status ``error``.

Values are the RM's scores clipped to [-clip, clip] (``clip=None``: raw).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from common.extract import extract_code

from .base import Reward, RewardResult, Sample


def sample_program(sample: Sample) -> str:
    """What the RM scores for a sample: the program extracted from the whole answer ("" if none)."""
    prefix = sample.record.get("program_prefix")
    return extract_code(prefix + sample.response if prefix else sample.response)


class RMReward(Reward):
    """Reward-model scores for the extracted programs.

    model_path: a reward model directory (``python -m apps.train_rm`` export or AceCodeRM checkpoint).
    device: None picks cuda when available, else cpu. clip: None or c > 0.
    """

    name = "rm"

    def __init__(self, model_path: str, batch_size: int = 16, max_length: int = 2048,
                 clip: float | None = 10.0, device: str | None = None, no_code_value: float = 0.0,
                 **kwargs: Any):
        from .rm_scorer import RMScorer

        if not model_path:
            raise ValueError("rm reward: model_path is empty; pass --reward_pretrain (the reward model dir)")
        if kwargs.pop("normalize", None) is not None:
            raise ValueError("rm reward: normalize is not the reward's to do: the trainer normalises in its "
                             "driver (--normalize_reward), where the statistics are checkpointed")
        self.no_code_value = float(no_code_value)
        self.scorer = RMScorer(model_path, device=device, batch_size=batch_size, max_length=max_length,
                               normalize=None, clip=clip)
        super().__init__(**kwargs)

    def score(self, samples: Sequence[Sample]) -> list[RewardResult]:
        out: list[RewardResult | None] = [None] * len(samples)
        pairs, where = [], []
        for i, s in enumerate(samples):
            program = sample_program(s)
            if not program.strip():
                out[i] = RewardResult(self.no_code_value, "no_code")
                continue
            pairs.append((s.question, program))
            where.append(i)
        if pairs:
            for i, v in zip(where, self.scorer.score(pairs)):
                if math.isfinite(v):
                    out[i] = RewardResult(float(v), "ok")
                else:
                    out[i] = RewardResult(0.0, "error", {"why": f"reward model returned {v}"})
        return out  # type: ignore[return-value]

    def close(self) -> None:
        import torch

        self.scorer.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
