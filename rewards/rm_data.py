"""Preference pairs for reward-model training: reading, held-out split, batching.

Records are ``{"prompt", "chosen", "rejected"}`` (the trainer format) or ``{"question", "chosen",
"rejected"}`` (what data_prep's pairs stage writes), JSONL or Parquet. A bad record raises a
RecordError naming the file, line and field. Tokenisation happens per micro-batch, so start-up does
not wait for hundreds of thousands of pairs to be encoded.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import torch

from common.io import RecordError, iter_records
from rewards.reward_model import encode_for_scoring, pad_batch


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str


def load_pairs(path: str) -> list[Pair]:
    pairs = []
    for line, rec in iter_records(path):
        prompt_key = "prompt" if "prompt" in rec else "question"
        for key in (prompt_key, "chosen", "rejected"):
            if key not in rec:
                raise RecordError(path, line, "prompt" if key == "question" else key,
                                  "missing; each pair needs 'prompt' (or 'question'), 'chosen' and 'rejected'")
            if not isinstance(rec[key], str):
                raise RecordError(path, line, key, f"expected a string, got {type(rec[key]).__name__}")
        pairs.append(Pair(rec[prompt_key], rec["chosen"], rec["rejected"]))
    if not pairs:
        raise RecordError(path, None, None, "no pairs in the file")
    return pairs


def split_by_prompt(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, eval): whole prompts go to eval, so held-out accuracy is measured on unseen questions."""
    if fraction <= 0:
        return list(pairs), []
    prompts = sorted({p.prompt for p in pairs})
    random.Random(seed).shuffle(prompts)
    n_eval = max(1, math.ceil(fraction * len(prompts)))
    if n_eval >= len(prompts):
        raise ValueError(f"--eval_split {fraction} leaves no training prompts ({len(prompts)} distinct prompts)")
    held = set(prompts[:n_eval])
    return [p for p in pairs if p.prompt not in held], [p for p in pairs if p.prompt in held]


def collate(tokenizer, pairs: Sequence[Pair], max_len: int, pad_id: int) -> dict:
    """One padded batch: rows [chosen_1..n, rejected_1..n], so one forward scores both sides."""
    seqs = [encode_for_scoring(tokenizer, p.prompt, p.chosen, max_len) for p in pairs]
    seqs += [encode_for_scoring(tokenizer, p.prompt, p.rejected, max_len) for p in pairs]
    ids, mask = pad_batch(seqs, pad_id, side="right")
    return {"input_ids": ids, "attention_mask": mask, "n_pairs": len(pairs)}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of one epoch: a pure function of (seed, epoch), so resume can skip ahead."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def micro_batches(n: int, micro: int, world: int, rank: int, seed: int, epoch: int) -> list[list[int]]:
    """This rank's micro-batches of one epoch (indices into the pair list).

    Global micro-batch j goes to rank j % world. A tail smaller than a full optimizer step is
    dropped by the caller (steps_per_epoch), so every rank runs the same number of micro-batches.
    """
    order = epoch_order(n, seed, epoch)
    chunks = [order[i:i + micro] for i in range(0, n - micro + 1, micro)]
    return chunks[rank::world]
