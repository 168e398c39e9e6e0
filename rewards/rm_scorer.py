"""RMScorer: score (question, program) pairs with a trained reward model, in batches.

The plain class a reward actor wraps (Ray wraps it at the edge; nothing here imports ray). Inputs are
sorted by length so each batch pads little; scoring runs without grad, in bf16 on a GPU and fp32 on
CPU, with the value head kept in fp32. ``score`` returns rewards: optionally normalised, then
clipped to [-clip, clip] (the RL trainer gets raw scores and does both in its driver, where the
running statistics are checkpointed: trainer/reward_norm.py). ``raw_scores`` returns the model's
numbers untouched: use it for best-of-N, where clipping could tie the best candidates.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from rewards.reward_model import RewardModel, encode_for_scoring, pad_batch


class RunningStats:
    """Streaming mean and population variance (Chan/Welford merge), checkpointable."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: Sequence[float]) -> None:
        vals = [v for v in values if math.isfinite(v)]  # one NaN must not poison every later reward
        if not vals:
            return
        n = len(vals)
        mean = sum(vals) / n
        m2 = sum((v - mean) ** 2 for v in vals)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    def zscore(self, values: Sequence[float]) -> list[float]:
        """``values`` standardised with the statistics so far (std 1 until two values are seen, or
        while it is ~0: a constant stream is shifted, not blown up)."""
        std = self.std if self.count >= 2 and self.std > 1e-6 else 1.0
        return [(v - self.mean) / std for v in values]

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


class RMScorer:
    """Batched reward-model scoring.

    normalize: None (raw), "running" (z-score with the mean/std of every score seen so far,
    including this call's), or a fixed (mean, std). clip: None or c > 0, clip to [-c, c] after
    normalising.
    """

    def __init__(self, model_path: str, device: str | torch.device | None = None, batch_size: int = 16,
                 max_length: int = 2048, normalize: None | str | tuple[float, float] = None,
                 clip: float | None = 10.0, dtype: torch.dtype | None = None):
        from transformers import AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be None or > 0, got {clip}")
        if not (normalize is None or normalize == "running"
                or (isinstance(normalize, (tuple, list)) and len(normalize) == 2 and normalize[1] > 0)):
            raise ValueError(f"normalize must be None, 'running' or (mean, std > 0), got {normalize!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.batch_size, self.max_length, self.normalize, self.clip = batch_size, max_length, normalize, clip
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.model = RewardModel.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        self.model.v_head.float()  # a bf16 head would round every score to ~3 significant digits
        self.stats = RunningStats()

    @torch.inference_mode()
    def raw_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Model scores for (question, program) pairs, in input order; no normalising or clipping."""
        seqs = [encode_for_scoring(self.tokenizer, q, p, self.max_length) for q, p in pairs]
        # Longest first: batches of similar length pad little, and an out-of-memory shows up at once.
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = [0.0] * len(seqs)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            ids, mask = pad_batch([seqs[i] for i in idx], self.pad_id)
            scores = self.model(ids.to(self.device), mask.to(self.device)).tolist()
            for i, s in zip(idx, scores):
                out[i] = s
        return out

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Rewards for (question, program) pairs: raw scores, normalised if asked, then clipped."""
        raw = self.raw_scores(pairs)
        if self.normalize is None:
            rewards = raw
        elif self.normalize == "running":
            self.stats.update(raw)
            rewards = self.stats.zscore(raw)
        else:
            mean, std = self.normalize
            rewards = [(s - mean) / std for s in raw]
        if self.clip is not None:
            rewards = [min(max(r, -self.clip), self.clip) for r in rewards]
        return rewards

    __call__ = score
