import json
import os

import pytest

from tests.conftest import build_tiny_rm


@pytest.fixture(scope="session")
def ray_local():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from trainer.tiny import build_tiny_qwen2, build_tokenizer

    d = tmp_path_factory.mktemp("tiny_model")
    tok = build_tokenizer(str(d))
    build_tiny_qwen2(str(d), tok, seed=0)
    return str(d)


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
    """AceCode-schema records small enough for a 2-step run."""
    d = tmp_path_factory.mktemp("records")
    recs = []
    for i in range(8):
        recs.append({"id": f"r{i}", "source": "test", "question": f"Write add{i}(a, b) returning a + b.",
                     "test_cases": [f"assert add{i}(1, 2) == 3", f"assert add{i}(0, 0) == 0"]})
    path = d / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


@pytest.fixture(scope="session")
def tiny_rm(tiny_model, tmp_path_factory):
    """A reward model on the tiny policy's backbone and tokenizer, its head random and not small so
    that scores differ between answers."""
    return build_tiny_rm(tiny_model, str(tmp_path_factory.mktemp("tiny_rm")))
