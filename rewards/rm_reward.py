"""The reward-model reward ("rm"): a Bradley-Terry RM scores (question, program) pairs (SPEC section 3).

Configured by the trainer as ``--reward rm --reward_pretrain PATH`` (optionally ``--normalize_reward``);
the controller passes ``model_path``, ``batch_size``, ``normalize`` and ``clip``, and
``--reward_kwargs '{"rm": {...}}'`` can add or override any keyword below.

What is scored, per sample:

- the program, not the raw answer: ``extract_code`` of the whole answer, as the pairs the RM was
  trained on were built (SPEC section 2 "Pairs"). For completion-style records (``program_prefix``)
  the whole answer is ``program_prefix + response``, the program the test reward runs; extraction
  then only normalises it (trailing newline, trailing asserts), so it is scored exactly as a pair
  built from that record's answers would have shown it to the RM in training;
- an answer with no code gets ``no_code_value`` (default 0, the test reward's value) and status
  ``no_code``; it is not scored, and does not enter the running normalisation statistics. We do not
  fall back to scoring the raw text: the RM never saw prose as an answer, and its score for one would
  be meaningless, possibly high;
- a non-finite score (NaN/inf from a broken checkpoint or an overflow) gives 0 with status ``error``.

Values are ``RMScorer.score``: raw, or normalised with running statistics, then clipped to
[-clip, clip]. The running statistics are part of the trainer checkpoint through ``state_dict`` /
``load_state_dict``, so a resumed run normalises as the original would have.
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
    device: None picks cuda when available, else cpu. normalize: None or "running". clip: None or c > 0.
    """

    name = "rm"

    def __init__(self, model_path: str, batch_size: int = 16, max_length: int = 2048,
                 normalize: str | None = None, clip: float | None = 10.0, device: str | None = None,
                 no_code_value: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        from .rm_scorer import RMScorer

        if not model_path:
            raise ValueError("rm reward: model_path is empty; pass --reward_pretrain (the reward model dir)")
        if normalize not in (None, "running"):
            raise ValueError(f"rm reward: normalize must be None or 'running', got {normalize!r}")
        self.no_code_value = float(no_code_value)
        self.scorer = RMScorer(model_path, device=device, batch_size=batch_size, max_length=max_length,
                               normalize=normalize, clip=clip)

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

    def state_dict(self) -> dict:
        """The running normalisation statistics (empty counts when normalisation is off)."""
        return {"stats": self.scorer.stats.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.scorer.stats.load_state_dict(state["stats"])

    def close(self) -> None:
        import torch

        self.scorer.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
