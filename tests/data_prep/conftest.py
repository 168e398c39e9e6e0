import functools
import os
from pathlib import Path

import pytest

from data_prep import benchmarks


def _find_data_dir() -> Path | None:
    """$ACECODER_DATA_DIR, else the product default (../shared/data), else shared/data beside an
    ancestor of the checkout (a git worktree lives deeper than the main checkout)."""
    if os.environ.get(benchmarks.DATA_DIR_ENV):
        return Path(os.environ[benchmarks.DATA_DIR_ENV])
    default = benchmarks.default_data_dir()
    if (default / "SOURCES.md").is_file():
        return default
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data" / "SOURCES.md").is_file():
            return parent / "shared" / "data"
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _find_data_dir()
    if d is None:
        pytest.skip(f"benchmark files not found; set {benchmarks.DATA_DIR_ENV}")
    return d


@functools.lru_cache(maxsize=None)
def _load(name: str, data_dir: Path):
    return benchmarks.load_benchmark(name, data_dir)


@pytest.fixture(scope="session")
def load(data_dir):
    """load(name) -> records, converted once per test session."""
    return lambda name: _load(name, data_dir)
