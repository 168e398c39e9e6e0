"""The sandbox stages: filter (oracle prunes tests, Table 1) and score (pass rates over kept tests)."""
from __future__ import annotations

import json
import random
import time
from types import SimpleNamespace

import pytest

from common.io import read_records, write_records
from common.schema import load_acecode
from data_prep.__main__ import main
from data_prep.execute import run_in_order, run_score
from sandbox import SandboxConfig

PREFILL = "Below is a self-contained Python script that solves the problem and passes the tests:\n```python\n"
ADD = "def add(a, b):\n    return a + b\n"


def answer(code: str, model: str = "oracle", **extra) -> dict:
    return {"model_name": model, "completion_id": 0, "completion": f"{PREFILL}{code}```", **extra}


def question(rid: str, tests: list[str], answers: list[dict] | None, **extra) -> dict:
    return {"id": rid, "source": "test", "question": f"Question {rid}.", "test_cases": tests,
            "inferences": answers, **extra}


GOOD = [f"assert add({i}, 1) == {i + 1}" for i in range(5)]


def test_run_in_order_keeps_input_order_with_jobless_items():
    from sandbox.pool import SandboxPool

    class Pool:  # the real imap over jobs that finish in random order
        cfg = SimpleNamespace(workers=3)
        _executor = None
        imap = SandboxPool.imap

        def run(self, job):
            time.sleep(random.random() / 500)
            return SimpleNamespace(id=job.id)

    items = [(i, random.randint(0, 3)) for i in range(200)]
    jobs_of = lambda it: [SimpleNamespace(id=f"{it[0]}#{k}") for k in range(it[1])]  # noqa: E731
    out = list(run_in_order(Pool(), iter(items), jobs_of, lookahead=8))
    assert [item for item, _ in out] == items
    assert all([r.id for r in res] == [f"{i}#{k}" for k in range(n)] for (i, n), res in out)


def test_filter_cli(tmp_path, capsys):
    records = [
        # 5 of 7 tests pass: one wrong expected value, one error
        question("keep", GOOD[:3] + ["assert add(1, 1) == 3"] + GOOD[3:] + ["assert add('a', 1) == 'a1'"],
                 [answer(ADD)]),
        question("drop", GOOD[:4] + ["assert add(2, 2) == 5", "assert add(0, 0) == 1"], [answer(ADD)]),
        question("nocode", GOOD, [{"model_name": "oracle", "completion_id": 0, "completion": "I cannot help."}]),
        question("pick", GOOD, [answer("def add(a, b):\n    return 0\n", model="other"), answer(ADD)]),
        question("setup", GOOD + ["assert twice(add(1, 1)) == 4", "assert add(*PAIR) == 3"], [answer(ADD)],
                 test_setup="PAIR = (1, 2)\n\ndef twice(x):\n    return 2 * x\n"),
        question("slow", ["assert add(1, 1) == 2"] * 1 + GOOD[1:] + ["assert loop() == 1"],
                 [answer(ADD + "\ndef loop():\n    while True:\n        pass\n")]),
        question("nomodel", GOOD, [answer(ADD, model="other")]),  # bad: no answer from the oracle model
        {"id": "notests", "source": "test", "question": "Q", "inferences": [answer(ADD)]},  # bad
        question("noanswer", GOOD, None),  # bad
    ]
    src = tmp_path / "oracle.jsonl"
    write_records(src, records)
    with open(src, "a") as f:
        f.write("{not json\n")  # bad
    out = tmp_path / "filtered.jsonl"
    argv = ["filter", "--input", str(src), "--output", str(out), "--oracle_model", "oracle", "--sandbox_workers", "2",
            "--sandbox_timeout_s", "0.5", "--progress_bar", "false"]
    assert main(argv) == 1  # bad records were skipped
    stdout, stderr = capsys.readouterr()

    kept = {r["id"]: r for r in read_records(out)}
    assert list(kept) == ["keep", "pick", "setup", "slow"]
    assert kept["keep"]["test_cases"] == GOOD
    assert kept["setup"]["test_cases"] == records[4]["test_cases"]
    assert kept["slow"]["test_cases"] == records[5]["test_cases"][:5]  # the endless loop timed out
    assert kept["keep"]["filter"] == {"oracle_model": "oracle", "tests_before": 7, "tests_kept": 5}
    assert kept["keep"]["inferences"] is None
    assert kept["keep"]["context_messages"] == [{"role": "user", "content": "Question keep."}]
    assert [r.id for r in load_acecode(out)] == list(kept)  # valid AceCode records
    dropped = {r["id"]: r for r in read_records(tmp_path / "filtered.dropped.jsonl")}
    assert dropped["drop"]["reason"] == "fewer than 5 tests kept (4 of 6)"
    assert dropped["drop"]["test_statuses"] == {"passed": 4, "failed": 2}
    assert dropped["nocode"]["reason"] == "no code in the oracle answer"

    # Table 1 over the six good questions: tests 7, 6, 5, 5, 7, 6 before; 5, 5, 7, 5 after.
    assert "before the filter             6        6.00" in stdout
    assert "after the filter              4        5.50" in stdout
    bad = read_records(tmp_path / "filtered.bad.jsonl")
    assert [(b["line"], b["field"]) for b in bad] == [(7, "inferences"), (8, "test_cases"), (9, "inferences"),
                                                      (10, None)]
    assert "no answer from the oracle model 'oracle'" in bad[0]["message"]
    assert f"{src}:8: field 'test_cases': missing" in stderr
    assert "4 bad record(s) skipped" in stderr

    # A torn last line (a crash mid-write): the re-run redoes that record only.
    data = out.read_bytes()
    out.write_bytes(data[:-30])
    assert main(argv) == 1
    assert "filter: 1 written, 0 dropped, 5 already done, 4 bad" in capsys.readouterr().out
    assert [r["id"] for r in read_records(out)] == list(kept)
    assert read_records(out) == list(kept.values())


