import gzip
import json

import pytest

from common.io import RecordError, write_records
from common.schema import AceCodeRecord, Inference, load_acecode, validate_record


def rec(**kw):
    d = {"id": "oss_1", "source": "oss", "question": "Add two numbers.",
         "test_cases": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
    d.update(kw)
    return d


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_valid_record_and_default_context_messages(tmp_path):
    p = write_jsonl(tmp_path / "data.jsonl", [rec()])
    [r] = list(load_acecode(p))
    assert r.id == "oss_1" and r.test_cases == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    assert r.context_messages == [{"role": "user", "content": "Add two numbers."}]
    assert r.inferences is None and r.test_setup is None


def test_tests_alias_is_normalised(tmp_path):
    raw = rec()
    raw["tests"] = raw.pop("test_cases")
    p = write_jsonl(tmp_path / "data.jsonl", [raw])
    [r] = list(load_acecode(p))
    assert r.test_cases == raw["tests"]
    d = r.to_dict()
    assert "tests" not in d and d["test_cases"] == raw["tests"]


def test_alias_and_field_that_differ_are_an_error():
    with pytest.raises(RecordError, match="alias 'tests'"):
        validate_record(rec(tests=["assert True"]))
    assert validate_record(rec(tests=rec()["test_cases"])).test_cases == rec()["test_cases"]


@pytest.mark.parametrize("bad, field, message", [
    ({"test_cases": ["assert f()", "assert g()", "assert h()", 3]}, "test_cases",
     "expected a list of strings, item 3 is int"),
    ({"test_cases": "assert f()"}, "test_cases", "expected a list of strings, got str"),
    ({"test_cases": []}, "test_cases", "expected a non-empty list of strings"),
    ({"test_cases": None}, "test_cases", "missing (required; the alias 'tests' is accepted too)"),
    ({"question": None}, "question", "missing (required)"),
    ({"id": 7}, "id", "expected a string, got int"),
    ({"source": ""}, "source", "is empty"),
    ({"test_setup": ["import math"]}, "test_setup", "expected a string, got list"),
    ({"inferences": [{"model_name": "m", "completion_id": 0, "completion": "x", "pass_rate": 1.5}]},
     "inferences[0].pass_rate", "expected a number in [0, 1], got 1.5"),
    ({"inferences": [{"model_name": "m", "completion_id": True, "completion": "x", "pass_rate": 1}]},
     "inferences[0].completion_id", "expected an int or a string, got bool"),
    ({"inferences": [{"model_name": "m", "completion_id": 1, "pass_rate": 0.5}]},
     "inferences[0].completion", "expected a string, got null"),
    ({"inferences": {"model_name": "m"}}, "inferences", "expected a list of objects, got dict"),
    ({"context_messages": [{"role": "user"}]}, "context_messages[0].content", "expected a string, got null"),
    ({"challenge_test_cases": [1]}, "challenge_test_cases", "item 0 is int"),
])
def test_errors_name_file_line_and_field(tmp_path, bad, field, message):
    p = write_jsonl(tmp_path / "data.jsonl", [rec(id="ok"), rec(**bad)])
    with pytest.raises(RecordError) as e:
        list(load_acecode(p))
    assert (e.value.path, e.value.line, e.value.field) == (str(p), 2, field)
    assert message in e.value.message
    assert str(e.value).startswith(f"{p}:2: field '{field}': ")


def test_exact_message_for_a_bad_test_item(tmp_path):
    p = write_jsonl(tmp_path / "data.jsonl", [rec(test_cases=["assert a", "assert b", "assert c", 3])])
    with pytest.raises(RecordError) as e:
        list(load_acecode(p))
    assert str(e.value) == f"{p}:1: field 'test_cases': expected a list of strings, item 3 is int"


def test_on_error_reports_and_skips_bad_records(tmp_path):
    rows = [rec(id="a"), "{not json", rec(id="b", question=3), rec(id="a"), "[1, 2]", rec(id="c")]
    p = write_jsonl(tmp_path / "data.jsonl", rows)
    errors: list[RecordError] = []
    got = [r.id for r in load_acecode(p, on_error=errors.append)]
    assert got == ["a", "c"]
    assert [(e.line, e.field) for e in errors] == [(2, None), (3, "question"), (4, "id"), (5, None)]
    assert "not valid JSON" in errors[0].message


def test_duplicate_id_names_both_lines(tmp_path):
    p = write_jsonl(tmp_path / "data.jsonl", [rec(id="x"), rec(id="y"), rec(id="x")])
    with pytest.raises(RecordError) as e:
        list(load_acecode(p))
    assert e.value.line == 3 and e.value.field == "id"
    assert "duplicate id 'x' (first seen at line 1)" in str(e.value)


def test_inferences_and_extensions_are_kept(tmp_path):
    raw = rec(inferences=[{"model_name": "qwen", "completion_id": "c0", "completion": "def add(a, b): ...",
                           "pass_rate": 1}],
              context_messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
              test_setup="import math", entry_point="add", program="def add(a, b): return a + b",
              canonical_solution="def add(a, b): return a + b", my_note="kept")
    p = write_jsonl(tmp_path / "data.jsonl.gz", [])
    with gzip.open(p, "wt") as f:
        f.write(json.dumps(raw) + "\n")
    [r] = list(load_acecode(p))
    assert r.inferences == [Inference("qwen", "c0", "def add(a, b): ...", 1.0)]
    assert r.context_messages[0]["role"] == "system" and r.entry_point == "add"
    assert r.extra == {"my_note": "kept"}
    assert r.to_dict()["my_note"] == "kept"


def test_parquet_round_trip(tmp_path):
    records = [
        validate_record(rec(id="a", inferences=[{"model_name": "m", "completion_id": 0, "completion": "x",
                                                 "pass_rate": 0.25}])),
        validate_record(rec(id="b", test_setup="import math", challenge_test_cases=["assert f(9)"], note="n")),
        AceCodeRecord(id="c", source="mbpp", question="q", test_cases=["assert f()"], entry_point="f"),
    ]
    p = tmp_path / "data.parquet"
    write_records(p, [r.to_dict() for r in records])
    assert list(load_acecode(p)) == records
    j = tmp_path / "data.jsonl"
    write_records(j, [r.to_dict() for r in records])
    assert list(load_acecode(j)) == records


def test_parquet_errors_name_the_row(tmp_path):
    p = tmp_path / "bad.parquet"
    write_records(p, [rec(id="a"), rec(id="b", question="")])
    with pytest.raises(RecordError) as e:
        list(load_acecode(p))
    assert (e.value.line, e.value.field) == (2, "question")
    write_records(p, [rec(id="a"), rec(id="a")])
    with pytest.raises(RecordError, match="first seen at row 1"):
        list(load_acecode(p))


def test_task_tests_checks_what_rl_and_evaluation_need(tmp_path):
    from common.schema import task_tests

    assert task_tests({"id": "a", "question": "q", "tests": ["assert 1"]}, "f.jsonl", 3) == ["assert 1"]
    for rec, field in (({"question": "q", "test_cases": ["assert 1"]}, "id"),
                       ({"id": "a", "question": 5, "test_cases": ["assert 1"]}, "question"),
                       ({"id": "a", "question": "q", "test_cases": []}, "test_cases"),
                       ({"id": "a", "question": "q", "test_cases": ["assert 1", 2]}, "test_cases")):
        with pytest.raises(RecordError) as e:
            task_tests(rec, "f.jsonl", 7)
        assert "f.jsonl" in str(e.value) and "7" in str(e.value) and field in str(e.value)
