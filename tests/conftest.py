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
