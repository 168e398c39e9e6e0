"""The data that travels between the trainer's actors: prompts of a step, and the rollout batch.

An ``Experience`` holds every sample of a step as padded tensors: prompts left-padded to P tokens,
responses right-padded to T tokens, so ``sequences`` is [N, P + T] and the action (response) tokens
are always the last T columns. Samples of one prompt are contiguous (``group_size`` of them).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import torch

from .engines.base import Completion


@dataclass(frozen=True)
class PromptItem:
    uid: str  # the record's id
    prompt_ids: tuple[int, ...]
    record: dict  # question, test_cases, test_setup, ...


@dataclass
class Experience:
    sequences: torch.Tensor  # [N, P+T] long
    attention_mask: torch.Tensor  # [N, P+T] long
    action_mask: torch.Tensor  # [N, T] bool
    engine_log_probs: torch.Tensor  # [N, T] log-probs the rollout engine reported
    rewards: torch.Tensor | None = None  # [N]
    old_log_probs: torch.Tensor | None = None  # [N, T] the behaviour policy's; None: the update's own first
    # forward, detached (one on-policy optimizer step: the controller then skips the separate log-prob pass)
    ref_log_probs: torch.Tensor | None = None  # [N, T]
    advantages: torch.Tensor | None = None  # [N, T]
    returns: torch.Tensor | None = None  # [N, T]
    group_size: int = 1
    info: dict = field(default_factory=dict)  # per-sample python lists: uid, status, finish_reason, ...

    @property
    def num_actions(self) -> int:
        return self.action_mask.shape[1]

    def __len__(self) -> int:
        return self.sequences.shape[0]

    def select(self, idx: Sequence[int] | torch.Tensor, trim: bool = True) -> "Experience":
        """Rows ``idx`` (in that order); with trim, padding columns no row uses are dropped."""
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == len(self):
                out[f.name] = v.index_select(0, idx_t)
            elif f.name == "info":
                out[f.name] = {k: [lst[i] for i in idx_t.tolist()] for k, lst in v.items()}
            else:
                out[f.name] = v
        exp = replace(self, **out)
        return exp.trimmed() if trim else exp

    def trimmed(self) -> "Experience":
        """Drop left prompt padding and right response padding that no row needs."""
        T = self.num_actions
        P = self.sequences.shape[1] - T
        prompt_used = self.attention_mask[:, :P].any(0).nonzero()
        start = int(prompt_used[0]) if len(prompt_used) else P
        act_used = self.action_mask.any(0).nonzero()
        t_end = int(act_used[-1]) + 1 if len(act_used) else 1
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("sequences", "attention_mask"):
                out[f.name] = torch.cat([v[:, start:P], v[:, P:P + t_end]], dim=1)
            elif isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[1] == T:
                out[f.name] = v[:, :t_end]
        return replace(self, **out)

    def to(self, device: torch.device | str) -> "Experience":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


def build_experience(prompts: Sequence[PromptItem], completions: Sequence[Completion], pad_id: int,
                     group_size: int) -> Experience:
    """Pack completions (grouped by prompt, as engines return them) into padded tensors."""
    n = len(completions)
    P = max(len(c.prompt_ids) for c in completions)
    T = max(1, max(len(c.response_ids) for c in completions))
    seq = torch.full((n, P + T), pad_id, dtype=torch.long)
    att = torch.zeros((n, P + T), dtype=torch.long)
    act = torch.zeros((n, T), dtype=torch.bool)
    elp = torch.zeros((n, T), dtype=torch.float32)
    for i, c in enumerate(completions):
        p, r = len(c.prompt_ids), len(c.response_ids)
        seq[i, P - p:P] = torch.tensor(c.prompt_ids, dtype=torch.long)
        att[i, P - p:P] = 1
        if r:
            seq[i, P:P + r] = torch.tensor(c.response_ids, dtype=torch.long)
            att[i, P:P + r] = 1
            act[i, :r] = True
            elp[i, :r] = torch.tensor(c.logprobs, dtype=torch.float32)
    info = {"uid": [prompts[c.prompt_index].uid for c in completions],
            "prompt_index": [c.prompt_index for c in completions],
            "finish_reason": [c.finish_reason for c in completions],
            "response_length": [len(c.response_ids) for c in completions]}
    return Experience(seq, att, act, elp, group_size=group_size, info=info)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token (prompts are left-padded)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
