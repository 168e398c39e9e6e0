from __future__ import annotations

import pytest

from tests.conftest import build_tiny_rm

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
    return build_tiny_rm(tiny_lm, str(tmp_path_factory.mktemp("tiny_rm")))
