"""RL prompt records from real benchmarks: one fixed prompt format for training and evaluation.

The format is decided here, once, before any evaluation: a pass-rate gain measured with these
records comes from training, not from a better prompt. Each record is in the AceCode schema
(``id``, ``source``, ``question``, ``test_cases``, ``test_setup``) with ``context_messages`` holding
the single user turn the chat template is applied to (``trainer.data.record_messages``):

- MBPP-style tasks (the question names no function): the question, then the first test, which shows
  the function name and how it is called (as EvalPlus and the MBPP paper prompt);
- HumanEval-style tasks (the question is a signature with a docstring): the code, to be completed.

Splits (no training prompt is drawn from a held-out task): MBPP's test split, task ids 11-510, and
HumanEval+ are held out; MBPP's train, validation and prompt splits (ids 1-10 and 511-974) train.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.io import write_records

INSTRUCTION = ("Write a Python function that solves the task below. Reply with the complete function "
               "in a single ```python code block.")
MBPP_HELDOUT_IDS = range(11, 511)  # MBPP's test split


def task_message(question: str, entry_point: str | None, tests: list[str], shown_tests: int = 1) -> str:
    """The user turn for one task."""
    question = question.strip()
    if entry_point and re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", question):
        return f"{INSTRUCTION}\n\nComplete this function:\n```python\n{question}\n```"
    shown = "\n".join(tests[:shown_tests])
    return f"{INSTRUCTION}\n\n{question}\nYour code should pass this test:\n{shown}"


def prompt_record(rec: dict, split: str) -> dict:
    """An AceCode-schema record (dict from ``AceCodeRecord.to_dict``) with its fixed prompt."""
    out = {"id": rec["id"], "source": rec.get("source") or "", "split": split, "question": rec["question"],
           "test_cases": list(rec["test_cases"]),
           "context_messages": [{"role": "user", "content": task_message(rec["question"], rec.get("entry_point"),
                                                                          rec["test_cases"])}]}
    if rec.get("test_setup"):
        out["test_setup"] = rec["test_setup"]
    if rec.get("entry_point"):
        out["entry_point"] = rec["entry_point"]
    return out


def mbpp_task_id(rec: dict) -> int:
    return int(str(rec["id"]).rsplit("_", 1)[1])


def build_splits(data_dir: str | Path | None = None, heldout_sets: tuple[str, ...] = ("mbpp", "humanevalplus")
                 ) -> tuple[list[dict], dict[str, list[dict]]]:
    """(training records, held-out records per set). Training: MBPP ids 1-10 and 511-974."""
    from data_prep.benchmarks import load_benchmark

    mbpp = [r.to_dict() for r in load_benchmark("mbpp", data_dir)]
    train = [prompt_record(r, "train") for r in mbpp if mbpp_task_id(r) not in MBPP_HELDOUT_IDS]
    held: dict[str, list[dict]] = {}
    for name in heldout_sets:
        if name == "mbpp":
            held[name] = [prompt_record(r, "heldout") for r in mbpp if mbpp_task_id(r) in MBPP_HELDOUT_IDS]
        else:
            held[name] = [prompt_record(r.to_dict(), "heldout") for r in load_benchmark(name, data_dir)]
    train_ids = {r["id"] for r in train}
    overlap = train_ids & {r["id"] for recs in held.values() for r in recs}
    if overlap:
        raise ValueError(f"held-out tasks in the training split: {sorted(overlap)[:5]}")
    return train, held


def write_splits(out_dir: str | Path, data_dir: str | Path | None = None, heldout_limit: int = 0,
                 heldout_sets: tuple[str, ...] = ("mbpp", "humanevalplus")) -> tuple[Path, Path]:
    """train.jsonl and heldout.jsonl under ``out_dir`` (atomic writes). ``heldout_limit`` > 0 keeps the
    first K tasks of each held-out set (quick runs and tests)."""
    train, held = build_splits(data_dir, heldout_sets)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    heldout = [r for recs in held.values() for r in (recs[:heldout_limit] if heldout_limit else recs)]
    write_records(out / "train.jsonl", train)
    write_records(out / "heldout.jsonl", heldout)
    return out / "train.jsonl", out / "heldout.jsonl"
