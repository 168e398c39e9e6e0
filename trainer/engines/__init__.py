"""Rollout engines: token-id prompts in, completions with per-token log-probs out (base.py).

``make_engine("vllm", path, ...)`` for GPU rollouts, ``make_engine("hf", path, ...)`` for tests, the
CPU demo and models vLLM cannot serve. Engines are imported on demand, so neither kind's
dependencies are needed to import this package.
"""
from __future__ import annotations

from trainer.engines.base import Completion, RolloutEngine, SamplingParams

ENGINE_KINDS = ("vllm", "hf")


def make_engine(kind: str, model_path: str, **kwargs) -> RolloutEngine:
    """A ``VLLMEngine`` (kind "vllm") or ``TransformersEngine`` (kind "hf"); kwargs go to its constructor."""
    if kind == "vllm":
        from trainer.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, **kwargs)
    if kind == "hf":
        from trainer.engines.hf_engine import TransformersEngine

        return TransformersEngine(model_path, **kwargs)
    raise ValueError(f"unknown rollout engine kind {kind!r}; expected one of {ENGINE_KINDS}")


__all__ = ["Completion", "ENGINE_KINDS", "RolloutEngine", "SamplingParams", "make_engine"]
