"""RL prompt loading: bad records stop the run naming the file, line and field."""
import json

import pytest
from transformers import AutoTokenizer

from common.io import RecordError
from trainer.config import DataConfig
from trainer.data import load_prompts


def write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def test_prompts_are_templated_and_bad_records_are_named(tiny_model, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    good = {"id": "a", "question": "Write f.", "test_cases": ["assert f(1) == 1"]}
    items = load_prompts(write(tmp_path / "ok.jsonl", [good]), tok, DataConfig())
    assert len(items) == 1 and items[0].record["test_cases"] == ["assert f(1) == 1"] and items[0].prompt_ids
    for bad, field in (({**good, "id": "b", "test_cases": "assert f(1) == 1"}, "test_cases"),
                       ({**good, "id": 3}, "id"),
                       (good, "id")):  # a duplicate of line 1
        path = write(tmp_path / "bad.jsonl", [good, bad])
        with pytest.raises(RecordError) as e:
            load_prompts(path, tok, DataConfig())
        assert f"{path}:2" in str(e.value) and field in str(e.value), str(e.value)
