"""Preference pairs (the paper's rule) and the hard subset, on records whose pass rates are given."""
from __future__ import annotations

import statistics

from common.io import read_records, write_records
from data_prep.__main__ import main
from data_prep.pairs import pairs_of, run_hard_subset

PREFILL = "Below is a self-contained Python script that solves the problem and passes the tests:\n```python\n"


def program(name: str) -> str:
    return f"def f():\n    return {name!r}\n"


def inf(name: str, rate: float, i: int, prose: str = "") -> dict:
    return {"model_name": "policy", "completion_id": i, "completion": f"{PREFILL}{program(name)}```{prose}",
            "pass_rate": rate}


# (program, pass rate) per answer, in inference order
ANSWERS = [("A", 1.0), ("B", 0.6), ("C", 0.0), ("D", 0.79), ("E", 0.1), ("A", 1.0), ("B", 1.0),
           ("F", 17 / 20), ("G", 9 / 20), ("H", 0.55)]
# Worked by hand: hi >= 0.8 and hi - lo >= 0.4 and lo > 0, i before j, skipping repeats.
#  i=0 (A 1.0): B 0.6 (gap exactly 0.4), E 0.1, G 0.45, H 0.55; not C (lo = 0), D 0.79, F 0.85 (gaps < 0.4)
#  i=5 (A again): the same four program pairs: skipped as duplicates
#  i=6 (B 1.0, flaky): B itself is the same program: skipped; E, G, H
#  i=7 (F 0.85): E; G (17/20 - 9/20 is 0.39999999999999997 in floats: counts as 0.4); not B, H
EXPECTED = [("A", "B"), ("A", "E"), ("A", "G"), ("A", "H"), ("B", "E"), ("B", "G"), ("B", "H"), ("F", "E"),
            ("F", "G")]


def record(rid: str, question: str, answers=ANSWERS) -> dict:
    return {"id": rid, "source": "test", "question": question, "test_cases": ["assert f()"],
            "inferences": [inf(name, rate, i, prose="\nDone." if i == 5 else "")
                           for i, (name, rate) in enumerate(answers)]}


def test_pair_rule_worked_by_hand():
    pairs, skipped = pairs_of("r", "Q?", record("r", "Q?")["inferences"])
    got = [(p["chosen"], p["rejected"]) for p in pairs]
    assert got == [(program(c), program(r)) for c, r in EXPECTED]
    assert [p["id"] for p in pairs] == [f"r_pair{k}" for k in range(9)]
    assert pairs[0] == {"id": "r_pair0", "record_id": "r", "question": "Q?", "chosen": program("A"),
                        "rejected": program("B"), "chosen_pass_rate": 1.0, "rejected_pass_rate": 0.6}
    assert all(p["chosen_pass_rate"] >= 0.8 and p["rejected_pass_rate"] > 0 for p in pairs)
    assert (pairs[-1]["chosen_pass_rate"], pairs[-1]["rejected_pass_rate"]) == (17 / 20, 9 / 20)
    assert dict(skipped) == {"duplicate program pair": 4, "same program": 1}


def test_pairs_stage_export_and_resume(tmp_path, capsys):
    src = tmp_path / "scored.jsonl"
    bad_rate = record("bad", "Q?")
    del bad_rate["inferences"][3]["pass_rate"]
    write_records(src, [record("r1", "Return a letter."), record("r2", "Renvoie une lettre (déjà vu)."),
                        bad_rate, {**record("r3", "Q"), "inferences": []},
                        record("r4", "Few answers.", [("A", 1.0), ("B", 0.5)])])
    out = tmp_path / "pairs.jsonl"
    assert main(["pairs", "--input", str(src), "--output", str(out)]) == 1
    stdout, stderr = capsys.readouterr()
    assert "pairs: 10 pairs from 2 of 3 questions (10 new, 0 already done); skipped: 1 non-ASCII" in stdout
    assert f"{src}:3: field 'inferences[3].pass_rate': expected a number in [0, 1], got null" in stderr
    assert f"{src}:4: field 'inferences': expected a non-empty list of answers, got an empty list" in stderr

    rows = read_records(out)
    assert [r["id"] for r in rows] == [f"r1_pair{k}" for k in range(9)] + ["r4_pair0"]
    rm = read_records(tmp_path / "pairs.rm.jsonl")
    assert rm[0] == {"prompt": "Return a letter.", "chosen": program("A"), "rejected": program("B")}
    assert len(rm) == 10

    out.write_bytes(out.read_bytes()[:-20])  # torn last line
    assert main(["pairs", "--input", str(src), "--output", str(out), "--rm_output", str(tmp_path / "rm.parquet")]) == 1
    assert "(1 new, 9 already done)" in capsys.readouterr().out
    assert read_records(out) == rows
    assert read_records(tmp_path / "rm.parquet") == rm


RATES = {"r1": [1, 1, 1, 1], "r2": [0, 0, 0, 0], "r3": [1, 0, 1, 0], "r4": [1, 0, 0, 0], "r5": [1, 1, 1, 0],
         "r6": [0.5] * 4, "r7": [1, 0.5, 0, 0.5]}
# means 1, 0, .5, .25, .75, .5, .5 -> median .5 -> r2 r3 r4 r6 r7; their stds 0, .5, .433, 0, .354 ->
# median .354 (r7's own) -> keep r3, r4, r7 (r7 ties the median and stays)


def test_hard_subset_worked_by_hand(tmp_path, capsys):
    rows = [{"id": k, "source": "test", "question": "Q", "test_cases": ["assert f()"], "mine": k,
             "inferences": [{"model_name": "m", "completion_id": i, "completion": "x", "pass_rate": float(p)}
                            for i, p in enumerate(v)]} for k, v in RATES.items()]
    rows.insert(3, {"id": "noinf", "source": "test", "question": "Q", "test_cases": ["assert f()"]})
    rows.append({**rows[0], "inferences": rows[2]["inferences"]})  # a repeated id: the later one is bad
    src = tmp_path / "scored.jsonl"
    write_records(src, rows)
    summary = run_hard_subset(str(src), str(tmp_path / "hard.jsonl"))
    assert (summary.records, summary.below, summary.kept, summary.bad) == (7, 5, 3, 2)
    assert summary.median_mean == 0.5 and summary.median_std == statistics.pstdev(RATES["r7"])
    kept = read_records(tmp_path / "hard.jsonl")
    assert [r["id"] for r in kept] == ["r3", "r4", "r7"]
    assert kept[0] == next(r for r in rows if r["id"] == "r3")  # unchanged
    assert "duplicate id 'r1'" in capsys.readouterr().err

    hard_parquet = tmp_path / "hard.parquet"
    assert main(["hard-subset", "--input", str(src), "--output", str(hard_parquet)]) == 1
    assert [r["id"] for r in read_records(hard_parquet)] == ["r3", "r4", "r7"]
    again = run_hard_subset(str(src), str(hard_parquet))
    assert (again.written, again.skipped) == (0, 3)
