from __future__ import annotations

import pytest

from tests.rewards.synthetic import build_tiny_model, make_pairs


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> str:
    """A tiny random Qwen2ForCausalLM + tokenizer (no value head), built once per session."""
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny_lm")))


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> str:
    from common.io import write_records

    path = str(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")
    write_records(path, make_pairs())
    return path


@pytest.fixture(scope="session")
def tiny_rm(tiny_lm, tmp_path_factory) -> str:
    """A reward model on the tiny backbone with a random (not small) head, so scores differ."""
    import torch
    from transformers import AutoTokenizer

    from rewards.reward_model import RewardModel

    path = str(tmp_path_factory.mktemp("tiny_rm"))
    torch.manual_seed(3)
    rm = RewardModel.from_pretrained(tiny_lm)
    rm.v_head.summary.weight.data.normal_(std=1.0)
    rm.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_lm).save_pretrained(path)
    return path
