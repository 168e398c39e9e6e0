"""The fixed RL prompt format and the train / held-out split on the real benchmark files."""
from __future__ import annotations

import json

import pytest

from data_prep.task_prompts import INSTRUCTION, build_splits, mbpp_task_id, task_message, write_splits


@pytest.fixture(scope="module")
def splits(data_dir):
    return build_splits(data_dir)


def test_splits_are_disjoint_and_cover_mbpp(splits):
    train, held = splits
    train_ids = sorted(mbpp_task_id(r) for r in train)
    assert train_ids == list(range(1, 11)) + list(range(511, 975))
    assert sorted(mbpp_task_id(r) for r in held["mbpp"]) == list(range(11, 511))
    assert len(held["humanevalplus"]) == 164
    assert not {r["id"] for r in train} & {r["id"] for recs in held.values() for r in recs}
    for rec in train + held["mbpp"] + held["humanevalplus"]:
        assert rec["test_cases"] and rec["context_messages"][0]["role"] == "user"
        assert rec["context_messages"][0]["content"].startswith(INSTRUCTION)


def test_mbpp_prompt_shows_one_test_humaneval_prompt_shows_the_signature(splits):
    _, held = splits
    mbpp = next(r for r in held["mbpp"] if r["id"] == "mbpp_21")
    text = mbpp["context_messages"][0]["content"]
    assert "multiples_of_num(4,3)" in text and text.count("assert ") == 1
    he = held["humanevalplus"][0]
    text = he["context_messages"][0]["content"]
    assert "def has_close_elements(" in text and "assert" not in text
    assert "Your code should pass" not in text


def test_task_message_is_deterministic():
    a = task_message("Write f.", "f", ["assert f(1) == 2", "assert f(2) == 3"])
    assert a == task_message("Write f.", "f", ["assert f(1) == 2", "assert f(9) == 9"])
    assert "assert f(2) == 3" not in a


def test_write_splits_limits_each_heldout_set(tmp_path, data_dir):
    train, heldout = write_splits(tmp_path, data_dir, heldout_limit=3, heldout_sets=("mbpp",))
    held = [json.loads(line) for line in heldout.read_text().splitlines()]
    assert [r["id"] for r in held] == ["mbpp_11", "mbpp_12", "mbpp_13"]
    assert len(train.read_text().splitlines()) == 474
