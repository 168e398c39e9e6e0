"""Prompts for RL: AceCode-schema records turned into chat-formatted token ids, and a sampler whose
position is part of the checkpoint (so a resumed run sees exactly the prompts it would have seen)."""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Sequence

from common.io import RecordError, iter_records
from common.schema import task_tests

from .config import DataConfig
from .experience import PromptItem


def record_messages(rec: dict, input_key: str) -> list[dict]:
    msgs = rec.get(input_key)
    if isinstance(msgs, list) and msgs and all(isinstance(m, dict) and "content" in m for m in msgs):
        return msgs
    return [{"role": "user", "content": rec["question"]}]


def load_prompts(path: str, tokenizer, cfg: DataConfig) -> list[PromptItem]:
    """Records with a question and test cases, chat-templated and tokenised. Records over
    prompt_max_len are dropped with a count; bad records stop the run naming file, line and field."""
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    too_long = 0
    for line, rec in iter_records(path):
        tests = task_tests(rec, path, line)
        if rec["id"] in seen:
            raise RecordError(path, line, "id", f"duplicate id {rec['id']!r} (first at line {seen[rec['id']]})")
        seen[rec["id"]] = line
        msgs = record_messages(rec, cfg.input_key)
        if cfg.apply_chat_template:
            ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = tokenizer(msgs[-1]["content"])["input_ids"]
        if len(ids) > cfg.prompt_max_len:
            too_long += 1
            continue
        record = {"id": rec["id"], "question": rec["question"], "test_cases": tests,
                  "test_setup": rec.get("test_setup") or ""}
        if rec.get("program_prefix"):
            record["program_prefix"] = rec["program_prefix"]
        items.append(PromptItem(rec["id"], tuple(int(i) for i in ids), record))
        if cfg.max_samples and len(items) >= cfg.max_samples:
            break
    if too_long:
        print(f"[data] {path}: dropped {too_long} prompts longer than prompt_max_len={cfg.prompt_max_len}",
              file=sys.stderr)
    if not items:
        raise RecordError(path, None, None, "no usable prompts")
    return items


@dataclass
class PromptSampler:
    """Shuffled batches of prompt indices, episode after episode; its state is two integers."""

    n: int
    batch_size: int
    seed: int
    episode: int = 0
    position: int = 0

    def _order(self, episode: int) -> list[int]:
        order = list(range(self.n))
        random.Random(self.seed * 1_000_003 + episode).shuffle(order)
        return order

    def next_batch(self, size: int | None = None) -> list[int]:
        """The next ``size`` prompt indices (default: one batch)."""
        size = self.batch_size if size is None else size
        out: list[int] = []
        while len(out) < size:
            order = self._order(self.episode)
            take = order[self.position:self.position + size - len(out)]
            out += take
            self.position += len(take)
            if self.position >= self.n:
                self.episode += 1
                self.position = 0
        return out

    def steps_per_episode(self) -> int:
        return max(1, self.n // self.batch_size)

    def state_dict(self) -> dict:
        return {"episode": self.episode, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.episode, self.position = int(state["episode"]), int(state["position"])


def select(items: Sequence[PromptItem], idx: Sequence[int]) -> list[PromptItem]:
    return [items[i] for i in idx]
