"""The rollout-engine interface: every engine (vLLM, transformers) takes token-id prompts and
returns completions with per-token log-probs; weights arrive in buckets of named tensors."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # samples per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None  # None: the engine's own generator
    stop_token_ids: tuple[int, ...] = ()  # in addition to the tokenizer's eos
    ignore_eos: bool = False  # benchmarks: eos does not end a sample (stop_token_ids still do)


@dataclass(frozen=True)
class Completion:
    prompt_index: int  # index into the prompt list passed to generate()
    sample_index: int  # 0 .. n-1
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]  # includes the stop token when generation stopped on one
    logprobs: tuple[float, ...]  # log p(token) at the sampling temperature, one per response token
    finish_reason: str  # "stop" or "length"


def check_sampling_params(prompts: Sequence[Sequence[int]], params: SamplingParams) -> None:
    """Reject what no engine can honour, naming the field at fault."""
    if params.n < 1:
        raise ValueError(f"SamplingParams.n must be >= 1, got {params.n}")
    if params.temperature < 0:
        raise ValueError(f"SamplingParams.temperature must be >= 0, got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {params.top_p}")
    if params.max_new_tokens < 0:
        raise ValueError(f"SamplingParams.max_new_tokens must be >= 0, got {params.max_new_tokens}")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")


class RolloutEngine(ABC):
    """One engine instance (one vllm.LLM, or one transformers model) on one device group."""

    @abstractmethod
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Completion]:
        """n completions per prompt, grouped by prompt in input order (prompt 0's n samples first)."""

    @abstractmethod
    def load_weights(self, named_tensors: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Copy one bucket of updated parameters (Hugging Face names) into the engine, in place."""

    def finish_weight_update(self) -> None:
        """Called after the last bucket of an update (e.g. to drop prefix caches built on old weights)."""

    def sleep(self) -> None:
        """Release accelerator memory between rollouts when the engine shares a GPU (optional)."""

    def wake_up(self) -> None:
        """Undo sleep()."""