def test_score_pass_rates_over_kept_tests(tmp_path):
    five_of_eight = {"oracle_model": "oracle", "tests_before": 8, "tests_kept": 5}
    records = [
        question("q1", GOOD, [
            answer(ADD, model="policy", completion_id=0),
            answer("def add(a, b):\n    return a + b if a < 4 else 0\n", model="policy", completion_id=1),  # 4/5
            {"model_name": "policy", "completion": PREFILL + ADD + "```\nThis adds the numbers.", "extra": 1},
            {"model_name": "policy", "completion": "No code here.", "pass_rate": 0.9},  # stale rate
        ], filter=five_of_eight),
        question("q2", GOOD[:2], [answer("def add(a, b):\n    raise ValueError\n", model="policy")]),
        question("q3", GOOD, []),  # bad: nothing to score
    ]
    src = tmp_path / "samples.jsonl"
    write_records(src, records)
    out = tmp_path / "scored.parquet"
    summary = run_score(str(src), str(out), sandbox=SandboxConfig(workers=2), progress=False)
    assert (summary.written, summary.bad, summary.answers) == (2, 1, 5)
    assert summary.programs == 3  # the same program twice runs once; no code runs nothing

    scored = {r.id: r for r in load_acecode(out)}  # Parquet, full schema with pass rates
    assert [i.pass_rate for i in scored["q1"].inferences] == [1.0, 0.8, 1.0, 0.0]  # over the 5 KEPT tests
    assert [i.completion_id for i in scored["q1"].inferences] == [0, 1, 2, 3]
    assert scored["q1"].extra["filter"] == five_of_eight
    assert scored["q1"].inferences[2].completion.endswith("This adds the numbers.")
    assert [i.pass_rate for i in scored["q2"].inferences] == [0.0]
    raw = {r["id"]: r for r in read_records(out)}
    assert raw["q1"]["inferences"][2]["extra"] == 1  # other answer fields travel along

    again = run_score(str(src), str(out), sandbox=SandboxConfig(workers=1), progress=False)
    assert (again.written, again.skipped, again.programs) == (0, 2, 0)
    assert json.dumps(read_records(out), sort_keys=True) == json.dumps(list(raw.values()), sort_keys=True)


def test_score_reports_missing_answers_with_line(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_records(src, [question("a", GOOD, [{"model_name": "m", "completion": 5}])])
    assert main(["score", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--sandbox_workers", "1",
                 "--progress_bar", "false"]) == 1
    assert f"{src}:1: field 'inferences[0].completion': expected a string, got int" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["filter", "score"])
def test_help_lists_sandbox_options(stage, capsys):
    with pytest.raises(SystemExit):
        main([stage, "--help"])
    text = capsys.readouterr().out
    assert ("--sandbox_workers" in text and "--sandbox_timeout_s" in text and "(default: 5.0)" in text
            and "--lookahead" in text)
